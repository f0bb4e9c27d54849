"""VLM: a transformers VLM with a press between its vision tower and its LLM.

One question about one image runs: encode (the family's tower pass, once per image, cached)
-> compress (the press, cached) -> the family lays the kept tokens out for the LLM ->
shorten each image's placeholder run to its own count -> ``generate`` with the features
handed over (``mm_encoder_outputs``, or what the family's ``generation_inputs`` says).
Nothing is patched on the transformers model; it is used through its public forward/generate.
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

from prunesid.compression import Compression
from prunesid.geometry import PatchGrid
from prunesid.images import load_image
from prunesid.methods.base import Press, VisionTokens
from prunesid.selection import redundancy
from prunesid.video import Video, is_video, load_video
from prunesid.vlm.family import Family, VisualRun

CACHE_SIZE = 16


@dataclass
class EncodedImage:
    """One image after the vision tower: what compression and drawing need, nothing more."""

    key: str  # content hash: the cache key
    image: Image.Image  # the RGB image as the user gave it
    features: torch.Tensor  # [V, T, D] tokens a press chooses from (feature layer, no CLS)
    cls: torch.Tensor | None  # [V, D] feature-layer CLS token, None for towers without one
    cls_fed: bool  # the unmodified model feeds that CLS to the LLM (strategy "full")
    importance: torch.Tensor | None  # [V, T] CLS attention summed over heads (None: PSCA score)
    grids: list[PatchGrid]  # where each view's tokens sit on the image
    valid: torch.Tensor | None  # [V, T] bool: selectable tokens (None: all), e.g. not padding
    pixel_inputs: dict  # the image processor's output (pixel_values, image_sizes, ...)
    vision_ms: float
    keys: torch.Tensor | None = None  # [V, T, d] feature layer's attention keys, mean over heads (VisionZip)
    modality: str = "image"  # or "video": the views are then the clip's sampled frames, ``image`` the first
    video: Video | None = None  # a video's sampled frames and where they sit in the clip

    @property
    def num_views(self) -> int:
        return self.features.shape[0]

    @property
    def num_tokens(self) -> int:
        """Tokens across all views (V x T), padding included."""
        return self.features.shape[0] * self.features.shape[1]

    def information(self) -> list[float]:
        """phi = 1 - rho of each view, over its selectable tokens."""
        return (1.0 - redundancy(self.features, self.valid)).tolist()


@dataclass
class Reply:
    text: str
    selections: list[Compression | None]  # per image; None when no press was used
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
    """A loaded VLM of a supported family; build it with :func:`prunesid.load_vlm`."""

    def __init__(self, model, processor, family: Family, name: str):
        self.model = model
        self.processor = processor
        self.family = family
        self.name = name
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.placeholder_token_id = family.placeholder_token_id
        self.context_length = model.config.text_config.max_position_embeddings
        self._encoded: OrderedDict[str, EncodedImage] = OrderedDict()
        self._compressed: OrderedDict[tuple, list[Compression]] = OrderedDict()
        self._cache_lock = threading.Lock()

    # The name LLaVA's config uses; kept for callers that read it.
    @property
    def image_token_id(self) -> int:
        return self.placeholder_token_id

    def __repr__(self) -> str:
        return f"VLM({self.name!r}, {type(self.model).__name__}, device={self.device}, dtype={self.dtype})"

    # --- vision -------------------------------------------------------------------------

    @torch.inference_mode()
    def encode(self, image) -> EncodedImage:
        """Run the vision tower on one image (any input :func:`load_image` accepts); cached.

        Files and encoded bytes are recognised by their bytes, before decoding: moving a
        slider in the demo re-reads a file but never decodes a large photo again. A video (a
        :class:`prunesid.video.Video`, or a video file or its bytes) is sampled to the
        family's frame count; each frame is a view.
        """
        if is_video(image):
            return self._encode_video(image)
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
        return self._encoded_from(key, image, self.family.preprocess(image), start)

    def _encode_video(self, video) -> EncodedImage:
        frames = self.family.num_frames
        if frames is None:
            raise ValueError(f"{self.name} takes images only; a video needs a video model (e.g. tiny-random-video-llava)")
        key = video.key if isinstance(video, Video) else _encoded_key(video)
        if key is not None and not isinstance(video, Video):
            key = f"{key}:frames={frames}"  # the same key load_video gives the clip
        cached = self._cached(key)
        if cached is not None:
            return cached
        clip = load_video(video, num_frames=frames)
        key = key or clip.key
        start = time.perf_counter()
        pixel_inputs = self.family.preprocess_video(list(clip.frames))
        return self._encoded_from(key, clip.frames[0], pixel_inputs, start, modality="video", video=clip)

    def _encoded_from(self, key, image, pixel_inputs, start, **media) -> EncodedImage:
        """The tower on preprocessed pixels, as a cached EncodedImage."""
        vision = self.family.encode(pixel_inputs)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        encoded = EncodedImage(
            key=key,
            image=image,
            features=vision.features,
            cls=vision.cls,
            cls_fed=vision.cls_fed,
            importance=vision.importance,
            grids=self.family.grids(image, pixel_inputs),
            valid=self.family.valid_patches(pixel_inputs),
            pixel_inputs=pixel_inputs,
            vision_ms=(time.perf_counter() - start) * 1000,
            keys=vision.keys,
            **media,
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

    def vision_tokens(self, images: list[EncodedImage]) -> VisionTokens:
        """All views of ``images`` as one batch for a press. Views of different lengths (Qwen-VL
        images of different sizes) are padded, the padding marked not valid."""
        longest = max(item.features.shape[1] for item in images)
        features, valid, importance, keys = [], [], [], []
        for item in images:
            views, length, width = item.features.shape
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
            importance=torch.cat(importance) if len(importance) == len(images) else None,
            keys=torch.cat(keys) if len(keys) == len(images) else None,
            project=self.family.project,
            valid=None if bool(all_valid.all()) else all_valid,
            cls_slot=all(item.cls is not None for item in images) and self.family.cls_slot,
            preset=self.family.preset,
            grid_shapes=[(grid.rows, grid.cols) for item in images for grid in item.grids],
        )

    def compress(self, encoded: EncodedImage | list[EncodedImage], press: Press) -> list[Compression]:
        """Run ``press`` on the cached features of one or more images, all their views in one
        batch (so a dynamic press shares its budget across every view of every image).
        Returns one result per image, covering its views (``prunesid.select`` is the
        tensor-level call: one batch in, one result out)."""
        if not isinstance(press, Press):
            raise TypeError(f"press must be a prunesid press (e.g. prunesid.PruneSID), got {type(press).__name__}")
        images = [encoded] if isinstance(encoded, EncodedImage) else list(encoded)
        if not images:
            return []
        key = (tuple(item.key for item in images), press)
        with self._cache_lock:
            if key in self._compressed:
                self._compressed.move_to_end(key)
                return self._compressed[key]
        result = press.compress(self.vision_tokens(images))
        per_image, start = [], 0
        for item in images:
            part = result.take(start, start + item.num_views)
            if part.tokens_per_view != item.features.shape[1]:  # drop the batch padding again
                part = part.first_tokens(item.features.shape[1])
            per_image.append(part)
            start += item.num_views
        with self._cache_lock:
            self._compressed[key] = per_image
            while len(self._compressed) > 4 * CACHE_SIZE:
                self._compressed.popitem(last=False)
        return per_image

    # The earlier name of compress(); per image, unlike the batch-level prunesid.select().
    select = compress

    def calibrate(self, images) -> float:
        """phi_ref for PruneSID-Dyn: the mean information score phi over ``images``' views."""
        phis = [phi for image in images for phi in self.encode(image).information()]
        if not phis:
            raise ValueError("calibrate needs at least one image")
        return sum(phis) / len(phis)

    @torch.inference_mode()
    def visual_run(self, encoded: EncodedImage, compression: Compression | None) -> VisualRun:
        """What the LLM receives for one image: all its tokens as the unmodified model feeds
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
        # One projector call for every token of every view (the projector is per token); the
        # CLS of every view (a video frame each has its own), the layout takes what it needs.
        pieces = ([encoded.cls] if with_cls else []) + [view[index] for view, index in zip(views, kept)]
        pieces += [m.to(views.device, views.dtype) for m in merged]
        projected = list(torch.split(self.family.project(torch.cat(pieces)), [len(p) for p in pieces]))
        cls = projected.pop(0) if with_cls else None
        kept_projected, merged_projected = projected[: len(kept)], projected[len(kept):]
        return self.family.layout(kept_projected, kept, merged_projected, cls, encoded.pixel_inputs, encoded.cls_fed)

    def visual_features(self, encoded: EncodedImage, compression: Compression | None) -> torch.Tensor:
        """``[n, H]``: the embeddings the LLM receives for one image (all tokens if None)."""
        return self.visual_run(encoded, compression).embeds

    def unmodified_visual_tokens(self, encoded: EncodedImage) -> int:
        """How many visual tokens the unmodified model feeds the LLM for this image (LLaVA-NeXT:
        base view, unpadded tiles and their newlines): the reference for every compression ratio."""
        return int(self.visual_run(encoded, None).embeds.shape[0])

    # --- language -----------------------------------------------------------------------

    def chat(self, images, prompt, press: Press | None = None, max_new_tokens: int = 128, do_sample: bool = False, **generate_kwargs) -> Reply:
        """Answer ``prompt`` (a string, or a list of chat messages) about ``images``.

        ``press=None`` runs the unmodified model (all visual tokens). Returns a :class:`Reply`
        with the text, each image's compression result, the visual token counts and timings in ms.
        """
        stream = self.stream(images, prompt, press, max_new_tokens, do_sample, **generate_kwargs)
        for _ in stream:
            pass
        return stream.reply

    def stream(self, images, prompt, press: Press | None = None, max_new_tokens: int = 128, do_sample: bool = False, **generate_kwargs) -> ReplyStream:
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
            **prepared["model_inputs"],
            **generate_kwargs,
        )
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

    def prepare(self, images, prompt, press: Press | None, max_new_tokens: int = 128) -> dict:
        """Everything ``generate`` needs, with the visual tokens already compressed:
        ``input_ids`` (placeholder runs shortened), ``model_inputs`` (the family's extra
        keyword arguments: the features, positions where the family needs them), plus the
        per-image results, counts and timings."""
        if press is not None and not isinstance(press, Press):
            raise TypeError(f"press must be a prunesid press (e.g. prunesid.PruneSID) or None, got {type(press).__name__}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        image_list = [] if images is None else list(images) if isinstance(images, (list, tuple)) else [images]
        modalities = ["video" if is_video(item) else "image" for item in image_list]
        messages = _messages(prompt, modalities)
        start = time.perf_counter()
        encoded = [self.encode(image) for image in image_list]
        vision_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        selections = self.compress(encoded, press) if press is not None else [None] * len(encoded)
        runs = [self.visual_run(item, sel) for item, sel in zip(encoded, selections)]
        features = [run.embeds for run in runs]
        select_ms = (time.perf_counter() - start) * 1000
        input_ids = self._input_ids(messages, [f.shape[0] for f in features], modalities)
        if input_ids.shape[1] >= self.context_length:
            raise ValueError(
                f"the prompt is {input_ids.shape[1]} tokens ({sum(f.shape[0] for f in features)} of them visual) "
                f"but {self.name} has a context of {self.context_length} tokens; shorten the prompt or lower the budget"
            )
        input_ids = input_ids.to(self.device)
        return {
            "input_ids": input_ids,
            "model_inputs": self.family.generation_inputs(input_ids, runs, encoded),
            "features": features,
            "runs": runs,
            "selections": selections,
            "visual_tokens": [f.shape[0] for f in features],
            "max_new_tokens": min(max_new_tokens, self.context_length - input_ids.shape[1]),
            "timings": {"vision_ms": vision_ms, "select_ms": select_ms},
        }

    def _input_ids(self, messages: list[dict], counts: list[int], modalities: list[str] | None = None) -> torch.Tensor:
        """Tokenise the conversation and widen each input's single placeholder to its count.
        Per modality, the k-th placeholder in the prompt belongs to the k-th input of that
        modality (as the model scatters each modality's features in order)."""
        modalities = modalities or ["image"] * len(counts)
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = torch.tensor(self.processor.tokenizer(text)["input_ids"], dtype=torch.long)
        repeats = torch.ones_like(ids)
        for modality in dict.fromkeys(["image", *(["video"] if self.family.num_frames else []), *modalities]):
            wanted = [count for count, kind in zip(counts, modalities) if kind == modality]
            placeholders = (ids == self.family.placeholder_for(modality)).nonzero().flatten()
            if placeholders.numel() != len(wanted):
                raise ValueError(
                    f"the conversation holds {placeholders.numel()} {modality} placeholders but {len(wanted)} {modality}s were given"
                )
            repeats[placeholders] = torch.tensor(wanted, dtype=torch.long)
        return torch.repeat_interleave(ids, repeats)[None]


def _pad_token_id(tokenizer) -> int | None:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _encoded_key(image) -> str | None:
    """Cache key of a file path or encoded bytes, from the bytes; None for decoded images."""
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
    elif isinstance(image, (str, os.PathLike)) and Path(image).is_file():
        digest = hashlib.blake2b(digest_size=16)
        with open(image, "rb") as handle:  # in chunks: a video file may be large
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return "bytes:" + digest.hexdigest()
    else:
        return None
    return "bytes:" + hashlib.blake2b(data, digest_size=16).hexdigest()


def _image_key(image: Image.Image) -> str:
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.size}{image.mode}".encode())
    return digest.hexdigest()


def _messages(prompt, modalities: list[str]) -> list[dict]:
    """Chat messages from a question string (one image / video part per input, in order) or
    validated user-given messages."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("prompt is empty; ask a question about the image")
        content = [{"type": modality} for modality in modalities] + [{"type": "text", "text": prompt}]
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
