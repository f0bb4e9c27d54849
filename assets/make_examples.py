"""Draw the demo's example images (deterministic; released under CC0 1.0, see LICENSE.md).

    python assets/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent


def _sky(width: int, height: int, top, bottom, rng) -> Image.Image:
    t = np.linspace(0, 1, height)[:, None, None]
    pixels = (1 - t) * np.array(top) + t * np.array(bottom)
    pixels = pixels * np.ones((1, width, 1)) + rng.normal(0, 2.5, (height, width, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def street(rng) -> Image.Image:
    """Houses under a sky with a sun: large flat regions plus a few salient objects."""
    image = _sky(640, 480, (110, 160, 230), (200, 225, 245), rng)
    draw = ImageDraw.Draw(image)
    draw.ellipse([480, 40, 560, 120], fill=(255, 210, 60))
    draw.rectangle([0, 380, 640, 480], fill=(80, 80, 84))
    for i in range(0, 640, 80):
        draw.rectangle([i + 30, 425, i + 60, 432], fill=(235, 235, 235))
    for x, colour, roof in [(30, (200, 90, 70), (120, 40, 40)), (190, (230, 200, 120), (110, 70, 40)), (360, (120, 160, 200), (60, 60, 90))]:
        draw.rectangle([x, 220, x + 140, 380], fill=colour)
        draw.polygon([(x - 10, 220), (x + 70, 150), (x + 150, 220)], fill=roof)
        draw.rectangle([x + 55, 310, x + 85, 380], fill=(70, 50, 40))
        for wx in (x + 15, x + 95):
            draw.rectangle([wx, 245, wx + 30, 280], fill=(250, 245, 200))
    draw.rectangle([520, 330, 620, 370], fill=(30, 110, 60))
    draw.ellipse([530, 360, 555, 385], fill=(20, 20, 20))
    draw.ellipse([585, 360, 610, 385], fill=(20, 20, 20))
    return image


def chart(rng) -> Image.Image:
    """A document-like page: title bars, text lines and a bar chart (portrait)."""
    image = Image.new("RGB", (480, 640), (250, 250, 246))
    draw = ImageDraw.Draw(image)
    draw.rectangle([30, 30, 450, 70], fill=(40, 60, 110))
    draw.text((42, 42), "Quarterly tokens kept", fill=(255, 255, 255))
    for row in range(8):
        length = int(rng.integers(250, 420))
        draw.rectangle([30, 95 + row * 18, 30 + length, 103 + row * 18], fill=(120, 120, 120))
    base, colours = 590, [(220, 80, 60), (60, 140, 200), (90, 180, 90), (240, 170, 40), (150, 90, 190)]
    draw.line([60, 260, 60, base], fill=(0, 0, 0), width=2)
    draw.line([60, base, 440, base], fill=(0, 0, 0), width=2)
    for i, colour in enumerate(colours):
        height = int(rng.integers(80, 300))
        draw.rectangle([85 + i * 70, base - height, 130 + i * 70, base], fill=colour)
        draw.text((95 + i * 70, base + 8), f"Q{i + 1}", fill=(0, 0, 0))
    return image


def fruit(rng) -> Image.Image:
    """A bowl of coloured fruit on a table: many small similar objects (square)."""
    image = Image.new("RGB", (512, 512), (150, 105, 70))
    draw = ImageDraw.Draw(image)
    for y in range(0, 512, 24):
        draw.line([0, y + int(rng.integers(0, 6)), 512, y], fill=(135, 95, 62), width=3)
    draw.ellipse([70, 250, 440, 470], fill=(235, 235, 240))
    draw.ellipse([90, 260, 420, 440], fill=(215, 215, 225))
    palette = [(220, 40, 40), (250, 200, 40), (120, 190, 50), (250, 130, 30), (120, 40, 120)]
    for _ in range(14):
        x, y = int(rng.integers(120, 360)), int(rng.integers(210, 360))
        r = int(rng.integers(28, 46))
        colour = palette[int(rng.integers(0, len(palette)))]
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour, outline=(40, 30, 20))
        draw.ellipse([x - r // 3, y - r // 2, x - r // 6, y - r // 3], fill=(255, 255, 255))
    return image.filter(ImageFilter.SMOOTH)


def landscape(rng) -> Image.Image:
    """Mountains, a lake and a sky (wide): mostly redundant texture."""
    image = _sky(800, 450, (250, 170, 110), (130, 160, 220), rng)
    draw = ImageDraw.Draw(image)
    for layer, colour in enumerate([(110, 110, 140), (80, 90, 110), (50, 70, 70)]):
        points = [(0, 450)]
        for x in range(0, 801, 40):
            points.append((x, 180 + layer * 50 + int(rng.integers(-50, 50))))
        points.append((800, 450))
        draw.polygon(points, fill=colour)
    draw.rectangle([0, 340, 800, 450], fill=(70, 120, 170))
    for _ in range(40):
        x, y = int(rng.integers(0, 780)), int(rng.integers(345, 445))
        draw.line([x, y, x + int(rng.integers(10, 40)), y], fill=(150, 190, 220), width=1)
    return image


EXAMPLES = {"street.png": street, "chart.png": chart, "fruit.png": fruit, "landscape.png": landscape}


def main() -> None:
    for index, (name, draw) in enumerate(EXAMPLES.items()):
        draw(np.random.default_rng(index)).save(HERE / name, optimize=True)
        print(HERE / name)


if __name__ == "__main__":
    main()
