"""Pins on the families' layouts and helpers: each test catches one bug a mutation run of the
layouts left uncaught (named in its docstring). Expected values come from geometry worked out
here, from transformers' own model code, or from a small explicit example, never from the code
under test."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from prunesid import load_vlm
from prunesid.family_kit.base import fed_per_view
from prunesid.methods import VisionZip

LANDSCAPE, PORTRAIT = (500, 300), (300, 500)  # (width, height)


# --- InternVL -------------------------------------------------------------------------------


def test_internvit_cls_attention_is_the_cls_row_transformers_computes():
    """Catches the CLS attention softmaxed over the query axis (dim -2, a single query: every
    weight 1) instead of over the keys: the row must equal transformers' own eager attention
    of token 0, summed over heads, for the layer whose output is the feature layer."""
    from prunesid.families.internvl.adapter import internvit_cls_attention

    vlm = load_vlm("tiny-random-internvl")
    tower = vlm.family.vision_tower
    before = tower.config._attn_implementation
    torch.manual_seed(0)
    pixels = torch.randn(1, 3, 448, 448, dtype=tower.dtype)
    try:
        tower.set_attn_implementation("eager")
        with torch.no_grad():
            out = tower(pixel_values=pixels, output_hidden_states=True, output_attentions=True, return_dict=True)
    finally:
        tower.set_attn_implementation(before)
    layer = len(out.attentions) - 1  # feature layer -1: the last layer's attention
    with torch.no_grad():
        importance, _ = internvit_cls_attention(tower.encoder.layer[layer], out.hidden_states[layer])
    heads = out.attentions[layer].shape[1]
    expected = out.attentions[layer][:, :, 0, :].float().sum(dim=1)
    assert importance.shape == expected.shape
    assert torch.allclose(importance.sum(dim=-1), torch.full((1,), float(heads)), atol=1e-4)  # a softmax per head
    assert torch.allclose(importance, expected, atol=1e-5)


def test_internvl_untiled_image_is_one_view_labelled_image_covering_it():
    """Catches the lone view of an untiled image losing its label ("image" -> None)."""
    layout = load_vlm("tiny-random-internvl").family.layout
    size = (layout.tile, layout.tile)  # a square tile-sized image: the 1 x 1 grid is the closest ratio
    grids = layout.grids(size)
    assert len(grids) == layout.num_views(size) == 1
    assert grids[0].label == "image"
    assert grids[0].box == (0.0, 0.0, float(size[0]), float(size[1]))


# --- LLaVA-NeXT -----------------------------------------------------------------------------


def _letterbox_tile_boxes(image_size, canvas, tile):
    """Tile boxes in image pixels for an image resized (aspect kept) into ``canvas`` (w, h)
    and padded evenly, then cut into ``tile`` px tiles: worked out from the geometry alone."""
    width, height = image_size
    canvas_w, canvas_h = canvas
    scale = min(canvas_w / width, canvas_h / height)
    pad_x, pad_y = (canvas_w - width * scale) / 2, (canvas_h - height * scale) / 2
    boxes = []
    for row in range(canvas_h // tile):
        for col in range(canvas_w // tile):
            x0, y0 = (col * tile - pad_x) / scale, (row * tile - pad_y) / scale
            boxes.append((x0, y0, x0 + tile / scale, y0 + tile / scale))
    return boxes


@pytest.mark.parametrize("image_size, canvas", [(LANDSCAPE, (672, 336)), (PORTRAIT, (336, 672))])
def test_next_grids_base_covers_the_image_and_tiles_letterbox_it(image_size, canvas):
    """Catches the base view's box not starting at (0, 0) and the width scale computed as
    best_w * width (the portrait image, width-limited, then gets the wrong letterbox): the base
    view is the whole image; 500 x 300 fits 672 x 336 at 1.12 (560 x 336, 56 px each side),
    300 x 500 fits 336 x 672 at 1.12 (336 x 560, 56 px above and below)."""
    layout = load_vlm("tiny-random-next").family.layout
    grids = layout.grids(image_size)
    width, height = image_size
    assert grids[0].label == "base" and grids[0].box == (0.0, 0.0, float(width), float(height))
    expected = _letterbox_tile_boxes(image_size, canvas, layout.tile_size)
    assert len(grids) == 1 + len(expected) == 3
    for grid, box in zip(grids[1:], expected):
        assert grid.box == pytest.approx(box)
    # The explicit numbers: 56 resized px of padding = 50 image px on each side.
    outer = (-50.0, 0.0, 250.0, 300.0) if image_size == LANDSCAPE else (0.0, -50.0, 300.0, 250.0)
    assert grids[1].box == pytest.approx(outer)


def test_next_arrange_feeds_every_views_merged_tokens():
    """Catches the merged tokens of the views after the first counted from the third view on
    (merged[2:]): with 2, 3 and 4 merged tokens on base + two tiles, 9 fed tokens are new
    (origin -1), and order and origin have one entry per fed token."""
    layout = load_vlm("tiny-random-next").family.layout
    valid = layout.valid_patches(LANDSCAPE)
    assert valid.shape[0] == 3  # base + two tiles
    kept = [row.nonzero().flatten()[:10] for row in valid]  # ten patches the unpadding keeps, per view
    merged = [2, 3, 4]
    plan = layout.arrange(kept, merged, False, False, LANDSCAPE, "image", compressed=True)
    assert int((plan.origin == -1).sum()) == sum(merged)
    assert plan.origin.numel() == plan.order.numel() == 3 * 10 + sum(merged)
    assert sorted(plan.order.tolist()) == list(range(3 * 10 + sum(merged)))  # every source fed once


def test_next_visionzip_run_feeds_reserved_kept_and_merged_per_view():
    """The same bug end to end: VisionZip (contextual tokens merged in every view) on
    LLaVA-NeXT feeds, per view, its kept plus its merged tokens, the merged ones as new tokens."""
    from PIL import Image

    vlm = load_vlm("tiny-random-next")
    press = VisionZip(budget=32)
    encoded = vlm.encode(Image.new("RGB", LANDSCAPE, (120, 30, 200)))
    compression = vlm.compress(encoded, press)[0]
    merged = [int(rows.shape[0]) for rows in compression.merged]
    kept = [int(index.numel()) for index in compression.indices]
    assert len(merged) == encoded.num_views == 3 and all(merged[1:])  # the tiles merge tokens too
    run = vlm.visual_run(encoded, compression)
    assert run.origin.numel() == run.embeds.shape[0] == sum(kept) + sum(merged) == vlm.fed_tokens(encoded.image_size, press)
    assert int((run.origin == -1).sum()) == sum(merged)


# --- LLaVA-OneVision ------------------------------------------------------------------------


def test_onevision_portrait_tiles_reach_above_and_below_the_image():
    """Catches the tile grids' row offset added instead of subtracted (row_span[0] + top): a
    300 x 500 image fits 384 x 768 (two tiles, one above the other) at 1.28 as 384 x 640, 64 px
    of padding above and below = 50 image px, so the first tile starts 50 px above the image
    and the second ends 50 px below it, within one patch row of rounding (the model unpads by
    whole patch rows); the two tiles abut and together cover the whole height."""
    layout = load_vlm("tiny-random-llava-onevision").family.layout
    width, height = PORTRAIT
    grids = layout.grids(PORTRAIT)
    assert [grid.label for grid in grids] == ["base", "tile 0,0", "tile 1,0"]
    assert grids[0].box == (0.0, 0.0, float(width), float(height))
    top, bottom = grids[1].box, grids[2].box
    patch_row = height / (640 / (layout.tile_size / layout.side))  # image px per patch row of the resized image
    assert top[1] == pytest.approx(-50.0, abs=patch_row)
    assert bottom[3] == pytest.approx(height + 50.0, abs=patch_row)
    assert top[3] == pytest.approx(bottom[1])
    assert top[1] < 0 < top[3] < height < bottom[3]
    assert top[0] == pytest.approx(0.0) and top[2] == pytest.approx(float(width))


def test_onevision_clip_has_no_image_tile_mask():
    """Catches a clip getting the image's valid patches (the modality test never matching
    "video"): a clip's frames are pooled whole, every token selectable."""
    layout = load_vlm("tiny-random-llava-onevision").family.layout
    valid = layout.valid_patches(LANDSCAPE, "video")
    if valid is not None:
        assert valid.shape == (layout.frames, layout.pooled ** 2) and bool(valid.all())
    image_valid = layout.valid_patches(LANDSCAPE, "image")
    assert image_valid is not None and image_valid.shape[1] == layout.side ** 2  # the image's own mask differs


