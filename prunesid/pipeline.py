"""The one press path: (prompt ids, media, press) -> what the language model receives.

Every front end goes through :func:`press_inputs`: :class:`prunesid.vlm.VLM` (chat, the demo,
the CLI), the lmms-eval models (:mod:`prunesid.eval.pressing`) and :func:`press_applied`, the
context manager for a transformers model a user loaded themselves. The steps:

1. each input (image or clip) is encoded once by its family (:class:`EncodedMedia`);
2. a press compresses all their views in one batch (:func:`compress`);
3. the family's backend-neutral layout orders what is fed (:class:`prunesid.family_kit.base.FeedPlan`)
   and its adapter projects the tokens (:func:`visual_run`);
4. each input's placeholder run in the prompt is set to its fed count and the adapter names
   the keyword arguments ``generate`` takes the features through (:class:`PressedInputs`).
"""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from PIL import Image

from prunesid.compression import Compression
from prunesid.methods.base import Press, VisionTokens, check_press
from prunesid.video import Video
from prunesid.family_kit import load_families
from prunesid.family_kit.base import EncodedMedia, Family, VisualRun


@dataclass
class PressedInputs:
    """What the language model receives for one conversation under a press."""

    input_ids: torch.Tensor  # [1, L]: each input's placeholder run set to its fed count
    model_inputs: dict  # the family's keyword arguments for generate (features, positions)
    runs: list[VisualRun]  # per input: the embeddings fed and their origins
    compressions: list[Compression | None]  # per input; None without a press
    visual_tokens: list[int]  # per input: visual tokens fed
    unmodified_tokens: list[int]  # per input: visual tokens the unmodified model feeds
    timings: dict[str, float] = field(default_factory=dict)


def media_key(image: Image.Image) -> str:
    """Content key of a decoded image (pixels, size and mode)."""
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.size}{image.mode}".encode())
    return digest.hexdigest()


def encode_media(family: Family, key: str, image: Image.Image, pixel_inputs: dict, modality: str, video: Video | None = None) -> EncodedMedia:
    """Run the family's tower on one input's preprocessed pixels (``modality``: "image" or
    "video", which decides the views' grids and which tokens may be kept)."""
    start = time.perf_counter()
    vision = family.encode(pixel_inputs)
    device = vision.features.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return EncodedMedia(
        key=key,
        image=image,
        features=vision.features,
        cls=vision.cls,
        cls_fed=vision.cls_fed,
        importance=vision.importance,
        # A clip given as fewer frames than the model's count (Video.from_frames) has that many
        # views; the layout's frames share one geometry, so its first ones fit.
        grids=family.grids(image, pixel_inputs, modality)[: vision.features.shape[0]],
        valid=family.valid_patches(pixel_inputs, image.size, modality),
        pixel_inputs=pixel_inputs,
        vision_ms=(time.perf_counter() - start) * 1000,
        keys=vision.keys,
        modality=modality,
        video=video,
        deepstack=vision.deepstack,
    )


def vision_tokens(family: Family, media: list[EncodedMedia]) -> VisionTokens:
    """All views of ``media`` as one batch for a press. Views of different lengths (Qwen-VL
    images of different sizes) are padded, the padding marked not valid."""
    longest = max(item.features.shape[1] for item in media)
    features, valid, importance, keys = [], [], [], []
    for item in media:
        views, length, _ = item.features.shape
        pad = longest - length
        mask = item.valid if item.valid is not None else torch.ones(views, length, dtype=torch.bool)
        features.append(torch.nn.functional.pad(item.features, (0, 0, 0, pad)))
        valid.append(torch.nn.functional.pad(mask.to(item.features.device), (0, pad), value=False))
        if item.importance is not None:
            importance.append(torch.nn.functional.pad(item.importance, (0, pad)))
        if item.keys is not None:
            keys.append(torch.nn.functional.pad(item.keys, (0, 0, 0, pad)))
    all_valid = torch.cat(valid)
    return VisionTokens(
        features=torch.cat(features),
        importance=torch.cat(importance) if len(importance) == len(media) else None,
        keys=torch.cat(keys) if len(keys) == len(media) else None,
        project=family.project,
        valid=None if bool(all_valid.all()) else all_valid,
        cls_slot=all(item.cls is not None for item in media) and family.cls_slot,
        cls_fed=all(item.cls_fed for item in media),
        preset=family.preset,
        grid_shapes=[(grid.rows, grid.cols) for item in media for grid in item.grids],
    )


def compress(family: Family, media: list[EncodedMedia], press: Press) -> list[Compression]:
    """``press`` on every view of every input in one batch (a dynamic press shares its
    budget across them); one result per input, covering its views."""
    check_press(press)
    if not media:
        return []
    result = press.compress(vision_tokens(family, media))
    per_input, start = [], 0
    for item in media:
        part = result.take(start, start + item.num_views)
        if part.tokens_per_view != item.features.shape[1]:  # drop the batch padding again
            part = part.first_tokens(item.features.shape[1])
        per_input.append(part)
        start += item.num_views
    return per_input


