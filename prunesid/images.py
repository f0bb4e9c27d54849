"""Turn whatever the user hands us into an RGB PIL image, or say clearly why not.

Checked before any pixel is decoded where possible (size comes from the header), so a
decompression bomb or a 10000 x 10000 upload fails fast instead of exhausting memory.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MIN_SIDE = 16
MAX_PIXELS = 40_000_000  # 40 MP: any phone photo; a 10000 x 10000 scan is refused
MAX_ASPECT = 20.0  # the processors resize the short side to 336: a 1:50 strip would explode


def load_image(image, name: str = "image") -> Image.Image:
    """Return ``image`` as an RGB ``PIL.Image``; raise ``ValueError`` naming the problem.

    Accepts a PIL image, a path, raw encoded bytes or an ``H x W [x C]`` uint8 array. Modes
    L / LA / P / RGBA / CMYK / I;16 / I / F are converted (transparency over white, 16-bit
    and float rescaled to 8 bit); EXIF rotation is applied.
    """
    if isinstance(image, Image.Image):
        opened = image
    elif isinstance(image, (str, os.PathLike)):
        opened = _open_file(Path(image), name)
    elif isinstance(image, (bytes, bytearray)):
        opened = _open_bytes(bytes(image), name, source=f"{len(image)} bytes")
    elif isinstance(image, np.ndarray):
        opened = _from_array(image, name)
    else:
        raise TypeError(f"{name} must be a PIL image, a file path, encoded bytes or a numpy array, got {type(image).__name__}")
    _check_size(opened, name)
    try:
        opened = ImageOps.exif_transpose(opened)
        return _to_rgb(opened)
    except (OSError, ValueError, SyntaxError) as error:  # truncated or corrupt pixel data
        raise ValueError(f"{name} could not be decoded ({error}); is the file complete?") from error


def _open_file(path: Path, name: str) -> Image.Image:
    if not path.exists():
        raise ValueError(f"{name} file {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"{name} path {str(path)!r} is not a file")
    return _open_bytes(path.read_bytes(), name, source=repr(str(path)))


def _open_bytes(data: bytes, name: str, source: str) -> Image.Image:
    if not data:
        raise ValueError(f"{name} {source} is empty")
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError as error:
        raise ValueError(f"{name} {source} is not an image PIL can read (PNG, JPEG, WebP, GIF, BMP, TIFF, ...)") from error
    except Image.DecompressionBombError as error:
        raise ValueError(f"{name} {source} is too large: {error}") from error
    except (OSError, SyntaxError, ValueError) as error:  # a known format with a damaged header
        raise ValueError(f"{name} {source} is damaged and could not be decoded ({error})") from error


def _from_array(array: np.ndarray, name: str) -> Image.Image:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(f"{name} array must be H x W, H x W x 1, 3 or 4, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"{name} array must be uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(array))


def _check_size(image: Image.Image, name: str) -> None:
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise ValueError(f"{name} is {width} x {height} pixels; each side must be at least {MIN_SIDE}")
    if width * height > MAX_PIXELS:
        raise ValueError(
            f"{name} is {width} x {height} = {width * height / 1e6:.1f} MP; the largest accepted is "
            f"{MAX_PIXELS / 1e6:.0f} MP, please downscale it"
        )
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise ValueError(f"{name} is {width} x {height}; aspect ratios beyond {MAX_ASPECT:.0f}:1 are not accepted")


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        image.load()
        return image
    if mode in ("I;16", "I;16B", "I;16L"):  # full 16-bit range onto 8 bits
        values = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(values.round().astype(np.uint8), mode="L").convert("RGB")
    if mode in ("I", "F"):  # no fixed range: stretch what is there
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = np.zeros_like(values) if high == low else (values - low) / (high - low) * 255.0
        return Image.fromarray(scaled.round().astype(np.uint8), mode="L").convert("RGB")
    if mode == "P" or mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")
