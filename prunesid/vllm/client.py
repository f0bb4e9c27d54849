"""The embeddings route: compress outside the engine, send what the language model receives.

A vLLM engine sizes an image's placeholders before it encodes anything, so a budget that
follows the image's content (PruneSID-Dyn) or changes per request cannot run inside it.
Embeddings can: an engine started with ``enable_mm_embeds=True`` (``vllm serve ...
--enable-mm-embeds``) takes, per image, a ``[n, H]`` tensor of any length n and gives it n
placeholders. This module makes those tensors with the library's transformers path (the
same checkpoint loaded by :func:`prunesid.load_vlm`: tower, press, projector) and writes
them the way vLLM reads them::

    from prunesid import PruneSID, load_vlm
    from prunesid.vllm.client import compressed_embeddings, chat_message

    vlm = load_vlm("llava-hf/llava-1.5-7b-hf")  # the checkpoint the engine serves
    embeds = compressed_embeddings(vlm, images, PruneSID(budget=64, dynamic=True))
    message = chat_message("What differs?", embeds)  # an OpenAI chat message
    # POST {"model": ..., "messages": [message]} to /v1/chat/completions

or in Python, ``LLM.generate({"prompt": ..., "multi_modal_data": {"image": embeds[0]}})``.
Nothing here imports vLLM.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import torch


def compressed_embeddings(vlm, images, press) -> list[torch.Tensor]:
    """Per image, ``[n, H]`` float32: what the language model receives under ``press``
    (any press, dynamic budgets included), computed in one batch as the library does (a
    dynamic press shares its budget across the images; an uncalibrated one is calibrated
    on them first)."""
    from prunesid.methods.base import check_press

    check_press(press)
    images = list(images)
    if not images:
        raise ValueError("images must hold at least one image")
    if press.needs_calibration:
        press = press.calibrated(vlm.calibrate(images))
    encoded = [vlm.encode(image) for image in images]
    compressions = vlm.compress(encoded, press)
    return [vlm.visual_features(item, compression).float().cpu() for item, compression in zip(encoded, compressions)]


def embeds_base64(embeds: torch.Tensor) -> str:
    """``embeds`` ``[n, H]`` as vLLM's ``image_embeds`` field reads it: a NumPy ``.npy``
    file, base64 (no pickle on either side)."""
    if not isinstance(embeds, torch.Tensor) or embeds.dim() != 2 or embeds.shape[0] == 0:
        raise ValueError(f"embeds must be a [n, H] tensor with n >= 1, got {getattr(embeds, 'shape', type(embeds).__name__)}")
    buffer = io.BytesIO()
    np.save(buffer, embeds.detach().float().cpu().numpy(), allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_message(text: str, embeds: list[torch.Tensor]) -> dict:
    """A user message of an OpenAI-compatible chat request: the images' embeddings, then
    ``text``."""
    parts = [{"type": "image_embeds", "image_embeds": embeds_base64(item)} for item in embeds]
    return {"role": "user", "content": [*parts, {"type": "text", "text": text}]}
