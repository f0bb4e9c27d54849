"""Shared fixtures: the offline tiny models are built once per test session."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw


@pytest.fixture(scope="session")
def tiny_vlm():
    from prunesid import load_vlm

    return load_vlm("tiny-random")


@pytest.fixture(scope="session")
def tiny_next_vlm():
    from prunesid import load_vlm

    return load_vlm("tiny-random-next")


def scene(width: int = 640, height: int = 480, seed: int = 0) -> Image.Image:
    """A structured test picture: gradient sky, coloured boxes and a little noise."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    pixels = np.concatenate([80 + 120 * y, 120 + 80 * y, 200 - 60 * y], axis=2) * np.ones((1, width, 1))
    pixels += rng.normal(0, 6, pixels.shape)
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.rectangle([x0, y0, x0 + int(rng.integers(20, 160)), y0 + int(rng.integers(20, 120))], fill=colour)
    return image


@pytest.fixture
def picture() -> Image.Image:
    return scene()
