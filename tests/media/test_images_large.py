"""Large photos: up to Pillow's decompression-bomb limit they load, reduced, in bounded
memory; beyond it, and below 16 pixels a side, a clear error.

The big files are made cheaply: the JPEG from a gradient, the PNG written row by row with
zlib (never a full-size image in memory). Peak memory of a load is read in a fresh Python
process (VmHWM, the peak resident set of that process since it started), against the same
process loading a small image.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prunesid.images import DECODED_PIXELS, load_image, max_pixels, reduction_factor

ROOT = Path(__file__).resolve().parents[2]


def write_png(path: Path, width: int, height: int) -> Path:
    """An RGB PNG of a gradient (red across, green down), streamed row by row."""
    x_ramp = (np.arange(width) * 255 // max(width - 1, 1)).astype(np.uint8)
    row = np.zeros((width, 3), dtype=np.uint8)
    row[:, 0], row[:, 2] = x_ramp, 128
    # Filter "Sub" (1): each byte minus the byte one pixel to the left; green and blue are
    # constant along a row, so only the first pixel's green changes from row to row.
    filtered = np.zeros(width * 3 + 1, dtype=np.uint8)
    filtered[0] = 1
    sub = row.astype(np.int16)
    sub[1:] -= row[:-1].astype(np.int16)
    filtered[1:] = (sub % 256).astype(np.uint8).reshape(-1)
    compressor = zlib.compressobj(1)
    chunks = []
    for y in range(height):
        filtered[2] = y * 255 // max(height - 1, 1)  # first pixel's green
        chunks.append(compressor.compress(filtered.tobytes()))
    chunks.append(compressor.flush())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(chunks)) + chunk(b"IEND", b""))
    return path


def write_png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` (enough to be refused before decoding)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def write_jpeg(path: Path, width: int, height: int) -> Path:
    gradient = Image.linear_gradient("L").resize((width, height), Image.BILINEAR)
    Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_180), Image.new("L", (width, height), 90))).save(path, quality=85)
    return path


@pytest.fixture(scope="module")
def big_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("large")
    return {
        "jpeg_50mp": write_jpeg(folder / "photo-50mp.jpg", 8660, 5774),
        "png_100mp": write_png(folder / "scan-100mp.png", 10000, 10000),
        "small": write_png(folder / "small.png", 640, 480),
    }


@pytest.fixture(autouse=True, scope="module")
def _linux_only():
    if not Path("/proc/self/status").exists():
        pytest.skip("peak memory is read from /proc (Linux)")


def _peak_rss_mb(path: Path) -> dict:
    """Load ``path`` in a fresh process: its peak resident memory (MB) and the result's size."""
    # prunesid/images.py alone (numpy + Pillow): the package would import torch.
    code = (
        "import importlib.util, json, sys\n"
        "spec = importlib.util.spec_from_file_location('images', sys.argv[2])\n"
        "images = importlib.util.module_from_spec(spec); spec.loader.exec_module(images)\n"
        "image = images.load_image(sys.argv[1])\n"
        "peak = [int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]\n"
        "print(json.dumps({'peak_mb': peak / 1024, 'size': image.size}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path), str(ROOT / "prunesid" / "images.py")], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_reduction_factor_is_the_smallest_that_fits():
    assert reduction_factor(4000, 3000) == 1
    assert reduction_factor(8660, 5774) == 2
    assert reduction_factor(10000, 10000) == 3
    for width, height in [(8660, 5774), (10000, 10000), (16000, 11000), (4001, 4001), (30000, 1500)]:
        factor = reduction_factor(width, height)
        assert -(-width // factor) * -(-height // factor) <= DECODED_PIXELS
        assert factor == 1 or -(-width // (factor - 1)) * -(-height // (factor - 1)) > DECODED_PIXELS


@pytest.mark.slow
def test_a_50_mp_jpeg_loads_reduced_in_bounded_memory(big_files):
    small = _peak_rss_mb(big_files["small"])
    large = _peak_rss_mb(big_files["jpeg_50mp"])
    assert tuple(large["size"]) == (4330, 2887)  # draft mode: half scale out of the decoder
    # Pillow holds RGB at 4 bytes a pixel: a full-size decode alone is 200 MB, half scale 50 MB.
    assert large["peak_mb"] - small["peak_mb"] < 110, (small, large)


@pytest.mark.slow
def test_a_100_mp_png_loads_reduced_in_bounded_memory(big_files):
    small = _peak_rss_mb(big_files["small"])
    large = _peak_rss_mb(big_files["png_100mp"])
    assert tuple(large["size"]) == (3334, 3334)
    # PNG has no reduced decode: one full-size decode (400 MB: 4 bytes a pixel), reduced at
    # once (44 MB); no second full-size copy (a conversion or a resize would add 400 MB).
    assert large["peak_mb"] - small["peak_mb"] < 520, (small, large)


def test_the_reduced_image_keeps_the_picture(big_files):
    image = load_image(big_files["png_100mp"])
    pixels = np.asarray(image)
    assert image.mode == "RGB" and image.size == (3334, 3334)
    assert pixels[0, 0, 0] < 5 and pixels[0, -1, 0] > 250  # red grows to the right
    assert pixels[0, 0, 1] < 5 and pixels[-1, 0, 1] > 250  # green grows downwards
    assert abs(int(pixels[1000, 1000, 2]) - 128) <= 1


def test_exif_rotation_is_applied_after_a_reduced_decode(tmp_path):
    wide = Image.new("RGB", (6000, 3000), (200, 30, 30))
    wide.paste((30, 30, 200), (0, 0, 3000, 3000))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show upright
    path = tmp_path / "rotated.jpg"
    wide.save(path, exif=exif, quality=90)
    image = load_image(path)
    assert image.size == (1500, 3000)  # halved, then turned upright (portrait)
    top, bottom = np.asarray(image)[100, 750], np.asarray(image)[-100, 750]
    assert top[2] > 150 and bottom[0] > 150  # the blue half is now on top


def test_a_huge_in_memory_image_comes_back_reduced():
    image = load_image(Image.new("L", (6000, 4000), 77))
    assert image.mode == "RGB" and image.size == (3000, 2000) and image.getpixel((10, 10)) == (77, 77, 77)


@pytest.mark.parametrize("mode", ["P", "I;16", "1", "RGBA", "CMYK"])
def test_modes_without_a_reduce_are_converted_first(mode):
    source = Image.new("RGB", (5000, 4000), (10, 200, 30)).convert("L" if mode in ("I;16", "1") else "RGB")
    image = source.convert(mode) if mode != "I;16" else Image.fromarray(np.full((4000, 5000), 257 * 100, np.uint16))
    loaded = load_image(image)
    assert loaded.mode == "RGB" and loaded.size == (2500, 2000)


def test_beyond_the_bomb_limit_is_a_clear_error(tmp_path):
    path = write_png_header_only(tmp_path / "giant.png", 20000, 10000)
    limit = f"{max_pixels() / 1e6:.1f} MP"
    with pytest.raises(ValueError, match=rf"is 200\.0 MP; the largest accepted is {limit} \(Pillow's decompression-bomb limit\)"):
        load_image(path)
    with pytest.raises(ValueError, match="200.0 MP; the largest accepted"):
        load_image(path.read_bytes())


def test_a_1x1_image_is_a_clear_error(tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1)).save(path)
    with pytest.raises(ValueError, match="1 x 1 pixels; each side must be at least 16"):
        load_image(path)