@torch.no_grad()  # not inference_mode: press_applied's forward may run with autograd on
def visual_run(family: Family, encoded: EncodedMedia, compression: Compression | None) -> VisualRun:
    """What the LLM receives for one input: all its tokens as the unmodified model feeds
    them when ``compression`` is None, else the reserved, kept and merged tokens."""
    views = encoded.features
    if compression is None:
        kept = [torch.arange(views.shape[1], device=views.device) for _ in range(views.shape[0])]
        merged = [views.new_zeros(0, views.shape[2]) for _ in kept]
        with_cls = encoded.cls_fed
    else:
        kept = [index.to(views.device) for index in compression.indices]
        merged = compression.merged or [views.new_zeros(0, views.shape[2]) for _ in kept]
        with_cls = compression.reserved > 0
    with_cls = with_cls and encoded.cls is not None
    plan = family.layout.arrange(
        kept, [int(m.shape[0]) for m in merged], with_cls, encoded.cls_fed, encoded.image_size,
        encoded.modality, compressed=compression is not None,
    )
    # One projector call for every token of every view (the projector is per token), in the
    # order FeedPlan indexes: CLS rows, kept tokens view by view, merged tokens view by view.
    pieces = ([encoded.cls] if with_cls else []) + [view[index] for view, index in zip(views, kept)]
    pieces += [m.to(views.device, views.dtype) for m in merged]
    sources = family.project(torch.cat(pieces))
    extra = family.extra_embeddings()
    if extra is not None:
        sources = torch.cat([sources, extra.to(sources.device, sources.dtype)])
    return VisualRun(sources[plan.order.to(sources.device)], plan.origin)


def press_inputs(
    family: Family, prompt_ids: torch.Tensor, media: list[EncodedMedia], press: Press | None,
    compressions: list[Compression | None] | None = None,
) -> PressedInputs:
    """What the language model receives for a conversation about ``media`` under ``press``.

    ``prompt_ids`` ``[1, L]`` holds each input's placeholder either once (a chat template's
    output) or as the unmodified model's full run (a processor's output); inputs of one
    modality take that modality's runs in order. ``compressions``: results already computed
    for ``media`` (e.g. cached), else ``press`` runs here; ``press=None`` feeds every token.
    """
    check_press(press, optional=True)
    if prompt_ids.dim() != 2 or prompt_ids.shape[0] != 1:
        raise ValueError(f"a press needs the input ids of one conversation ([1, L]), got shape {list(prompt_ids.shape)}")
    start = time.perf_counter()
    if compressions is None:
        compressions = compress(family, media, press) if press is not None and media else [None] * len(media)
    runs = [visual_run(family, item, compression) for item, compression in zip(media, compressions)]
    counts = [int(run.embeds.shape[0]) for run in runs]
    # Per input, its placeholder runs in the prompt (one, or e.g. one per Qwen3-VL frame group).
    full_runs, fed_runs = zip(*(family.placeholder_runs(item, run) for item, run in zip(media, runs))) if media else ((), ())
    unmodified = [sum(full) for full in full_runs]
    ids = family.expand_prompt(prompt_ids, media)
    modalities = [item.modality for item in media]
    for modality in dict.fromkeys(["image", *(["video"] if family.num_frames else []), *modalities]):
        mine = [i for i, kind in enumerate(modalities) if kind == modality]
        full = [n for i in mine for n in full_runs[i]]
        ids = set_placeholder_runs(ids, family.placeholder_for(modality), full, [n for i in mine for n in fed_runs[i]], modality)
    ids = family.model_input_ids(ids).to(prompt_ids.device)
    return PressedInputs(
        input_ids=ids,
        model_inputs=family.generation_inputs(ids, runs, media),
        runs=runs,
        compressions=list(compressions),
        visual_tokens=counts,
        unmodified_tokens=unmodified,
        timings={"layout_ms": (time.perf_counter() - start) * 1000},
    )


def set_placeholder_runs(input_ids: torch.Tensor, placeholder: int, full: list[int], counts: list[int], modality: str = "image") -> torch.Tensor:
    """``input_ids [1, L]`` with input ``i``'s placeholder run set to ``counts[i]`` tokens;
    the prompt holds either one placeholder per input or each input's full run (``full[i]``)."""
    ids = input_ids[0]
    total = int((ids == placeholder).sum())
    if total == len(full):
        return widen_placeholders(input_ids, placeholder, counts)
    if total == sum(full):
        return cut_placeholder_runs(input_ids, placeholder, full, counts)
    raise ValueError(
        f"the prompt holds {total} {modality} placeholder tokens but its {len(full)} {modality}(s) need one each or "
        f"{sum(full)} ({full}, what the unmodified model feeds): the prompt's preprocessing and the model disagree"
    )


