"""How a press reaches a model that lmms-eval drives.

lmms-eval's model classes build the prompt and call the processor and ``model.generate``
themselves. While one of our ``generate_until`` calls runs, the lmms-eval instance's model
and processor are seen through two thin views (instance attributes, restored afterwards;
no class is patched):

- the processor view records the images and clips of each processor call (as lmms-eval
  hands them over) and which keys its output has;
- the model view's ``generate`` receives lmms-eval's inputs, encodes and compresses the
  recorded images with :class:`prunesid.vlm.VLM` (cached) and each clip from the pixels the
  processor made of it (``pixel_values_videos`` with its grid and, on Qwen2.5-VL,
  ``second_per_grid_ts``: the frames, resize and timing lmms-eval chose, not the library's
  own sampling), and goes through the one press
  path, :func:`prunesid.pipeline.press_inputs`, as ``VLM.chat`` does: it cuts each image's
  placeholder run in lmms-eval's own prompt to the number of tokens fed and hands the
  features to the real ``generate`` (the family's ``generation_inputs``:
  ``mm_encoder_outputs``, M-RoPE positions) instead of the pixels. It returns lmms-eval's
  prompt followed by the generated tokens, so the caller's own trimming still works.

Every call writes one record (task, doc id, which tokens each view kept, rho / phi / N').
Errors in this path are raised as :class:`PressFailure` (a BaseException), so that
lmms-eval's ``except Exception`` around ``generate`` (which would turn them into empty
answers and quietly lower the score) cannot swallow them; the model class re-raises the
original error.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from prunesid.methods.base import Press
from prunesid.pipeline import press_inputs


class PressFailure(BaseException):
    """Carries an error of the press path past ``except Exception`` blocks of lmms-eval."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


@dataclass
class ProcessorCall:
    images: list  # as given to the processor (PIL images)
    keys: tuple[str, ...]  # the keys of its output (input_ids, pixel_values, image_sizes, ...)
    videos: list = field(default_factory=list)  # each clip as given (frames, an array, a tensor, a path)

    @property
    def media(self) -> list[tuple[str, object]]:
        """(modality, input) of every image, then every video, each in the processor's order."""
        return [("image", image) for image in self.images] + [("video", video) for video in self.videos]


class ProcessorView:
    """The lmms-eval instance's processor, recording the images of every call."""

    def __init__(self, processor, calls: list[ProcessorCall], pressed: bool, takes_video: bool = False):
        self._processor = processor
        self._calls = calls
        self._pressed = pressed
        self._takes_video = takes_video

    def __call__(self, *args, **kwargs):
        videos = _clips(kwargs.get("videos"))
        if self._pressed and videos and not self._takes_video:
            raise PressFailure(ValueError("video inputs cannot be compressed by this evaluation model; use an image task or method=none"))
        output = self._processor(*args, **kwargs)
        images = _flatten(kwargs.get("images")) if kwargs.get("images") is not None else []
        if images or videos:
            self._calls.append(ProcessorCall(images=images, videos=videos, keys=tuple(output.keys())))
        return output

    def __getattr__(self, name):
        return getattr(self._processor, name)


class ModelView:
    """The wrapped transformers model, with ``generate`` going through the press."""

    def __init__(self, model, run: "PressRun"):
        self._model = model
        self._run = run

    def generate(self, *args, **kwargs):
        if args:
            raise PressFailure(TypeError("generate() expects keyword arguments only under a press"))
        return self._run.generate(self._model, kwargs)

    def __call__(self, *args, **kwargs):
        raise PressFailure(NotImplementedError(
            "scoring by likelihood (loglikelihood tasks, e.g. seedbench_ppl) is not supported under a press; "
            "use the generation tasks (pope, mme, seedbench)"
        ))

    def __getattr__(self, name):
        return getattr(self._model, name)


@dataclass
class PressRun:
    """One ``generate_until`` call of a model class: the press, the VLM and where records go."""

    vlm: object  # prunesid.vlm.VLM around the lmms-eval instance's model and processor
    press: Press | None  # None: the unmodified model (only the records are added)
    settings: dict
    records: "RecordWriter"
    model_id: str
    calls: list[ProcessorCall] = field(default_factory=list)
    current: tuple | None = None  # (task, doc_id) of the request being answered

    def generate(self, model, kwargs: dict):
        call = self.calls.pop() if self.calls else None
        self.calls.clear()
        try:
            if call is None or not call.media:
                self.records.write(self._record([], []))
                return model.generate(**kwargs)
            if self.press is None:
                return self._unmodified(model, kwargs, call)
            return self._pressed(model, kwargs, call)
        except PressFailure:
            raise
        except Exception as error:
            raise PressFailure(error) from error

    def _unmodified(self, model, kwargs, call):
        # The prompt's placeholder count per modality (no tower pass is added for it).
        counts, items = [], []
        ids = self.vlm.family.processor_input_ids(kwargs["input_ids"][0])  # e.g. InternVL's frames, in images' tokens
        for modality in dict.fromkeys(kind for kind, _ in call.media):
            total = int((ids == self.vlm.family.placeholder_for(modality)).sum())
            counts.append(total)
            if sum(kind == modality for kind, _ in call.media) == 1:
                items.append({"modality": modality, "visual_tokens": total, "unmodified_tokens": total})
        self.records.write(self._record(items, counts))
        return model.generate(**kwargs)

    def _pressed(self, model, kwargs, call):
        vlm = self.vlm
        input_ids = kwargs.pop("input_ids")
        if input_ids.shape[0] != 1:
            raise ValueError(f"a press needs one conversation per generate call (batch_size=1), got a batch of {input_ids.shape[0]}")
        clips = processed_clips(vlm, {**kwargs, "input_ids": input_ids}, call.videos)
        for key in call.keys:  # the processor's outputs: pixels, sizes, grids, masks...
            kwargs.pop(key, None)
        encoded = [vlm.encode(image) for image in call.images] + clips
        # The prompt must hold exactly what the unmodified model would receive for each input.
        pressed = press_inputs(vlm.family, input_ids.to(model.device), encoded, self.press, vlm.compress(encoded, self.press))
        ids = pressed.input_ids
        output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **pressed.model_inputs, **kwargs)
        images = [
            {"modality": item.modality, **_image_record(item, compression, count, total)}
            for item, compression, count, total in zip(encoded, pressed.compressions, pressed.visual_tokens, pressed.unmodified_tokens)
        ]
        self.records.write(self._record(images, pressed.visual_tokens))
        # lmms-eval trims its own prompt length off the output: give it its prompt back.
        return torch.cat([input_ids.to(output.device), output[:, ids.shape[1]:]], dim=1)

    def _record(self, images: list[dict], counts: list[int]) -> dict:
        task, doc_id = self.current or (None, None)
        return {
            "task": task,
            "doc_id": doc_id,
            "model": self.model_id,
            "settings": self.settings,
            "visual_tokens": counts,
            "images": images,
        }


