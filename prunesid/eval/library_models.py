"""lmms-eval model classes on the library's own model code, for families lmms-eval has no
class for (Mini-Gemini).

:class:`LibraryModel` is an lmms-eval simple model (``lmms_eval.api.model.lmms``): it loads
the checkpoint with :func:`prunesid.load_vlm` and answers each request with
:meth:`prunesid.vlm.VLM.chat` (the conversation in the checkpoint's own template, one image
placeholder per image, then the question), so ``method=none`` is the model as the library
runs it unpressed and every press goes through the same path as ``prunesid chat``.
``loglikelihood`` scores a continuation after the same pressed prompt. ``--model_args`` are
parsed as for the wrapped classes (``prunesid.eval.settings``) and every request writes one
record (``prunesid.eval.pressing``).

Imported by lmms-eval only (through ``prunesid.eval.manifest``).
"""

from __future__ import annotations

import time

import torch
from loguru import logger as eval_logger
from PIL import Image
from tqdm import tqdm

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from prunesid.eval.pressing import RecordWriter, _image_record, mean_phi
from prunesid.eval.settings import EvalSettings, parse_model_args
from prunesid.pipeline import media_key
from prunesid.vlm import load_vlm

DEFAULT_MAX_NEW_TOKENS = 128


class LibraryModel(lmms):
    """An lmms-eval model running :class:`prunesid.vlm.VLM` (see the module docstring)."""

    model_id: str  # lmms-eval's name of the class (set by each class below)
    default_pretrained: str
    family_names: tuple[str, ...]  # the model types it accepts (config.json's model_type)

    def __init__(
        self, pretrained: str | None = None, device: str = "auto", dtype: str = "auto", batch_size: int | str = 1,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, **kwargs,
    ) -> None:
        super().__init__()
        accepted = {"pretrained", "device", "dtype", "batch_size", "max_new_tokens"}
        settings, rest = parse_model_args(kwargs, accepted, self.model_id)
        if str(batch_size) != "1":
            raise ValueError(f"--model_args batch_size must be 1 (one conversation per generate call), got {batch_size!r}")
        from accelerate import PartialState

        state = PartialState()
        if state.num_processes > 1:  # data parallel: lmms-eval gives each rank its share of the docs
            device = f"cuda:{state.local_process_index}"
            self._rank, self._world_size = state.process_index, state.num_processes
        name = pretrained or self.default_pretrained
        self.prunesid_vlm = load_vlm(name, device=device, dtype=dtype)
        model_type = self.prunesid_vlm.model.config.model_type
        if model_type not in self.family_names:
            raise ValueError(f"--model_args pretrained={name} is a {model_type!r} model; {self.model_id} runs {', '.join(self.family_names)} models")
        self.prunesid_settings: EvalSettings = settings
        self.max_new_tokens = int(max_new_tokens)
        from prunesid.eval.models import records_path

        self.records_path = records_path(settings, self.model_id, rank=self.rank, world_size=self.world_size)
        self._records = RecordWriter(self.records_path)
        eval_logger.info(f"{self.model_id}: {settings.describe()}; per-sample records -> {self.records_path}")

    @property
    def tokenizer(self):
        return self.prunesid_vlm.processor.tokenizer

    @property
    def device(self):
        return self.prunesid_vlm.device

    @property
    def batch_size(self) -> int:
        return 1

    # --- lmms-eval's entry points -------------------------------------------------------

    def generate_until(self, requests: list[Instance]) -> list[str]:
        press = self._press(requests)
        answers = []
        try:
            for request in tqdm(requests, disable=self.rank != 0, desc="Model Responding"):
                context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
                images = self._images(doc_to_visual, task, split, doc_id)
                options = _generation_options(dict(gen_kwargs), self.max_new_tokens)
                until = options.pop("until")
                reply = self.prunesid_vlm.chat(images, _question(context), press=press, **options)
                text = reply.text
                for stop in until:
                    text = text.split(stop)[0] if stop else text
                self._record(task, doc_id, press, images, reply.selections, reply.visual_tokens)
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
                answers.append(text)
        finally:
            self._records.close()
        return answers

    @torch.inference_mode()
    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """log P(continuation | images, context) after the same (pressed) prompt as
        ``generate_until``, and whether greedy decoding would produce it."""
        press = self._press(requests)
        vlm = self.prunesid_vlm
        scores = []
        try:
            for request in tqdm(requests, disable=self.rank != 0, desc="Model Scoring"):
                context, doc_to_target, doc_to_visual, doc_id, task, split = request.args
                doc = self.task_dict[task][split][doc_id]
                continuation = doc_to_target(doc) if callable(doc_to_target) else doc_to_target
                images = self._images(doc_to_visual, task, split, doc_id)
                prepared = vlm.prepare(images, _question(context), press)
                if "position_ids" in prepared.model_inputs:
                    raise NotImplementedError(f"{self.model_id}: likelihood scoring of models with their own positions is not supported")
                target = torch.tensor(self.tokenizer(str(continuation), add_special_tokens=False)["input_ids"], device=vlm.device)[None]
                ids = torch.cat([prepared.input_ids, target], dim=1)
                logits = vlm.model(input_ids=ids, attention_mask=torch.ones_like(ids), **prepared.model_inputs).logits
                predicted = logits[:, prepared.input_ids.shape[1] - 1:-1].float()
                logprobs = torch.log_softmax(predicted, dim=-1).gather(-1, target[..., None])
                scores.append((float(logprobs.sum()), bool((predicted.argmax(-1) == target).all())))
                self._record(task, doc_id, press, images, prepared.compressions, prepared.visual_tokens)
        finally:
            self._records.close()
        return scores

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError(f"{self.model_id}: multi-round generation is not supported")

    # --- helpers ------------------------------------------------------------------------

    def _images(self, doc_to_visual, task, split, doc_id) -> list[Image.Image]:
        visuals = doc_to_visual(self.task_dict[task][split][doc_id]) if callable(doc_to_visual) else doc_to_visual
        visuals = [v for v in (visuals or []) if v is not None]
        others = [type(v).__name__ for v in visuals if not isinstance(v, Image.Image)]
        if others:
            raise ValueError(f"{self.model_id} answers about images; task {task!r} doc {doc_id} gives {', '.join(others)}")
        return [v.convert("RGB") for v in visuals]

    def _press(self, requests):
        """The press of the run; a dynamic budget without ``phi_ref`` is calibrated first."""
        press = self.prunesid_settings.press
        if press is None or not press.needs_calibration:
            return press
        images = {}
        for request in requests:
            _, _, doc_to_visual, doc_id, task, split = request.args
            for image in self._images(doc_to_visual, task, split, doc_id):
                images.setdefault(media_key(image), image)
        start = time.perf_counter()
        phi_ref = mean_phi(self.prunesid_vlm, images, self.device)
        eval_logger.info(f"{self.model_id}: phi_ref = {phi_ref:.4f} over {len(images)} images ({time.perf_counter() - start:.1f} s)")
        return press.calibrated(phi_ref)

    def _record(self, task, doc_id, press, images, compressions, counts) -> None:
        vlm = self.prunesid_vlm
        items = []
        for image, compression, count in zip(images, compressions, counts):
            encoded = vlm.encode(image)
            total = vlm.unmodified_visual_tokens(encoded)
            if compression is None:
                items.append({"modality": "image", "visual_tokens": count, "unmodified_tokens": total})
            else:
                items.append({"modality": "image", **_image_record(encoded, compression, count, total)})
        settings = {**self.prunesid_settings.describe(), **({} if press is None else press.settings())}
        self._records.write({
            "task": task, "doc_id": doc_id, "model": self.model_id, "settings": settings,
            "visual_tokens": list(counts), "images": items,
        })


def _question(context: str) -> str:
    """The task's text without image tags: the checkpoint's template places one per image."""
    text = context.replace("<image>", "").strip()
    if not text:
        raise ValueError("the task gives an empty question")
    return text


def _generation_options(gen_kwargs: dict, default_max_new_tokens: int) -> dict:
    """lmms-eval's generation_kwargs as ``VLM.chat`` takes them (greedy unless temperature > 0)."""
    until = gen_kwargs.get("until") or []
    until = [until] if isinstance(until, str) else list(until)
    temperature = float(gen_kwargs.get("temperature") or 0)
    options = {"until": until, "max_new_tokens": int(gen_kwargs.get("max_new_tokens") or default_max_new_tokens)}
    if temperature > 0:
        options.update(do_sample=True, temperature=temperature)
        if gen_kwargs.get("top_p") is not None:
            options["top_p"] = float(gen_kwargs["top_p"])
    else:
        options["do_sample"] = False
    if int(gen_kwargs.get("num_beams") or 1) > 1:
        options["num_beams"] = int(gen_kwargs["num_beams"])
    return options
