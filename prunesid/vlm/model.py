"""VLM: a transformers VLM with a press between its vision tower and its LLM.

One question about one image runs: encode (the family's tower pass, once per input, cached)
-> compress (the press, cached) -> :func:`prunesid.pipeline.press_inputs` (the family lays
the kept tokens out and sets each input's placeholder run to its count) -> ``generate``
with the features handed over (``mm_encoder_outputs``, or what the family's
``generation_inputs`` says). Nothing is patched on the transformers model; it is used
through its public forward/generate.
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
from transformers.generation.streamers import BaseStreamer

from prunesid import pipeline  # the press path, below this facade
from prunesid.pipeline import PressedInputs
from prunesid.compression import Compression
from prunesid.images import load_image
from prunesid.methods.base import Press, VisionTokens, check_press
from prunesid.video import Video, is_video, load_video
from prunesid.family_kit.base import EncodedMedia, Family, VisualRun

CACHE_SIZE = 16


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
        self._encoded: OrderedDict[str, EncodedMedia] = OrderedDict()
        self._compressed: OrderedDict[tuple, list[Compression]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VLM({self.name!r}, {type(self.model).__name__}, device={self.device}, dtype={self.dtype})"

    # --- vision -------------------------------------------------------------------------

    @torch.inference_mode()
    def encode(self, image) -> EncodedMedia:
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
        key = key or pipeline.media_key(image)
        cached = self._cached(key)
        if cached is not None:
            return cached
        start = time.perf_counter()
        return self._encoded_from(key, image, self.family.preprocess(image), start)

    def _encode_video(self, video) -> EncodedMedia:
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

    def _encoded_from(self, key, image, pixel_inputs, start: float | None = None, modality: str = "image", video=None) -> EncodedMedia:
        """The tower on preprocessed pixels, as a cached EncodedMedia (``start``: when
        preprocessing began, counted in ``vision_ms``)."""
        encoded = pipeline.encode_media(self.family, key, image, pixel_inputs, modality, video)
        if start is not None:
            encoded.vision_ms = (time.perf_counter() - start) * 1000
        with self._cache_lock:
            self._encoded[key] = encoded
            while len(self._encoded) > CACHE_SIZE:
                self._encoded.popitem(last=False)
        return encoded

    def _cached(self, key: str | None) -> EncodedMedia | None:
        with self._cache_lock:
            if key in self._encoded:
                self._encoded.move_to_end(key)
                return self._encoded[key]
        return None

    def vision_tokens(self, images: list[EncodedMedia]) -> VisionTokens:
        """All views of ``images`` as one batch for a press (see :func:`prunesid.pipeline.vision_tokens`)."""
        return pipeline.vision_tokens(self.family, images)

    def compress(self, encoded: EncodedMedia | list[EncodedMedia], press: Press) -> list[Compression]:
        """Run ``press`` on the cached features of one or more images, all their views in one
        batch (so a dynamic press shares its budget across every view of every image).
        Returns one result per image, covering its views (``prunesid.select`` is the
        tensor-level call: one batch in, one result out)."""
        check_press(press)
        images = [encoded] if isinstance(encoded, EncodedMedia) else list(encoded)
        if not images:
            return []
        key = (tuple(item.key for item in images), press)
        with self._cache_lock:
            if key in self._compressed:
                self._compressed.move_to_end(key)
                return self._compressed[key]
        per_image = pipeline.compress(self.family, images, press)
        with self._cache_lock:
            self._compressed[key] = per_image
            while len(self._compressed) > 4 * CACHE_SIZE:
                self._compressed.popitem(last=False)
        return per_image

    def calibrate(self, images) -> float:
        """phi_ref for PruneSID-Dyn: the mean information score phi over ``images``' views."""
        phis = [phi for image in images for phi in self.encode(image).information()]
        if not phis:
            raise ValueError("calibrate needs at least one image")
        return sum(phis) / len(phis)

    def visual_run(self, encoded: EncodedMedia, compression: Compression | None) -> VisualRun:
        """What the LLM receives for one input: all its tokens as the unmodified model feeds
        them when ``compression`` is None, else the reserved, kept and merged tokens."""
        return pipeline.visual_run(self.family, encoded, compression)

    def visual_features(self, encoded: EncodedMedia, compression: Compression | None) -> torch.Tensor:
        """``[n, H]``: the embeddings the LLM receives for one image (all tokens if None)."""
        return self.visual_run(encoded, compression).embeds

    def unmodified_visual_tokens(self, encoded: EncodedMedia) -> int:
        """How many visual tokens the unmodified model feeds the LLM for this image (LLaVA-NeXT:
        base view, unpadded tiles and their newlines): the reference for every compression ratio."""
        return self.family.layout.unmodified_tokens(encoded.image_size, encoded.modality)

    def fed_tokens(self, image_size: tuple[int, int], press: Press | None = None, modality: str = "image") -> int:
        """Visual tokens the LLM will receive for one input of ``image_size`` (width, height)
        under ``press``, known before encoding (see :meth:`prunesid.family_kit.base.FamilyLayout.fed_tokens`)."""
        return self.family.fed_tokens(image_size, press, modality)

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
            input_ids=prepared.input_ids,
            attention_mask=torch.ones_like(prepared.input_ids),
            max_new_tokens=min(max_new_tokens, self.context_length - prepared.input_ids.shape[1]),
            do_sample=do_sample,
            streamer=streamer,
            pad_token_id=_pad_token_id(self.processor.tokenizer),
            **prepared.model_inputs,
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
            timings = dict(prepared.timings)
            timings.update(streamer.timings())
            stream.reply = Reply(
                text=streamer.text,
                selections=prepared.compressions,
                visual_tokens=prepared.visual_tokens,
                timings=timings,
                prompt_tokens=int(prepared.input_ids.shape[1]),
            )

        return ReplyStream(pieces)

    def prepare(self, images, prompt, press: Press | None, max_new_tokens: int = 128) -> PressedInputs:
        """Everything ``generate`` needs, with the visual tokens already compressed (see
        :func:`prunesid.pipeline.press_inputs`): the input ids (placeholder runs set to each
        input's count), the family's keyword arguments, per-input results, counts and
        timings (``vision_ms``, ``select_ms``)."""
        check_press(press, optional=True)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        image_list = [] if images is None else list(images) if isinstance(images, (list, tuple)) else [images]
        modalities = ["video" if is_video(item) else "image" for item in image_list]
        messages = _messages(prompt, modalities)
        start = time.perf_counter()
        encoded = [self.encode(image) for image in image_list]
        vision_ms = (time.perf_counter() - start) * 1000
        prompt_ids = self._prompt_ids(messages, modalities).to(self.device)
        start = time.perf_counter()
        compressions = self.compress(encoded, press) if press is not None else [None] * len(encoded)
        prepared = pipeline.press_inputs(self.family, prompt_ids, encoded, press, compressions)
        prepared.timings = {"vision_ms": vision_ms, "select_ms": (time.perf_counter() - start) * 1000}
        length = prepared.input_ids.shape[1]
        if length >= self.context_length:
            raise ValueError(
                f"the prompt is {length} tokens ({sum(prepared.visual_tokens)} of them visual) "
                f"but {self.name} has a context of {self.context_length} tokens; shorten the prompt or lower the budget"
            )
        return prepared

    def _prompt_ids(self, messages: list[dict], modalities: list[str]) -> torch.Tensor:
        """The conversation tokenised, one placeholder per input. Per modality, the k-th
        placeholder in the prompt belongs to the k-th input of that modality (as the model
        scatters each modality's features in order)."""
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = torch.tensor(self.processor.tokenizer(text)["input_ids"], dtype=torch.long)
        for modality in dict.fromkeys(["image", *(["video"] if self.family.num_frames else []), *modalities]):
            wanted = sum(kind == modality for kind in modalities)
            found = int((ids == self.family.placeholder_for(modality)).sum())
            if found != wanted:
                raise ValueError(f"the conversation holds {found} {modality} placeholders but {wanted} {modality}s were given")
        return ids[None]


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
