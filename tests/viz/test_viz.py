"""Overlays put each mark on the right patch of the user's image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import viz
from prunesid import select
from prunesid.geometry import PatchGrid, center_crop_grid
from viz.canvas import PADDING_GREY, build_canvas, drawing_scale
from viz.overlay import CAPTION_HEIGHT

# A 640 x 480 photo as LLaVA-1.5 sees it: shortest edge to 336 (448 x 336), center crop 336.
CROP_GRID = center_crop_grid(image_size=(640, 480), resized=(448, 336), crop=(336, 336), patch=14)


def _photo(width=640, height=480) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(60, 200, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def selection():
    return select(torch.randn(1, 576, 32, generator=torch.Generator().manual_seed(0)), 64)


def _centre(grid: PatchGrid, index: int, scale: float) -> tuple[int, int]:
    x0, y0, x1, y1 = grid.patch_box(index)
    return int((x0 + x1) / 2 * scale), int((y0 + y1) / 2 * scale)


def test_crop_grid_covers_the_central_square():
    assert CROP_GRID.box == pytest.approx((80.0, 0.0, 560.0, 480.0))
    assert (CROP_GRID.rows, CROP_GRID.cols) == (24, 24)


def test_kept_patches_stay_bright_and_dropped_ones_are_dimmed(selection):
    image = _photo()
    drawn = np.asarray(viz.render_kept(image, selection, [CROP_GRID]), dtype=np.float32)
    original = np.asarray(image, dtype=np.float32)
    assert drawn.shape == original.shape
    kept = set(selection.indices[0].tolist())
    dropped = next(i for i in range(576) if i not in kept)
    for index in list(kept)[:10]:
        x, y = _centre(CROP_GRID, index, 1.0)
        np.testing.assert_allclose(drawn[y, x], original[y, x], atol=1)
    x, y = _centre(CROP_GRID, dropped, 1.0)
    assert drawn[y, x].sum() < 0.3 * original[y, x].sum()


def test_the_cropped_margin_is_marked(selection):
    image = _photo()
    drawn = np.asarray(viz.render_groups(image, selection, [CROP_GRID]), dtype=np.float32)
    original = np.asarray(image, dtype=np.float32)
    margin = np.abs(drawn[:, :70] - original[:, :70]).mean()  # left of x = 80: never seen by the model
    assert margin > 30


def test_groups_get_their_own_colours(selection):
    image = Image.new("RGB", (640, 480), (128, 128, 128))
    drawn = np.asarray(viz.render_groups(image, selection, [CROP_GRID]), dtype=np.int64)
    groups = selection.groups[0]
    first, other = 0, int((groups != groups[0]).nonzero()[0])
    colour = lambda index: tuple(drawn[_centre(CROP_GRID, index, 1.0)[::-1]])
    assert colour(first) != colour(other)
    same = int((groups == groups[0]).nonzero()[-1])
    assert colour(first) == colour(same)


def test_survivors_are_outlined_and_suppressed_patches_tinted():
    tokens = torch.randn(1, 576, 16, generator=torch.Generator().manual_seed(1))
    tokens[0, :300] = tokens[0, :1] + 0.01 * tokens[0, :300]  # many near-duplicates: NMS must suppress
    heavy = select(tokens, 64, lam=0.5)
    assert not heavy.survivors.all()
    image = Image.new("RGB", (640, 480), (128, 128, 128))
    drawn = np.asarray(viz.render_survivors(image, heavy, [CROP_GRID]), dtype=np.int64)
    suppressed = int((~heavy.survivors[0]).nonzero()[0])
    x, y = _centre(CROP_GRID, suppressed, 1.0)
    assert drawn[y, x, 0] > drawn[y, x, 1] and drawn[y, x].sum() < 3 * 128


def test_large_and_tiny_images_render_at_a_bounded_size(selection):
    large = viz.render_kept(Image.new("RGB", (4000, 3000)), selection, [center_crop_grid((4000, 3000), (448, 336), (336, 336), 14)])
    assert max(large.size) == 768
    tiny = viz.render_kept(Image.new("RGB", (20, 20)), selection, [center_crop_grid((20, 20), (336, 336), (336, 336), 14)])
    assert min(tiny.size) >= 240
    assert drawing_scale((20, 20)) == 12.0


def test_next_tiles_are_drawn_beside_the_base_view():
    views = select(torch.randn(5, 576, 16, generator=torch.Generator().manual_seed(2)), 32)
    grids = [PatchGrid(24, 24, (0, 0, 640, 480), "base")] + [
        PatchGrid(24, 24, (c * 320.0, r * 320.0 - 80, (c + 1) * 320.0, (r + 1) * 320.0 - 80), f"tile {r},{c}")
        for r in range(2) for c in range(2)
    ]
    drawn = viz.render_kept(_photo(), views, grids)
    # base panel (640 wide) + gap + tile mosaic (640 wide, padded to 640 high) + a caption band.
    assert drawn.size == (640 + 8 + 640, 640 + CAPTION_HEIGHT)
    # The tiles' letterbox padding (80 px above the image) is canvas, drawn grey, not image.
    canvas = build_canvas(_photo(), grids, [1, 2, 3, 4])
    assert canvas.pixels.shape[:2] == (640, 640)
    assert not canvas.on_image[:80].any() and canvas.on_image[80:560].all() and not canvas.on_image[560:].any()
    np.testing.assert_array_equal(canvas.pixels[10, 10], PADDING_GREY)
    assert (canvas.view[:80] >= 1).all()  # the padded rows still belong to tile patches


def test_compare_puts_one_panel_per_grouping(selection):
    image = _photo()
    one = viz.compare(image, {"psca": selection}, [CROP_GRID])
    three = viz.compare(image, {"psca": selection, "kmeans": selection, "random": selection}, [CROP_GRID])
    assert three.width == 3 * one.width + 2 * 8


def test_stats_report_the_selection(selection):
    stats = viz.selection_stats(selection, {"select_ms": 12.5}, visual_tokens=65, unmodified_tokens=576)
    (view,) = stats["views"]
    assert view["kept"] == 64 and stats["kept"] == 64 and stats["compression"] == round(576 / 65, 2)
    assert "compression" not in viz.selection_stats(selection)  # no guess without the model's counts
    assert view["rho"] == pytest.approx(float(selection.rho[0])) and view["tau"] == pytest.approx(float(selection.tau[0]))
    assert sum(view["kept_per_group"]) == 64 and stats["timings_ms"] == {"select_ms": 12.5}


def test_grids_must_match_the_selection(selection):
    with pytest.raises(ValueError, match="got 2 patch grids for a selection of 1 views"):
        viz.render_kept(_photo(), selection, [CROP_GRID, CROP_GRID])
    with pytest.raises(ValueError, match="has 10 x 10 = 100 patches but the selection has 576"):
        viz.render_kept(_photo(), selection, [PatchGrid(10, 10, (0, 0, 640, 480))])
    with pytest.raises(ValueError, match="layer must be one of"):
        viz.compare(_photo(), {"psca": selection}, [CROP_GRID], layer="heat")


def test_quota_chart_draws_one_bar_per_group_in_its_colour(selection):
    from viz.palette import selection_palette

    chart = np.asarray(viz.render_quotas(selection), dtype=np.int64)
    k = int(selection.num_groups[0])
    colours = selection_palette(selection).astype(np.int64)
    # The kept part of each bar (its base) is painted in the group's overlay colour.
    from viz.quotas import HEIGHT, MARGIN_BOTTOM, MARGIN_LEFT, WIDTH

    slot = (WIDTH - MARGIN_LEFT - 8) / k
    base_row = HEIGHT - MARGIN_BOTTOM - 2
    for g in range(k):
        if int(selection.quotas[0, g]) == 0:
            continue
        x = int(MARGIN_LEFT + (g + 0.5) * slot)
        np.testing.assert_array_equal(chart[base_row, x], colours[g])
    with pytest.raises(ValueError, match="view must be in"):
        viz.render_quotas(selection, view=3)
