"""Decoding memory per image mode: what :func:`prunesid.images.decode_bytes` estimates from the
header is what a decode holds, for every mode, and no mode is converted at full size.

Each mode's file is small on disk (a stripe pattern streamed through zlib) and large in
pixels (36 MP); its load runs in a fresh process whose peak resident memory (VmHWM) is
compared with the same process loading a small image. Before the band-by-band conversion a
64 MP palette PNG (8 KB) took +1.2 GB, a 16-bit one +1.0 GB, an RGBA one +0.5 GB (Pillow's
reduce copies RGBA at full size to premultiply it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from PIL import Image

from prunesid.images import decode_bytes, load_image, max_pixels
from prunesid.limits import DECODE_BYTES
from tests import hostile_media as corpus

ROOT = Path(__file__).resolve().parents[2]
SIDE = 6000  # 36 MP: each mode's pixels are 36-144 MB, its full-size RGB copy 144 MB
MARGIN_MB = 40  # the decoder's row buffers, the compressed file, allocator slack

# mode -> how its file is written
MODES = {
    "1": lambda path: corpus.png_of_mode(path.with_suffix(".png"), "1", SIDE, SIDE),
    "L": lambda path: corpus.png_of_mode(path.with_suffix(".png"), "L", SIDE, SIDE),
    "P": lambda path: corpus.png_of_mode(path.with_suffix(".png"), "P", SIDE, SIDE),
    "I;16": lambda path: corpus.png_of_mode(path.with_suffix(".png"), "I;16", SIDE, SIDE),
    "RGB": lambda path: corpus.png_of_mode(path.with_suffix(".png"), "RGB", SIDE, SIDE),
    "RGBA": lambda path: corpus.png_of_mode(path.with_suffix(".png"), "RGBA", SIDE, SIDE),
    "I": lambda path: corpus.tiff_of_mode(path.with_suffix(".tif"), "I", SIDE, SIDE // 2),
    "F": lambda path: corpus.tiff_of_mode(path.with_suffix(".tif"), "F", SIDE, SIDE // 2),
    "CMYK": lambda path: corpus.jpeg_of_mode(path.with_suffix(".jpg"), "CMYK", SIDE, SIDE),
    "progressive JPEG": lambda path: corpus.jpeg_of_mode(path.with_suffix(".jpg"), "RGB", SIDE, SIDE, progressive=True),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    if not Path("/proc/self/status").exists():
        pytest.skip("peak memory is read from /proc (Linux)")
    folder = tmp_path_factory.mktemp("modes")
    made = {mode: write(folder / mode.replace(";", "").replace(" ", "-")) for mode, write in MODES.items()}
    made["small"] = corpus.png_of_mode(folder / "small.png", "RGB", 640, 480)
    return made


def _load_in_fresh_process(path: Path) -> dict:
    """Peak resident MB of a process that imports prunesid.images alone and loads ``path``."""
    code = (
        "import json, sys, types\n"
        "package = types.ModuleType('prunesid'); package.__path__ = [sys.argv[2]]; sys.modules['prunesid'] = package\n"
        "from prunesid.images import load_image, decode_bytes\n"
        "from PIL import Image\n"
        "estimate = decode_bytes(Image.open(sys.argv[1]))\n"
        "image = load_image(sys.argv[1])\n"
        "peak = [int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]\n"
        "print(json.dumps({'peak_mb': peak / 1024, 'size': image.size, 'mode': image.mode}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path), str(ROOT / "prunesid")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # a fresh interpreter per mode
@pytest.mark.parametrize("mode", list(MODES))
def test_each_modes_decode_holds_what_its_header_says(files, mode):
    """Catches a mode converted at full size (P, 1, I;16 through float64, RGBA premultiplied
    by reduce) or an estimate that counts too few bytes for a mode."""
    opened = Image.open(files[mode])
    if mode != "progressive JPEG":
        assert opened.mode == mode
    estimate_mb = decode_bytes(opened) / 2**20
    small = _load_in_fresh_process(files["small"])
    large = _load_in_fresh_process(files[mode])
    growth = large["peak_mb"] - small["peak_mb"]
    assert large["mode"] == "RGB" and max(large["size"]) <= SIDE
    assert growth <= estimate_mb * 1.1 + MARGIN_MB, (mode, round(growth), round(estimate_mb))


@pytest.mark.parametrize("mode", ["1", "L", "P", "I;16", "RGB", "RGBA", "I", "F", "CMYK", "YCbCr"])
def test_at_the_pixel_limit_every_mode_fits_the_decode_bound(mode):
    """Catches a mode whose decode at the accepted pixel limit would exceed DECODE_BYTES."""
    side = int(max_pixels() ** 0.5)
    assert decode_bytes(_header_only(mode, side)) <= DECODE_BYTES


def _header_only(mode: str, side: int) -> Image.Image:
    """An unloaded image of ``mode`` claiming ``side`` x ``side`` (no pixels allocated)."""
    image = Image.Image()
    image._mode, image._size = mode, (side, side)
    return image


def test_a_progressive_jpeg_whose_coefficients_exceed_the_bound_is_refused_before_decoding(tmp_path):
    """Catches the coefficient buffer of a progressive JPEG (2 bytes a sample at full size,
    whatever the draft scale) being left out of the estimate."""
    path = corpus.jpeg_claiming(tmp_path / "claim.jpg", 13000, 13000, progressive=True)  # 169 MP, 4:4:4: ~1 GB of coefficients
    with pytest.raises(ValueError, match=r"13000 x 13000 \(progressive JPEG\): decoding it would take \d+ MB, more than the 768 MB"):
        load_image(path)
    baseline = corpus.jpeg_claiming(tmp_path / "baseline.jpg", 13000, 13000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        opened = Image.open(baseline)
        opened.draft(None, (13000 // 4, 13000 // 4))
    assert decode_bytes(opened) <= DECODE_BYTES  # the same size, baseline: decoded at 1/4 scale
