"""A stand-in for ``qwen_vl_utils.process_vision_info`` (qwen-vl-utils 0.0.14), which
lmms-eval's Qwen2.5-VL classes prepare every sample with. The real package imports
torchvision at its top, and torchvision cannot be installed next to this project's CPU
torch, so the evaluation tests put this function in its place on lmms-eval's modules.

It keeps the package's documented contract, which is what our plug-in relies on:

- an image (PIL, ``data:image/...;base64,`` URL or path) comes back as a PIL image resized
  to multiples of one merged token (2 x ``image_patch_size``: 28 px, Qwen3-VL's 32 px) within
  its ``min_pixels`` / ``max_pixels`` (4 and 16384 tokens by default);
- a clip file comes back as a float ``[T, C, H, W]`` tensor (0..255) of ``T`` frames chosen
  uniformly (``round(linspace(0, n - 1, T))``): ``nframes`` rounded to an even count, or
  else ``fps`` (2 by default) frames a second, at least ``min_frames`` (4) and at most
  ``max_frames`` (768, and the clip's length), an even count; every frame resized to one
  multiple of one merged token between ``min_pixels`` (128 tokens by default) and the smaller of
  ``max_pixels`` and 768 tokens;
- with ``return_video_metadata=True`` each clip is ``(tensor, metadata)``, the metadata
  giving the clip's frame rate, the frames chosen and its length (transformers' processor
  reads the sampled rate, hence ``second_per_grid_ts``, from it).

Resizing uses PIL's bicubic filter where the package uses torchvision's: pixel values may
differ slightly, shapes and frame choice do not.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import torch
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

FRAME_STEP = 2  # frames come in pairs (temporal patch 2)


def _image(source) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, str) and source.startswith("data:image"):
        return Image.open(io.BytesIO(base64.b64decode(source.split("base64,", 1)[1])))
    return Image.open(source)


def fetch_image(element: dict, factor: int = 28) -> Image.Image:
    image = _image(element.get("image", element.get("image_url"))).convert("RGB")
    low = element.get("min_pixels", 4 * factor * factor)
    high = element.get("max_pixels", 16384 * factor * factor)
    height, width = smart_resize(image.height, image.width, factor=factor, min_pixels=low, max_pixels=high)
    return image.resize((width, height), Image.BICUBIC)


def frame_count(element: dict, total: int, rate: float) -> int:
    """How many frames of a ``total``-frame clip at ``rate`` fps the model gets."""
    if "nframes" in element:
        count = round(element["nframes"] / FRAME_STEP) * FRAME_STEP
    else:
        low = math.ceil(element.get("min_frames", 4) / FRAME_STEP) * FRAME_STEP
        high = math.floor(element.get("max_frames", min(768, total)) / FRAME_STEP) * FRAME_STEP
        wanted = total / rate * element.get("fps", 2.0)
        count = math.floor(min(max(wanted, low), high, total) / FRAME_STEP) * FRAME_STEP
    if not FRAME_STEP <= count <= total:
        raise ValueError(f"nframes should be in [{FRAME_STEP}, {total}], got {count}")
    return count


def fetch_video(element: dict, factor: int = 28):
    import decord

    reader = decord.VideoReader(element["video"])
    total, rate = len(reader), reader.get_avg_fps()
    count = frame_count(element, total, rate)
    indices = torch.linspace(0, total - 1, count).round().long().tolist()
    frames = reader.get_batch(indices).asnumpy()  # [T, H, W, 3]
    token = factor * factor
    low = element.get("min_pixels", 128 * token)
    cap = max(min(768 * token, element.get("total_pixels", 128000 * token * 0.9) / count * FRAME_STEP), int(low * 1.05))
    high = min(element.get("max_pixels", cap), cap)
    height, width = smart_resize(frames.shape[1], frames.shape[2], factor=factor, min_pixels=low, max_pixels=high)
    resized = [np.asarray(Image.fromarray(frame).resize((width, height), Image.BICUBIC)) for frame in frames]
    video = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float()
    metadata = {"fps": rate, "frames_indices": indices, "total_num_frames": total, "video_backend": "decord"}
    return video, metadata, count / total * rate


def process_vision_info(conversations, return_video_kwargs: bool = False, return_video_metadata: bool = False, image_patch_size: int = 14):
    if conversations and isinstance(conversations[0], dict):
        conversations = [conversations]
    factor = 2 * image_patch_size
    images, videos, rates = [], [], []
    for conversation in conversations:
        for message in conversation:
            for element in message["content"] if isinstance(message["content"], list) else []:
                if "image" in element or "image_url" in element:
                    images.append(fetch_image(element, factor))
                elif "video" in element:
                    video, metadata, rate = fetch_video(element, factor)
                    videos.append((video, metadata) if return_video_metadata else video)
                    rates.append(rate)
    kwargs = {"do_sample_frames": False, **({} if return_video_metadata else {"fps": rates})}
    result = (images or None, videos or None)
    return (*result, kwargs) if return_video_kwargs else result
