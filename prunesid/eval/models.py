"""The lmms-eval model classes: lmms-eval's own class for each family, with a press.

Imported by lmms-eval only (through ``prunesid.eval.manifest``); it imports lmms-eval.
Each class puts :class:`PressedModel` in front of lmms-eval's class, which does all the
loading, prompting and decoding as usual: ``__init__`` takes our ``--model_args`` out
(``prunesid.eval.settings``) and wraps the loaded model in a :class:`prunesid.vlm.VLM`;
``generate_until`` runs lmms-eval's loop with the press in between
(``prunesid.eval.pressing``).
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from pathlib import Path

import torch
from loguru import logger as eval_logger

from prunesid.eval.checkpoint_loading import checkpoint_loading
from prunesid.eval.pressing import (
    ModelView,
    PressFailure,
    PressRun,
    ProcessorView,
    RecordWriter,
    mean_phi,
)
from prunesid.eval.settings import EvalSettings, parse_model_args
from prunesid.pipeline import media_key
from prunesid.vlm import wrap
from prunesid.family_kit import builtin_directory, builtin_models

DEFAULT_RECORDS_DIR = "prunesid-records"


class PressedModel:
    """Mixin in front of an lmms-eval model class (see the module docstring)."""

    model_id: str  # lmms-eval's name of the class (set by each class below)
    processor_attr = "_image_processor"  # where the lmms-eval class keeps its processor

    def __init__(self, **kwargs):
        base = self._lmms_eval_class()
        parameters = inspect.signature(base.__init__).parameters
        accepted = _accepted_arguments(base)
        settings, rest = parse_model_args(kwargs, accepted, self.model_id)
        if settings.press is not None and str(rest.get("batch_size", 1)) != "1":
            raise ValueError(f"--model_args batch_size must be 1 with a press (one conversation per generate call), got {rest['batch_size']!r}")
        default = parameters["pretrained"].default
        name = rest.get("pretrained", default)
        if name in builtin_models():
            rest["pretrained"] = export_builtin(name)
        self.adjust_kwargs(rest)
        with checkpoint_loading(base):  # its own AutoProcessor needs torchvision for Qwen-VL, Video-LLaVA
            super().__init__(**rest)
        self.prunesid_settings: EvalSettings = settings
        self.prunesid_vlm = wrap(self.model, getattr(self, self.processor_attr), name=name)
        self.records_path = records_path(settings, self.model_id, rank=self.rank, world_size=self.world_size)
        self._records = RecordWriter(self.records_path)
        eval_logger.info(f"{self.model_id}: {settings.describe()}; per-sample records -> {self.records_path}")

    @classmethod
    def _lmms_eval_class(cls):
        for klass in cls.__mro__[1:]:
            if not issubclass(klass, PressedModel) and klass.__module__.startswith("lmms_eval."):
                return klass
        raise TypeError(f"{cls.__name__} has no lmms-eval model class among its bases")

    def adjust_kwargs(self, kwargs: dict) -> None:
        """Family-specific adjustments of the wrapped class's arguments (none by default)."""

    @property
    def model(self):
        model = super().model
        run = self.__dict__.get("_press_run")
        return ModelView(model, run) if run is not None else model

    # --- lmms-eval's entry points -------------------------------------------------------

    def generate_until(self, requests):
        requests = [self._tracked(request) for request in requests]
        press = self.prunesid_settings.press
        if press is not None and press.needs_calibration:
            press = press.calibrated(self.calibrate(requests))
        run = PressRun(
            vlm=self.prunesid_vlm, press=press, records=self._records, model_id=self.model_id,
            settings={**self.prunesid_settings.describe(), **({} if press is None else press.settings())},
        )
        processor = getattr(self, self.processor_attr)
        takes_video = getattr(self.prunesid_vlm.family, "num_frames", None) is not None
        setattr(self, self.processor_attr, ProcessorView(processor, run.calls, pressed=press is not None, takes_video=takes_video))
        self._press_run = run
        try:
            return super().generate_until(requests)
        except PressFailure as failure:
            raise failure.error
        finally:
            self._press_run = None
            setattr(self, self.processor_attr, processor)
            self._records.close()

    def loglikelihood(self, requests):
        if self.prunesid_settings.press is not None:
            raise NotImplementedError(
                f"{self.model_id}: scoring by likelihood (e.g. seedbench_ppl) is not supported with a press; "
                "use the generation tasks (pope, mme, seedbench)"
            )
        return super().loglikelihood(requests)

    # --- helpers ------------------------------------------------------------------------

    def _tracked(self, request):
        """The request with its visual callable noting (task, doc_id) when lmms-eval calls it."""
        args = list(request.args)
        slot = 2 if self.is_simple else 1  # simple: doc_to_visual; chat: doc_to_messages
        if callable(args[slot]):
            args[slot] = _Tracked(args[slot], self, task=args[4], doc_id=args[3])
        return dataclasses.replace(request, arguments=tuple(args))

    def request_images(self, request) -> list:
        """The images lmms-eval will hand to the model for one request."""
        args = request.args
        doc = self.task_dict[args[4]][args[5]][args[3]]
        if self.is_simple:
            visuals = args[2](doc)
            return [v for v in (visuals or []) if hasattr(v, "tobytes")]
        from lmms_eval.protocol import ChatMessages

        images, _, _ = ChatMessages(messages=args[1](doc)).extract_media()
        return list(images)

    def calibrate(self, requests) -> float:
        """The reference of a press that needs calibration (a dynamic budget's phi_ref): the
        mean phi over every distinct image of the run (all ranks together when distributed)."""
        images = {}
        for request in requests:
            for image in self.request_images(request):
                images.setdefault(media_key(image), image)
        start = time.perf_counter()
        phi_ref = mean_phi(self.prunesid_vlm, images, self.device)
        eval_logger.info(f"{self.model_id}: phi_ref = {phi_ref:.4f} over {len(images)} images ({(time.perf_counter() - start):.1f} s)")
        return phi_ref


