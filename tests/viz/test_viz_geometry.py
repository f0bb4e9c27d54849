"""The drawn patch grid is where the processor really put each patch: a bright marker on the
user's image must land in the patch whose box (PatchGrid) contains it, for LLaVA-1.5's
resize + center crop in both orientations and for LLaVA-NeXT's letterboxed tiles."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw


def _marked(size: tuple[int, int], at: tuple[float, float], side: int) -> tuple[Image.Image, tuple[float, float]]:
    image = Image.new("RGB", size, (0, 0, 0))
    x, y = at[0] * size[0], at[1] * size[1]
    ImageDraw.Draw(image).rectangle([x - side / 2, y - side / 2, x + side / 2, y + side / 2], fill=(255, 255, 255))
    return image, (x, y)


def _patch_brightness(view: torch.Tensor, patch: int) -> torch.Tensor:
    """[T]: mean value of each patch of a [C, H, W] view, row-major."""
    channels, height, width = view.shape
    patches = view.mean(0).view(height // patch, patch, width // patch, patch)
    return patches.mean(dim=(1, 3)).flatten()


def _assert_marker_inside(grid, index: int, centre: tuple[float, float], slack: float):
    x0, y0, x1, y1 = grid.patch_box(index)
    x, y = centre
    assert x0 - slack <= x <= x1 + slack and y0 - slack <= y <= y1 + slack, (grid.label, index, (x0, y0, x1, y1), centre)


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (900, 400)])
def test_llava_grid_matches_the_processors_resize_and_crop(tiny_vlm, size):
    image, centre = _marked(size, (0.6, 0.35), side=24)
    pixel_inputs = tiny_vlm.family.preprocess(image)
    (grid,) = tiny_vlm.family.grids(image, pixel_inputs)
    brightness = _patch_brightness(pixel_inputs["pixel_values"][0], 14)
    patch_side = (grid.box[2] - grid.box[0]) / grid.cols
    _assert_marker_inside(grid, int(brightness.argmax()), centre, slack=patch_side / 2)


@pytest.mark.parametrize("size, at", [((700, 300), (0.3, 0.75)), ((300, 700), (0.7, 0.2)), ((640, 480), (0.8, 0.6))])
def test_next_tile_grids_match_the_processors_letterbox(tiny_next_vlm, size, at):
    image, centre = _marked(size, at, side=20)
    family = tiny_next_vlm.family
    pixel_inputs = family.preprocess(image)
    grids = family.grids(image, pixel_inputs)
    views = pixel_inputs["pixel_values"][0][: len(grids)]
    brightness = torch.stack([_patch_brightness(view, 14) for view in views])
    tile = int(brightness[1:].max(dim=1).values.argmax()) + 1  # the tile holding the marker
    for view in (0, tile):
        patch_side = (grids[view].box[2] - grids[view].box[0]) / grids[view].cols
        _assert_marker_inside(grids[view], int(brightness[view].argmax()), centre, slack=patch_side / 2)