def widen_placeholders(input_ids: torch.Tensor, placeholder: int, counts: list[int]) -> torch.Tensor:
    """``input_ids [1, L]`` with its k-th placeholder token repeated ``counts[k]`` times."""
    repeats = torch.ones_like(input_ids[0])
    repeats[(input_ids[0] == placeholder).nonzero().flatten()] = torch.tensor(counts, dtype=repeats.dtype, device=repeats.device)
    return torch.repeat_interleave(input_ids[0], repeats)[None]


def cut_placeholder_runs(input_ids: torch.Tensor, placeholder: int, full: list[int], counts: list[int]) -> torch.Tensor:
    """``input_ids [1, L]`` whose placeholders are ``full[i]`` tokens per input, in order,
    with input ``i``'s shortened to its first ``counts[i]``."""
    positions = (input_ids[0] == placeholder).nonzero().flatten()
    keep = torch.ones(input_ids.shape[1], dtype=torch.bool, device=input_ids.device)
    start = 0
    for total, count in zip(full, counts):
        if count > total:
            raise ValueError(f"an input would get {count} visual tokens but the prompt has room for {total}")
        keep[positions[start + count:start + total]] = False
        start += total
    return input_ids[:, keep]


# --- a press on a user's own model ------------------------------------------------------


@dataclass
class AppliedPress:
    """Handle of :func:`press_applied`: the last call's inputs under the press."""

    family: Family
    press: Press
    last: PressedInputs | None = None

    @property
    def visual_tokens(self) -> list[int]:
        """Visual tokens the language model received for each input of the last call."""
        return [] if self.last is None else self.last.visual_tokens


_MISSING = object()


@contextmanager
def press_applied(model, processor, press: Press) -> Iterator[AppliedPress]:
    """Apply ``press`` to a transformers model object inside a ``with`` block::

        with press_applied(model, processor, PruneSID(budget=64)):
            output = model.generate(**processor(images=image, text=prompt, return_tensors="pt"))

    ``generate`` and ``forward`` of this one instance see the processor's pixels, compress
    the images and feed the kept tokens (``generate`` returns the caller's prompt followed by
    the new tokens, so the usual trimming works; ``forward`` returns logits over the shortened
    sequence). Nothing is installed on any class; on leaving the block (normally or by an
    exception) the instance is exactly as before. Supported: the families of
    ``prunesid.family_kit.load_families()``; one conversation per call.
    """
    check_press(press)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    families = load_families()
    if model_type not in families:
        raise ValueError(f"model type {model_type!r} is not supported by press_applied; supported: {', '.join(families)}")
    family = families[model_type].family(model, processor)
    applied = AppliedPress(family, press)
    original = {name: model.__dict__.get(name, _MISSING) for name in ("generate", "forward")}
    class_generate, class_forward = type(model).generate, type(model).forward

    @torch.no_grad()
    def pressed(kwargs: dict) -> tuple[torch.Tensor, dict]:
        items = family.split_inputs(kwargs)
        input_ids = kwargs.pop("input_ids")
        for key in list(kwargs):  # the processor's pixel outputs are replaced by the features
            if key.startswith("pixel_values") or key in family.pixel_input_keys:
                kwargs.pop(key)
        kwargs.pop("attention_mask", None)
        media = [
            encode_media(family, f"applied:{index}", Image.new("RGB", size), pixel_inputs, modality)
            for index, (modality, pixel_inputs, size) in enumerate(items)
        ]
        applied.last = press_inputs(family, input_ids, media, press)
        ids = applied.last.input_ids.to(input_ids.device)
        return ids, {"attention_mask": torch.ones_like(ids), **applied.last.model_inputs, **kwargs}

    def has_pixels(kwargs: dict) -> bool:
        return any(key.startswith("pixel_values") and kwargs[key] is not None for key in kwargs)

    def generate(*args, **kwargs):
        if args or not has_pixels(kwargs):
            return class_generate(model, *args, **kwargs)
        prompt = kwargs["input_ids"]
        ids, rest = pressed(dict(kwargs))
        with torch.inference_mode():
            output = class_generate(model, input_ids=ids, **rest)
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        joined = torch.cat([prompt.to(sequences.device), sequences[:, ids.shape[1]:]], dim=1)
        if isinstance(output, torch.Tensor):
            return joined
        output.sequences = joined
        return output

    def forward(*args, **kwargs):
        if args or not has_pixels(kwargs):
            return class_forward(model, *args, **kwargs)
        ids, rest = pressed(dict(kwargs))
        return class_forward(model, input_ids=ids, **rest)

    model.generate, model.forward = generate, forward
    try:
        yield applied
    finally:
        for name, value in original.items():
            if value is _MISSING:
                model.__dict__.pop(name, None)
            else:
                model.__dict__[name] = value
