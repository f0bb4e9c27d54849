"""Any press's result drawn on the image: kept patches, merged tokens' coverage, dropped ones."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from prunesid import DivPrune, VisionTokens, VisionZip
from prunesid.geometry import center_crop_grid
from viz.merged import compare_compressions, merged_palette, render_compression

# A 640 x 480 image as LLaVA-1.5 sees it: shortest edge to 336, center crop 336.
GRID = center_crop_grid(image_size=(640, 480), resized=(448, 336), crop=(336, 336), patch=14)
GREY = 128.0


def _centre(index: int) -> tuple[int, int]:
    x0, y0, x1, y1 = GRID.patch_box(index)
    return int((x0 + x1) / 2), int((y0 + y1) / 2)


def _tokens():
    generator = torch.Generator().manual_seed(4)
    features = torch.randn(1, 576, 16, generator=generator)
    return VisionTokens(features=features, importance=torch.rand(1, 576, generator=generator), cls_slot=True)


def test_merged_coverage_is_drawn_in_each_tokens_colour():
    result = VisionZip(budget=64).compress(_tokens())
    image = Image.new("RGB", (640, 480), (128, 128, 128))
    drawn = np.asarray(render_compression(image, result, [GRID]), dtype=np.float32)
    colours = merged_palette(result)
    merged_from = result.merged_from[0]
    for j in range(result.merged[0].shape[0]):
        members = (merged_from == j).nonzero().flatten().tolist()
        for index in members[:3]:
            x, y = _centre(index)
            np.testing.assert_allclose(drawn[y, x], 0.45 * GREY + 0.55 * colours[j], atol=1.5)
    # Two merged tokens, two colours; a kept patch keeps its brightness.
    assert not np.allclose(colours[0], colours[1])
    x, y = _centre(int(result.indices[0][0]))
    np.testing.assert_allclose(drawn[y, x], GREY, atol=1)
    # The anchor of a merged token is outlined in white: its patch border.
    anchor = int(result.targets[0].nonzero()[0])
    x0, y0, x1, y1 = GRID.patch_box(anchor)
    border = drawn[int(y0) + 1:int(y1) - 1, int(x0)]
    assert (border == 255).all(axis=-1).any()


def test_dropped_patches_are_dimmed_and_a_pure_pruner_has_no_tint():
    result = DivPrune(budget=64).compress(_tokens())
    assert result.merged is None
    image = Image.new("RGB", (640, 480), (128, 128, 128))
    drawn = np.asarray(render_compression(image, result, [GRID]), dtype=np.float32)
    kept = set(result.indices[0].tolist())
    dropped = next(i for i in range(576) if i not in kept)
    x, y = _centre(dropped)
    np.testing.assert_allclose(drawn[y, x], 0.22 * GREY, atol=1)
    x, y = _centre(next(iter(kept)))
    np.testing.assert_allclose(drawn[y, x], GREY, atol=1)


def test_methods_side_by_side_with_their_counts():
    tokens = _tokens()
    results = {"VisionZip": VisionZip(budget=64).compress(tokens), "DivPrune": DivPrune(budget=64).compress(tokens)}
    image = Image.new("RGB", (640, 480), (128, 128, 128))
    sheet = compare_compressions(image, results, [GRID])
    assert sheet.width > 2 * 640 and sheet.height > 480
    from viz.merged import caption

    assert caption("VisionZip", results["VisionZip"]) == "VisionZip: 53 kept + 10 merged + CLS"
    assert caption("DivPrune", results["DivPrune"]) == "DivPrune: 64 kept"


def test_llava_next_views_and_padding(tiny_next_vlm):
    from tests.conftest import scene

    image = scene(640, 480)
    encoded = tiny_next_vlm.encode(image)
    result = tiny_next_vlm.compress(encoded, VisionZip(budget=32))[0]
    sheet = render_compression(encoded.image, result, encoded.grids)
    plain = np.asarray(render_compression(encoded.image, tiny_next_vlm.compress(encoded, DivPrune(budget=32))[0], encoded.grids))
    assert sheet.size == Image.fromarray(plain).size  # same layout: base view and tile mosaic
    assert not np.array_equal(np.asarray(sheet), plain)
    # Letterbox padding took no part: drawn grey, neither dimmed as dropped nor tinted.
    from viz.canvas import PADDING_GREY
    from viz.overlay import CAPTION_HEIGHT, GAP, canvases

    (_, base), (_, tiles) = canvases(encoded.image, encoded.grids)
    padded = (~encoded.valid).nonzero()
    view, patch = (int(v) for v in padded[len(padded) // 2])
    ys, xs = np.nonzero((tiles.view == view) & (tiles.patch == patch) & ~tiles.edges)
    y, x = ys[len(ys) // 2] + CAPTION_HEIGHT, xs[len(xs) // 2] + base.pixels.shape[1] + GAP
    drawn = np.asarray(sheet, dtype=np.float32)
    np.testing.assert_allclose(drawn[y, x], PADDING_GREY, atol=1)