def _image_record(encoded, compression, count: int, total: int) -> dict:
    """One image's record: per view the kept tokens, N' and the method's diagnostics, with
    rho / phi measured the same way for every method."""
    phis = encoded.information()
    views = []
    for view in range(compression.num_views):
        summary = compression.to_dict(view)
        for bulky in ("groups", "merged_from"):  # one value per token: in the overlays, not here
            summary.pop(bulky, None)
        summary.setdefault("phi", phis[view])
        summary.setdefault("rho", 1.0 - phis[view])
        label = encoded.grids[view].label if view < len(encoded.grids) else str(view)
        views.append({"view": label, **summary})
    return {"visual_tokens": count, "unmodified_tokens": total, "views": views}


class RecordWriter:
    """Appends one JSON line per generate call to ``path`` (opened on the first record)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = None
        self._lock = threading.Lock()
        self.count = 0

    def write(self, record: dict) -> None:
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
            self.count += 1

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def processed_clips(vlm, inputs: dict, clips: list) -> list:
    """Each clip of a processor call, encoded from the processor's own output (``inputs``):
    its pixels, grid and timing, cut per clip by the family. Its picture (the grids' box) is
    the clip's first frame as given."""
    if not clips:
        return []
    import hashlib

    from prunesid.pipeline import encode_media

    items = [(pixels, size) for modality, pixels, size in vlm.family.split_inputs(inputs) if modality == "video"]
    if len(items) != len(clips):
        raise ValueError(f"the processor was given {len(clips)} clips but its output holds {len(items)}")
    encoded = []
    for (pixel_inputs, size), clip in zip(items, clips):
        digest = hashlib.blake2b(digest_size=16)
        for key in sorted(pixel_inputs):
            digest.update(key.encode())
            digest.update(torch.as_tensor(pixel_inputs[key]).detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())  # any dtype, bfloat16 too
        picture = _first_frame(clip) or Image.new("RGB", size)
        with torch.inference_mode():
            encoded.append(encode_media(vlm.family, "processed:" + digest.hexdigest(), picture, pixel_inputs, "video"))
    return encoded


def _first_frame(clip) -> Image.Image | None:
    """A clip's first frame as an RGB image (frames, [T, H, W, 3] or [T, C, H, W] arrays or
    tensors, 0..255); None for a path."""
    import numpy as np

    if isinstance(clip, (str, Path)):
        return None
    frame = clip[0]
    if isinstance(frame, Image.Image):
        return frame.convert("RGB")
    array = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    return Image.fromarray(np.clip(np.round(array.astype(np.float32)), 0, 255).astype(np.uint8).squeeze()).convert("RGB")


def _clips(videos) -> list:
    """The clips of a processor call's ``videos``: one clip is a [T, H, W, 3] array, a
    [T, C, H, W] tensor (qwen-vl-utils'), a list of frames or a file path; several come as a
    list of those."""
    if videos is None:
        return []
    import numpy as np

    single = (isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim == 4) or isinstance(videos, (str, Path)) or (
        isinstance(videos, (list, tuple)) and len(videos) > 0 and (isinstance(videos[0], Image.Image) or getattr(videos[0], "ndim", 0) == 3)
    )
    return [videos] if single else list(videos)


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _flatten(images) -> list:
    flat = []
    for item in _as_list(images):
        flat.extend(_flatten(item) if isinstance(item, (list, tuple)) else [item])
    return [image for image in flat if image is not None]


def mean_phi(vlm, images: dict, device) -> float:
    """A dynamic budget's phi_ref: the mean phi over every view of ``images`` (distinct images
    by key), across all ranks when the run is distributed."""
    phis = [phi for image in images.values() for phi in vlm.encode(image).information()]
    total = torch.tensor([sum(phis), float(len(phis))], dtype=torch.float64)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        total = total.to(device)
        torch.distributed.all_reduce(total)
    if float(total[1]) == 0:
        raise ValueError("the dynamic budget's calibration found no image in the evaluated requests; give phi_ref=")
    return float(total[0] / total[1])
