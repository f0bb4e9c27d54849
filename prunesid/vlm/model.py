"""VLM: a transformers LLaVA model with PruneSID between its vision tower and its LLM.

One question about one image runs: encode (tower once per image, cached) -> select (per
press, cached) -> project the kept tokens -> shorten each image's placeholder run to its own
count -> ``generate`` with the features handed over as ``mm_encoder_outputs``. Nothing is
patched on the transformers model; it is used through its public forward/generate.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from PIL import Image
from transformers.generation.streamers import BaseStreamer
from transformers.modeling_outputs import BaseModelOutputWithPooling

from prunesid.geometry import PatchGrid
from prunesid.images import load_image
from prunesid.press import PruneSID
from prunesid.selection import Selection, redundancy, select
from prunesid.vlm.importance import cls_attention, has_cls_token, tower_layers

CACHE_SIZE = 16


@dataclass
class EncodedImage:
    """One image after the vision tower: what selection and drawing need, nothing more."""

    key: str  # content hash: the cache key
    image: Image.Image  # the RGB image as the user gave it
    features: torch.Tensor  # [V, T, D] feature-layer patch tokens (before the projector)
    cls: torch.Tensor | None  # [V, D] feature-layer CLS token, None for towers without one
    importance: torch.Tensor | None  # [V, T] CLS attention summed over heads (None: PSCA score)
    grids: list[PatchGrid]  # where each view's patches sit on the image
    valid: torch.Tensor | None  # [V, T] bool: selectable patches (None: all), e.g. not padding
    pixel_inputs: dict  # the image processor's output (pixel_values, image_sizes, ...)
    vision_ms: float

    @property
    def num_views(self) -> int:
        return self.features.shape[0]

    @property
    def num_tokens(self) -> int:
        """Patch tokens across all views: what an uncompressed model would select from."""
        return self.features.shape[0] * self.features.shape[1]

    def valid_positions(self) -> list[torch.Tensor]:
        """Per view, the indices of the patches selection may choose from."""
        every = torch.arange(self.features.shape[1], device=self.features.device)
        if self.valid is None:
            return [every] * self.num_views
        return [every[mask.to(every.device)] for mask in self.valid]

    def information(self) -> list[float]:
        """phi = 1 - rho of each view, over its selectable patches."""
        return [1.0 - float(redundancy(view[index][None])[0]) for view, index in zip(self.features, self.valid_positions())]


@dataclass
class Reply:
    text: str
    selections: list[Selection | None]  # per image; None when no press was used
    visual_tokens: list[int]  # tokens the LLM received for each image
    timings: dict[str, float] = field(default_factory=dict)  # vision/select/prefill/decode ms
    prompt_tokens: int = 0


class ReplyStream:
    """Iterate for text pieces as they are generated; ``.reply`` is complete afterwards."""

    def __init__(self, produce: Callable[["ReplyStream"], Iterator[str]]):
        self.reply: Reply | None = None  # set by ``produce`` once generation has ended
        self._pieces = produce(self)

    def __iter__(self) -> Iterator[str]:
        yield from self._pieces


class VLM:
    """A loaded LLaVA-family model; build it with :func:`prunesid.load_vlm`."""

    def __init__(self, model, processor, family, name: str):
        self.model = model
        self.processor = processor
        self.family = family
        self.name = name
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        config = model.config
        self.vision_tower = model.model.vision_tower
        self.has_cls = has_cls_token(self.vision_tower)
        self.feature_layer = config.vision_feature_layer
        self.image_token_id = config.image_token_id
        self.context_length = config.text_config.max_position_embeddings
        self._encoded: OrderedDict[str, EncodedImage] = OrderedDict()
        self._selections: OrderedDict[tuple, list[Selection]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VLM({self.name!r}, {type(self.model).__name__}, device={self.device}, dtype={self.dtype})"

    # --- vision -------------------------------------------------------------------------

    @torch.inference_mode()
    def encode(self, image) -> EncodedImage:
        """Run the vision tower on one image (any input :func:`load_image` accepts); cached.

        Files and encoded bytes are recognised by their bytes, before decoding: moving a
        slider in the demo re-reads a file but never decodes a large photo again.
        """
        key = _encoded_key(image)
        cached = self._cached(key)
        if cached is not None:
            return cached
        image = load_image(image)
        key = key or _image_key(image)
        cached = self._cached(key)
        if cached is not None:
            return cached
        start = time.perf_counter()
        pixel_inputs = dict(self.processor.image_processor(images=image, return_tensors="pt"))
        views = self.family.pixel_views(pixel_inputs).to(self.device, self.dtype)
        out = self.vision_tower(views, output_hidden_states=True, return_dict=True)
        hidden = out.hidden_states
        layers = self.feature_layer if isinstance(self.feature_layer, (list, tuple)) else [self.feature_layer]
        indices = [layer % len(hidden) for layer in layers]
        selected = torch.cat([hidden[i] for i in indices], dim=-1)
        cls = selected[:, 0] if self.has_cls else None
        features = selected[:, 1:] if self.has_cls else selected
        importance = None
        encoder_layers = tower_layers(self.vision_tower)
        if self.has_cls and encoder_layers is not None and indices[-1] >= 1:
            # The layer whose output is the feature layer; its input is one hidden state earlier.
            row = cls_attention(encoder_layers[indices[-1] - 1], hidden[indices[-1] - 1])
            importance = row[:, 1:]
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        encoded = EncodedImage(
            key=key,
            image=image,
            features=features,
            cls=cls,
            importance=importance,
            grids=self.family.grids(self.processor.image_processor, image, pixel_inputs),
            valid=self.family.valid_patches(pixel_inputs),
            pixel_inputs=pixel_inputs,
            vision_ms=(time.perf_counter() - start) * 1000,
        )
        with self._cache_lock:
            self._encoded[key] = encoded
            while len(self._encoded) > CACHE_SIZE:
                self._encoded.popitem(last=False)
        return encoded

    def _cached(self, key: str | None) -> EncodedImage | None:
        with self._cache_lock:
            if key in self._encoded:
                self._encoded.move_to_end(key)
                return self._encoded[key]
        return None

    def reserved(self, press: PruneSID) -> int:
        """Slots of the budget taken by the passed-through CLS token (0 or 1)."""
        return int(press.keep_cls and self.has_cls and self.family.cls_slot)

    def select(self, encoded: EncodedImage | list[EncodedImage], press: PruneSID) -> list[Selection]:
        """PruneSID on the cached features of one or more images: one Selection per image,
        over its views. A dynamic press shares its budget across all views of all images."""
        if not isinstance(press, PruneSID):
            raise TypeError(f"press must be a prunesid.PruneSID, got {type(press).__name__}")
        images = [encoded] if isinstance(encoded, EncodedImage) else list(encoded)
        key = (tuple(item.key for item in images), press)
        with self._cache_lock:
            if key in self._selections:
                self._selections.move_to_end(key)
                return self._selections[key]
        if all(item.valid is None or bool(item.valid.all()) for item in images):
            selection = self._select_all(images, press)
        else:
            selection = self._select_valid(images, press)
        per_image, start = [], 0
        for item in images:
            per_image.append(selection.take(start, start + item.num_views))
            start += item.num_views
        with self._cache_lock:
            self._selections[key] = per_image
            while len(self._selections) > 4 * CACHE_SIZE:
                self._selections.popitem(last=False)
        return per_image

    def _select_all(self, images: list[EncodedImage], press: PruneSID) -> Selection:
        features = torch.cat([item.features for item in images])
        importance = None
        if all(item.importance is not None for item in images):
            importance = torch.cat([item.importance for item in images])
        return select(features, press.budget, importance=importance, **press.select_kwargs(self.reserved(press)))

    def _select_valid(self, images: list[EncodedImage], press: PruneSID) -> Selection:
        """Select among each view's valid patches only. Views with the same number of valid
        patches are selected together; a dynamic press without phi_ref gets the mean phi of
        all views, so budgets stay comparable across those calls."""
        features = torch.cat([item.features for item in images])
        importance = None
        if all(item.importance is not None for item in images):
            importance = torch.cat([item.importance for item in images])
        positions = [index for item in images for index in item.valid_positions()]
        kwargs = press.select_kwargs(self.reserved(press))
        if press.dynamic and press.phi_ref is None:
            phis = [phi for item in images for phi in item.information()]
            kwargs["phi_ref"] = sum(phis) / len(phis)
        per_view: list[Selection | None] = [None] * len(positions)
        counts = sorted({index.numel() for index in positions})
        for count in counts:
            views = [v for v, index in enumerate(positions) if index.numel() == count]
            where = torch.stack([positions[v] for v in views])
            tokens = torch.stack([features[v, positions[v]] for v in views])
            scores = None if importance is None else torch.stack([importance[v, positions[v]] for v in views])
            selection = select(tokens, press.budget, importance=scores, **kwargs).embed(where, features.shape[1])
            for row, v in enumerate(views):
                per_view[v] = selection.take(row, row + 1)
        return Selection.concat(per_view)

    def calibrate(self, images) -> float:
        """phi_ref for PruneSID-Dyn: the mean information score phi over ``images``' views."""
        phis = [phi for image in images for phi in self.encode(image).information()]
        if not phis:
            raise ValueError("calibrate needs at least one image")
        return sum(phis) / len(phis)

    @torch.inference_mode()
    def visual_features(self, encoded: EncodedImage, selection: Selection | None) -> torch.Tensor:
        """``[n, H]``: the embeddings the LLM receives for one image (all tokens if no selection)."""
        views = encoded.features
        if selection is None:
            kept = [torch.arange(views.shape[1], device=views.device) for _ in range(views.shape[0])]
        else:
            kept = [index.to(views.device) for index in selection.indices]
        projector = self.model.model.multi_modal_projector
        # One projector call for every kept token of every view (the MLP is per token).
        stacked = projector(torch.cat([view[index] for view, index in zip(views, kept)])[None])[0]
        projected = list(torch.split(stacked, [index.numel() for index in kept]))
        cls = None
        if selection is not None and selection.reserved and encoded.cls is not None:
            cls = projector(encoded.cls[:1][None])[0]
        return self.family.layout(self.model, projected, kept, cls, encoded.pixel_inputs)

    # --- language -----------------------------------------------------------------------

    def chat(self, images, prompt, press: PruneSID | None = None, max_new_tokens: int = 128, do_sample: bool = False, **generate_kwargs) -> Reply:
        """Answer ``prompt`` (a string, or a list of chat messages) about ``images``.

        ``press=None`` runs the unmodified model (all visual tokens). Returns a :class:`Reply`
        with the text, each image's Selection, the visual token counts and timings in ms.
        """
        stream = self.stream(images, prompt, press, max_new_tokens, do_sample, **generate_kwargs)
        for _ in stream:
            pass
        return stream.reply

    def stream(self, images, prompt, press: PruneSID | None = None, max_new_tokens: int = 128, do_sample: bool = False, **generate_kwargs) -> ReplyStream:
        """Like :meth:`chat`, but yields text pieces while generating (in a worker thread)."""
        prepared = self.prepare(images, prompt, press, max_new_tokens)
        streamer = _TimedTextStreamer(self.processor.tokenizer)
        kwargs = dict(
            input_ids=prepared["input_ids"],
            attention_mask=torch.ones_like(prepared["input_ids"]),
            max_new_tokens=prepared["max_new_tokens"],
            do_sample=do_sample,
            streamer=streamer,
            pad_token_id=_pad_token_id(self.processor.tokenizer),
            **generate_kwargs,
        )
        if prepared["features"]:
            kwargs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=prepared["features"])}
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as error:  # surfaced in the caller's thread
                failure.append(error)
                streamer.end()

        def pieces(stream: ReplyStream) -> Iterator[str]:
            worker = threading.Thread(target=run, daemon=True)
            streamer.start = time.perf_counter()
            worker.start()
            yield from streamer
            worker.join()
            if failure:
                raise failure[0]
            timings = dict(prepared["timings"])
            timings.update(streamer.timings())
            stream.reply = Reply(
                text=streamer.text,
                selections=prepared["selections"],
                visual_tokens=prepared["visual_tokens"],
                timings=timings,
                prompt_tokens=int(prepared["input_ids"].shape[1]),
            )

        return ReplyStream(pieces)

    def prepare(self, images, prompt, press: PruneSID | None, max_new_tokens: int = 128) -> dict:
        """Everything ``generate`` needs, with the visual tokens already compressed."""
        if press is not None and not isinstance(press, PruneSID):
            raise TypeError(f"press must be a prunesid.PruneSID or None, got {type(press).__name__}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        image_list = [] if images is None else list(images) if isinstance(images, (list, tuple)) else [images]
        messages = _messages(prompt, len(image_list))
        start = time.perf_counter()
        encoded = [self.encode(image) for image in image_list]
        vision_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        selections = self.select(encoded, press) if (press is not None and encoded) else [None] * len(encoded)
        features = [self.visual_features(item, sel) for item, sel in zip(encoded, selections)]
        select_ms = (time.perf_counter() - start) * 1000
        input_ids = self._input_ids(messages, [f.shape[0] for f in features])
        if input_ids.shape[1] >= self.context_length:
            raise ValueError(
                f"the prompt is {input_ids.shape[1]} tokens ({sum(f.shape[0] for f in features)} of them visual) "
                f"but {self.name} has a context of {self.context_length} tokens; shorten the prompt or lower the budget"
            )
        return {
            "input_ids": input_ids.to(self.device),
            "features": features,
            "selections": selections,
            "visual_tokens": [f.shape[0] for f in features],
            "max_new_tokens": min(max_new_tokens, self.context_length - input_ids.shape[1]),
            "timings": {"vision_ms": vision_ms, "select_ms": select_ms},
        }

    def _input_ids(self, messages: list[dict], counts: list[int]) -> torch.Tensor:
        """Tokenise the conversation and widen each image's single placeholder to its count."""
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = torch.tensor(self.processor.tokenizer(text)["input_ids"], dtype=torch.long)
        placeholders = (ids == self.image_token_id).nonzero().flatten()
        if placeholders.numel() != len(counts):
            raise ValueError(f"the conversation holds {placeholders.numel()} image placeholders but {len(counts)} images were given")
        repeats = torch.ones_like(ids)
        repeats[placeholders] = torch.tensor(counts, dtype=torch.long)
        return torch.repeat_interleave(ids, repeats)[None]


def _pad_token_id(tokenizer) -> int | None:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _encoded_key(image) -> str | None:
    """Cache key of a file path or encoded bytes, from the bytes; None for decoded images."""
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
    elif isinstance(image, (str, os.PathLike)) and Path(image).is_file():
        data = Path(image).read_bytes()
    else:
        return None
    return "bytes:" + hashlib.blake2b(data, digest_size=16).hexdigest()


def _image_key(image: Image.Image) -> str:
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.size}{image.mode}".encode())
    return digest.hexdigest()


