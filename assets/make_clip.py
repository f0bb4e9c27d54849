"""Draw and encode the demo's example clip (released under CC0 1.0, see LICENSE.md).

    python assets/make_clip.py

``assets/clip.mp4``: 6 s at 12 fps, 320 x 240, H.264 (yuv420p, a keyframe every second),
about 100 KB. A street at noon, a ball bouncing and a car driving through; after a cut
at 3 s, the sea at dusk with a boat. The frames are drawn with PIL shapes and seeded
noise (no photograph or third-party artwork); the two scenes differ a lot in detail, so
the frames' information phi (and their PruneSID-Dyn budgets) differ too.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
WIDTH, HEIGHT, FPS, SECONDS = 320, 240, 12, 6
CUT = 3.0  # seconds


def _gradient(top, bottom, rng) -> Image.Image:
    t = np.linspace(0, 1, HEIGHT)[:, None, None]
    pixels = (1 - t) * np.array(top) + t * np.array(bottom)
    pixels = pixels * np.ones((1, WIDTH, 1)) + rng.normal(0, 2.0, (HEIGHT, WIDTH, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def street(t: float, rng) -> Image.Image:
    image = _gradient((110, 160, 230), (200, 225, 245), rng)
    draw = ImageDraw.Draw(image)
    draw.ellipse([240, 20, 280, 60], fill=(255, 210, 60))
    draw.rectangle([0, 190, WIDTH, HEIGHT], fill=(80, 80, 84))
    for x in range(0, WIDTH, 40):
        draw.rectangle([x + 12, 212, x + 30, 216], fill=(235, 235, 235))
    for x, wall, roof in [(15, (200, 90, 70), (120, 40, 40)), (115, (230, 200, 120), (110, 70, 40)), (215, (120, 160, 200), (60, 60, 90))]:
        draw.rectangle([x, 110, x + 80, 190], fill=wall)
        draw.polygon([(x - 6, 110), (x + 40, 72), (x + 86, 110)], fill=roof)
        draw.rectangle([x + 32, 155, x + 48, 190], fill=(70, 50, 40))
        for wx in (x + 8, x + 56):
            draw.rectangle([wx, 122, wx + 16, 140], fill=(250, 245, 200))
    # A ball bouncing in front of the houses, a car driving left to right.
    bounce = abs(math.sin(t * math.pi * 1.5))
    bx, by = 40 + 70 * t, 180 - 70 * bounce
    draw.ellipse([bx - 10, by - 10, bx + 10, by + 10], fill=(230, 40, 120))
    cx = -70 + 130 * t
    draw.rectangle([cx, 188, cx + 60, 208], fill=(30, 110, 60))
    draw.rectangle([cx + 12, 176, cx + 44, 190], fill=(40, 140, 80))
    draw.ellipse([cx + 6, 202, cx + 20, 216], fill=(20, 20, 20))
    draw.ellipse([cx + 40, 202, cx + 54, 216], fill=(20, 20, 20))
    return image


def sea(t: float, rng) -> Image.Image:
    image = _gradient((60, 50, 110), (240, 150, 110), rng)
    draw = ImageDraw.Draw(image)
    horizon = 150
    sun_y = 120 + 12 * t
    draw.ellipse([200, sun_y - 18, 236, sun_y + 18], fill=(255, 190, 90))
    draw.rectangle([0, horizon, WIDTH, HEIGHT], fill=(40, 60, 110))
    for row in range(horizon + 8, HEIGHT, 14):
        shift = int(20 * math.sin(t * 2 + row))
        for x in range(-40, WIDTH, 60):
            draw.line([(x + shift, row), (x + shift + 24, row)], fill=(90, 110, 160), width=2)
    bx = 30 + 40 * t
    draw.polygon([(bx, 158), (bx + 50, 158), (bx + 42, 170), (bx + 8, 170)], fill=(120, 70, 40))
    draw.line([(bx + 25, 158), (bx + 25, 118)], fill=(60, 40, 30), width=2)
    draw.polygon([(bx + 27, 120), (bx + 27, 154), (bx + 52, 154)], fill=(245, 240, 225))
    return image


def frames():
    rng = np.random.default_rng(0)
    for index in range(FPS * SECONDS):
        t = index / FPS
        yield street(t, rng) if t < CUT else sea(t - CUT, rng)


def main(path: Path = HERE / "clip.mp4") -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "30", "g": str(FPS), "threads": "1", "preset": "medium"}
        for image in frames():
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


if __name__ == "__main__":
    written = main()
    print(f"wrote {written} ({written.stat().st_size / 1024:.0f} KB)")