# --- Qwen-VL --------------------------------------------------------------------------------


def test_qwen_pixel_limits_keep_the_processors_max_pixels():
    """Catches the processor's longest_edge ignored (the built-in default 28 x 28 x 1280 used
    instead): Qwen2-VL checkpoints ship max_pixels 12845056."""
    from prunesid.families.qwen_vl.adapter import _pixel_limits

    processor = SimpleNamespace(size={"shortest_edge": 3136, "longest_edge": 12845056})
    assert _pixel_limits(processor, None, None, 28) == {"shortest_edge": 3136, "longest_edge": 12845056}
    legacy = SimpleNamespace(size={}, min_pixels=4 * 784, max_pixels=256 * 784)  # older configs' keys
    assert _pixel_limits(legacy, None, None, 28) == {"shortest_edge": 4 * 784, "longest_edge": 256 * 784}


def test_qwen_token_views_group_zero_stays_group_zero():
    """Catches origins of the first group (view index 0) taken as new tokens (``<= 0``) and
    given the view of the token before: with 4 tokens per group, origins [5, 0, -1, 2] are
    groups [1, 0, 0, 0] (the -1 follows its predecessor)."""
    from prunesid.families.qwen_vl.adapter import _token_views

    assert _token_views(torch.tensor([5, 0, -1, 2]), 4).tolist() == [1, 0, 0, 0]
    assert _token_views(torch.tensor([-1, 1, 4, -1]), 4).tolist() == [0, 0, 1, 1]


# --- the kit --------------------------------------------------------------------------------


class _NeedsTwo(VisionZip):
    """VisionZip declaring two required inputs, to see both named (not registered)."""

    info = dataclasses.replace(VisionZip.info, requires=("cls_attention", "attention_keys"))


def test_fed_per_view_names_every_missing_input_joined_by_and():
    """Catches the missing inputs joined by anything but " and " in the refusal."""
    with pytest.raises(ValueError) as caught:
        fed_per_view(_NeedsTwo(budget=16), [576], cls_slot=True, preset="paper", cls_attention=False)
    assert str(caught.value) == (
        "_NeedsTwo cannot run on this model: it needs the CLS token's attention (vision towers "
        "with a CLS token, e.g. CLIP) and the feature layer's attention keys"
    )
