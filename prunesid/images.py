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
from prunesid.limits import DECODE_BYTES, DECODED_PIXELS, LARGE_DECODE_BYTES, MAX_ASPECT, MIN_SIDE

_LARGE_DECODE = threading.Lock()
# Modes Image.reduce takes without a full-size copy (it converts LA and RGBA to premultiplied
# alpha at full size first: those go band by band, composited over white, then reduced).
_REDUCIBLE = {"L", "La", "RGB", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "F"}
BAND_PIXELS = 1 << 20  # pixels converted at once when an image is converted band by band
BAND_BYTES_PER_PIXEL = 24  # a band's copies while converted: its crop, float64 values, 8-bit grey, RGB
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
    except _TooCostly as error:
        raise ValueError(f"{name} {error}") from None
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


def decode_bytes(opened: Image.Image) -> int:
    """What decoding ``opened`` holds at its peak, from its header: its pixels at the size the
    decoder writes them (JPEG: the draft size) in the mode's own storage (Pillow keeps 1, L, P
    at 1 byte a pixel, I;16 at 2, every other mode at 4), plus, for a progressive JPEG, the
    DCT coefficients of the whole image (2 bytes a sample) that libjpeg keeps whatever the
    scale, plus the RGB result (4 bytes a pixel, reduced). Conversions run band by band
    (``BAND_PIXELS`` at a time), so they add no full-size copy."""
    width, height = opened.size
    factor = reduction_factor(width, height)
    total = width * height * _bytes_per_pixel(opened.mode) + math.ceil(width / factor) * math.ceil(height / factor) * 4
    total += BAND_PIXELS * BAND_BYTES_PER_PIXEL
    if opened.format == "JPEG" and (opened.info.get("progressive") or opened.info.get("progression")):
        full_width, full_height = getattr(opened, "_full_size", opened.size)
        total += full_width * full_height * 2 * _samples_per_pixel(opened)
    return total


def _bytes_per_pixel(mode: str) -> int:
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def _samples_per_pixel(opened: Image.Image) -> float:
    """Samples a JPEG stores per pixel (3 for 4:4:4 colour, 1.5 for 4:2:0, 1 for grey)."""
    layers = getattr(opened, "layer", None) or [("", 1, 1, 0)] * len(opened.getbands())
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    return sum(layer[1] * layer[2] for layer in layers) / (h_max * v_max)


def _decoded(opened: Image.Image) -> Image.Image:
    """Pixels of a lazily opened (or in-memory) image: reduced if large, upright, RGB."""
    orientation = _orientation(opened)
    factor = reduction_factor(*opened.size)
    if factor > 1 and opened.format == "JPEG" and getattr(opened, "decoderconfig", None) == ():
        # Decode at 1/2, 1/4 or 1/8 scale: never at full size in memory.
        full_size = opened.size
        opened.draft(None, (math.ceil(opened.width / factor), math.ceil(opened.height / factor)))
        opened._full_size = full_size
        factor = reduction_factor(*opened.size)
    if not _is_loaded(opened):
        cost = decode_bytes(opened)
        if cost > DECODE_BYTES:
            raise _TooCostly(opened, cost)
        if cost > LARGE_DECODE_BYTES:
            with _LARGE_DECODE:
                opened.load()
                image = _reduced_rgb(opened, factor)
        else:
            opened.load()
            image = _reduced_rgb(opened, factor)
    else:
        image = _reduced_rgb(opened, factor)
    if orientation in _ORIENTATION:
        image = image.transpose(_ORIENTATION[orientation])
    return image


class _TooCostly(ValueError):
    def __init__(self, opened: Image.Image, cost: int):
        width, height = getattr(opened, "_full_size", opened.size)
        kind = "progressive JPEG" if opened.format == "JPEG" else f"{opened.format or 'image'} in mode {opened.mode}"
        super().__init__(
            f"is {width} x {height} ({kind}): decoding it would take {cost / 2**20:.0f} MB, more than the "
            f"{DECODE_BYTES / 2**20:.0f} MB one image may; please downscale it"
            + (" or save it as a baseline JPEG" if opened.format == "JPEG" else "")
        )


def _reduced_rgb(image: Image.Image, factor: int) -> Image.Image:
    """RGB, reduced by ``factor``, never converted at full size: modes Image.reduce takes are
    reduced first (the reduced copy is small), the others (P, 1, I;16...) are converted band
    by band of rows, each band reduced before the next is converted."""
    if factor > 1 and image.mode in _REDUCIBLE:
        image = image.reduce(factor)
        factor = 1
    if image.mode == "RGB" and factor == 1:
        image.load()
        return image
    if image.width * image.height <= BAND_PIXELS:
        converted = _to_rgb(image)
        return converted.reduce(factor) if factor > 1 else converted
    rows = max(factor, BAND_PIXELS // image.width // factor * factor)  # whole boxes of the reduce per band
    out = Image.new("RGB", (math.ceil(image.width / factor), math.ceil(image.height / factor)))
    extrema = image.getextrema() if image.mode in ("I", "F") else None
    for top in range(0, image.height, rows):
        band = _to_rgb(image.crop((0, top, image.width, min(top + rows, image.height))), extrema)
        out.paste(band.reduce(factor) if factor > 1 else band, (0, top // factor))
    return out


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


def _to_rgb(image: Image.Image, extrema: tuple | None = None) -> Image.Image:
    """RGB of a (small, or one band of a large) image; ``extrema`` the whole image's range
    for modes I and F, which are stretched onto 8 bits."""
    mode = image.mode
    if mode == "RGB":
        image.load()
        return image
    if mode.startswith("I;16"):  # full 16-bit range onto 8 bits (in place: one float copy)
        values = np.asarray(image, dtype=np.float64)
        values /= 257.0
        return Image.fromarray(np.rint(values, out=values).astype(np.uint8), mode="L").convert("RGB")
    if mode in ("I", "F"):  # no fixed range: stretch what is there
        values = np.asarray(image, dtype=np.float64)
        low, high = (float(extrema[0]), float(extrema[1])) if extrema else (float(values.min()), float(values.max()))
        if high == low:
            values[...] = 0.0
        else:
            values -= low
            values *= 255.0 / (high - low)
        return Image.fromarray(np.rint(values, out=values).astype(np.uint8), mode="L").convert("RGB")
    if mode == "P" or mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")