def _messages(prompt, num_images: int) -> list[dict]:
    """Chat messages from a question string or validated user-given messages."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("prompt is empty; ask a question about the image")
        content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": prompt}]
        return [{"role": "user", "content": content}]
    if not isinstance(prompt, (list, tuple)) or not prompt:
        raise TypeError(f"prompt must be a non-empty string or a list of chat messages, got {type(prompt).__name__}")
    for message in prompt:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant") or "content" not in message:
            raise ValueError(f"each message must be a dict with role system/user/assistant and content, got {message!r}")
    last = prompt[-1]
    text = last["content"] if isinstance(last["content"], str) else " ".join(
        part.get("text", "") for part in last["content"] if isinstance(part, dict) and part.get("type") == "text"
    )
    if last["role"] != "user" or not text.strip():
        raise ValueError("the last message must be a user message with non-empty text")
    return list(prompt)


class _TimedTextStreamer(BaseStreamer):
    """Decodes generated tokens into text pieces and times prefill vs decode.

    ``generate`` calls ``put`` once with the prompt, then once per new token: the first new
    token marks the end of the prefill.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self.text = ""
        self.start = time.perf_counter()
        self.first_token_at: float | None = None
        self.end_at: float | None = None
        self._seen_prompt = False
        self._queue: queue.Queue = queue.Queue()

    def put(self, value: torch.Tensor) -> None:
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.tokens.extend(value.flatten().tolist())
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            return
        if len(text) > len(self.text):
            self._queue.put(text[len(self.text):])
        self.text = text

    def end(self) -> None:
        if self.end_at is None:
            self.end_at = time.perf_counter()
            text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
            if len(text) > len(self.text):
                self._queue.put(text[len(self.text):])
            self.text = text
            self._queue.put(None)

    def __iter__(self) -> Iterator[str]:
        while (piece := self._queue.get()) is not None:
            yield piece

    def timings(self) -> dict[str, float]:
        first = self.first_token_at or self.end_at or time.perf_counter()
        end = self.end_at or first
        return {
            "prefill_ms": (first - self.start) * 1000,
            "decode_ms": (end - first) * 1000,
            "new_tokens": float(len(self.tokens)),
        }
