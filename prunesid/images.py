"""Turn whatever the user hands us into an RGB PIL image, or say clearly why not.

Sizes are checked from the header, before any pixel is decoded. Anything up to Pillow's
decompression-bomb limit (:func:`max_pixels`, about 179 MP) is accepted; larger images are
refused with the reason. Images over :data:`DECODED_PIXELS` are decoded at a reduced size,
by the smallest whole factor that brings them under it: JPEGs through the decoder's draft
mode (1/2, 1/4 or 1/8 scale straight out of the DCT, so a 50 MP photo never exists at full
size in memory), other formats with ``Image.reduce`` right after decoding, one such full
decode at a time. Every model's processor shrinks the image to a few hundred pixels anyway.
"""

from __future__ import annotations

import io
import math
import os
import re
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# The limits live in prunesid/limits.py. Full-size decodes bigger than LARGE_DECODE_BYTES
# run one at a time, so that several huge uploads at once cannot each hold their pixels.
from prunesid.limits import DECODED_PIXELS, LARGE_DECODE_BYTES, MAX_ASPECT, MIN_SIDE

_LARGE_DECODE = threading.Lock()
_REDUCIBLE = {"L", "LA", "La", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "F"}
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "I;16": 2, "I;16B": 2, "I;16L": 2, "RGB": 3, "YCbCr": 3}
# EXIF orientation -> the transpose that shows the picture upright.
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def max_pixels() -> int:
    """The largest image accepted: Pillow's decompression-bomb limit (twice
    ``Image.MAX_IMAGE_PIXELS``, about 179 MP by default)."""
    limit = Image.MAX_IMAGE_PIXELS or 89_478_485
    return 2 * int(limit)


def load_image(image, name: str = "image") -> Image.Image:
    """Return ``image`` as an RGB ``PIL.Image``; raise ``ValueError`` naming the problem.

    Accepts a PIL image, a path, raw encoded bytes or an ``H x W [x C]`` uint8 array. Modes
    L / LA / P / RGBA / CMYK / I;16 / I / F are converted (transparency over white, 16-bit
    and float rescaled to 8 bit); EXIF rotation is applied. Images over
    :data:`DECODED_PIXELS` come back reduced by a whole factor (see the module docstring).
    """
    if isinstance(image, Image.Image):
        opened = image
    elif isinstance(image, (str, os.PathLike)):
        opened = _open_file(Path(image), name)
    elif isinstance(image, (bytes, bytearray)):
        opened = _open(io.BytesIO(bytes(image)), name, source=f"{len(image)} bytes", empty=len(image) == 0)
    elif isinstance(image, np.ndarray):
        opened = _from_array(image, name)
    else:
        raise TypeError(f"{name} must be a PIL image, a file path, encoded bytes or a numpy array, got {type(image).__name__}")
    _check_size(opened, name)
    try:
        return _decoded(opened)
    except (OSError, ValueError, SyntaxError) as error:  # truncated or corrupt pixel data
        raise ValueError(f"{name} could not be decoded ({error}); is the file complete?") from error
    except MemoryError as error:
        raise ValueError(f"{name} is too large to decode on this server ({opened.width} x {opened.height}); please downscale it") from error


def reduction_factor(width: int, height: int, limit: int = DECODED_PIXELS) -> int:
    """The smallest whole factor f with ceil(w / f) * ceil(h / f) <= ``limit``."""
    factor = max(1, math.isqrt(max(width * height // max(limit, 1), 1)))
    while math.ceil(width / factor) * math.ceil(height / factor) > limit:
        factor += 1
    return factor


def _decoded(opened: Image.Image) -> Image.Image:
    """Pixels of a lazily opened (or in-memory) image: reduced if large, upright, RGB."""
    orientation = _orientation(opened)
    factor = reduction_factor(*opened.size)
    if factor > 1 and opened.format == "JPEG" and getattr(opened, "decoderconfig", None) == ():
        # Decode at 1/2, 1/4 or 1/8 scale: never at full size in memory.
        opened.draft(None, (math.ceil(opened.width / factor), math.ceil(opened.height / factor)))
        factor = reduction_factor(*opened.size)
    full_bytes = opened.width * opened.height * _BYTES_PER_PIXEL.get(opened.mode, 4)
    if full_bytes > LARGE_DECODE_BYTES and not _is_loaded(opened):
        with _LARGE_DECODE:
            opened.load()
            image = _reduced(opened, factor)
    else:
        opened.load()
        image = _reduced(opened, factor)
    image = _to_rgb(image)
    if orientation in _ORIENTATION:
        image = image.transpose(_ORIENTATION[orientation])
    return image


def _reduced(image: Image.Image, factor: int) -> Image.Image:
    if factor <= 1:
        return image
    if image.mode not in _REDUCIBLE:
        image = _to_rgb(image)
    return image.reduce(factor)


def _is_loaded(image: Image.Image) -> bool:
    return getattr(image, "fp", None) is None and not getattr(image, "tile", None)


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # a damaged EXIF block does not make the picture unusable
        return 1


def _open_file(path: Path, name: str) -> Image.Image:
    if not path.exists():
        raise ValueError(f"{name} file {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"{name} path {str(path)!r} is not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"{name} {str(path)!r} is empty")
    # Read into memory: the file is small next to its pixels, and no handle stays open.
    return _open(io.BytesIO(path.read_bytes()), name, source=repr(str(path)))


def _open(data: io.BytesIO, name: str, source: str, empty: bool = False) -> Image.Image:
    if empty:
        raise ValueError(f"{name} {source} is empty")
    try:
        with warnings.catch_warnings():  # between the two limits: handled by a reduced decode
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(data)
    except UnidentifiedImageError as error:
        raise ValueError(f"{name} {source} is not an image PIL can read (PNG, JPEG, WebP, GIF, BMP, TIFF, ...)") from error
    except Image.DecompressionBombError as error:
        found = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(found.group(1)) / 1e6:.1f} MP" if found else "larger than the limit"
        raise ValueError(
            f"{name} {source} is {size}; the largest accepted is {max_pixels() / 1e6:.1f} MP "
            f"(Pillow's decompression-bomb limit), please downscale it"
        ) from error
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
    if width * height > max_pixels():
        raise ValueError(
            f"{name} is {width} x {height} = {width * height / 1e6:.1f} MP; the largest accepted is "
            f"{max_pixels() / 1e6:.1f} MP (Pillow's decompression-bomb limit), please downscale it"
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