def _accepted_arguments(base) -> set[str]:
    """The keyword arguments an lmms-eval class takes: its ``__init__``'s, and where that
    passes ``**kwargs`` on (e.g. qwen3_5 to qwen3_vl), those of the classes it extends."""
    accepted = set()
    for klass in base.__mro__:
        if "__init__" not in vars(klass) or klass.__module__.startswith("lmms_eval.api"):
            continue
        parameters = inspect.signature(klass.__init__).parameters
        accepted |= {name for name, p in parameters.items() if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            break
    return accepted


class _Tracked:
    """A task's doc_to_visual / doc_to_messages that tells the model which doc it serves."""

    def __init__(self, function, owner: PressedModel, task, doc_id):
        self.function = function
        self.owner = owner
        self.task = task
        self.doc_id = doc_id

    def __call__(self, *args, **kwargs):
        run = self.owner.__dict__.get("_press_run")
        if run is not None:
            run.current = (self.task, self.doc_id)
        return self.function(*args, **kwargs)


def records_path(settings: EvalSettings, model_id: str, rank: int = 0, world_size: int = 1) -> Path:
    """Where the per-sample records go: ``records=`` (a ``.jsonl`` file or a directory), by
    default ``prunesid-records/`` in the working directory; one file per rank."""
    given = Path(settings.records) if settings.records else Path(DEFAULT_RECORDS_DIR)
    if given.suffix == ".jsonl":
        path = given
    else:
        budget = None if settings.press is None else settings.press.budget
        stamp = time.strftime("%Y%m%d_%H%M%S")
        path = given / f"{model_id}_{settings.method}{'' if budget is None else budget}_{stamp}.jsonl"
    if world_size > 1:
        path = path.with_name(f"{path.stem}.rank{rank}{path.suffix}")
    return path


def export_builtin(name: str) -> str:
    """The directory an offline built-in is loaded from (``prunesid.load_vlm(name)``: random
    weights, no download, written in its Hub repository's layout), so the lmms-eval class
    loads it like any checkpoint."""
    return str(builtin_directory(name))


def single_process() -> bool:
    from accelerate import PartialState

    return PartialState().num_processes == 1
