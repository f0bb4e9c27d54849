"""The pictures say exactly what the selection decided: one palette for every drawing of a
selection, padding never shown as suppressed, survivor bars the height of the survivors."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

import viz
from prunesid import PatchGrid, select
from viz.canvas import PADDING_GREY
from viz.overlay import CAPTION_HEIGHT, GAP, canvases
from viz.palette import selection_palette
from viz.quotas import HEIGHT, MARGIN_BOTTOM, MARGIN_LEFT, MARGIN_TOP, WIDTH
from tests.selection.test_selection_contract import clustered_tokens

SQUARE = PatchGrid(24, 24, (0.0, 0.0, 336.0, 336.0), "base")


def _patch_centre(grid: PatchGrid, index: int) -> tuple[int, int]:
    x0, y0, x1, y1 = grid.patch_box(index)
    return int((x0 + x1) / 2), int((y0 + y1) / 2)


def test_group_colours_agree_between_overlay_and_chart_when_k_straddles_twenty():
    # View 0 has K = 16 (tab20 range), view 1 has K = 24 (beyond): one palette for both.
    selection = select(clustered_tokens(0, 2, 576, 32, concepts=30), [64, 96])
    assert selection.num_groups.tolist() == [16, 24]
    palette = selection_palette(selection)
    grey = Image.new("RGB", (336, 336), (128, 128, 128))
    drawn = np.asarray(viz.render_groups(grey, selection, [SQUARE, PatchGrid(24, 24, SQUARE.box, "tile")]), dtype=np.float32)
    chart = np.asarray(viz.render_quotas(selection, view=0), dtype=np.int64)
    slot = (WIDTH - MARGIN_LEFT - 8) / 16
    groups = selection.groups[0]
    for g in range(16):
        members = (groups == g).nonzero().flatten()
        if members.numel() == 0 or int(selection.quotas[0, g]) == 0:
            continue
        x, y = _patch_centre(SQUARE, int(members[0]))
        # base panel sits under the caption band; tinted 0.45 grey + 0.55 group colour
        np.testing.assert_allclose(drawn[CAPTION_HEIGHT + y, x], 0.45 * 128 + 0.55 * palette[g], atol=1.0)
        bar_x = int(MARGIN_LEFT + (g + 0.5) * slot)
        np.testing.assert_array_equal(chart[HEIGHT - MARGIN_BOTTOM - 2, bar_x], palette[g].astype(np.int64))


def test_survivor_bars_are_as_high_as_the_survivors():
    tokens = clustered_tokens(4, 1, 576, 16, concepts=8, noise=1.0)
    selection = select(tokens, 32, lam=12.0)  # sizes > survivors > kept in every group
    k = int(selection.num_groups[0])
    groups = selection.groups[0]
    sizes = torch.bincount(groups, minlength=k)
    survivors = torch.bincount(groups[selection.survivors[0]], minlength=k)
    kept = selection.quotas[0, :k]
    chart = np.asarray(viz.render_quotas(selection), dtype=np.int64)
    palette = selection_palette(selection)
    plot_h = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    top = int(sizes.max())
    y = lambda value: MARGIN_TOP + plot_h * (1 - value / top)
    slot = (WIDTH - MARGIN_LEFT - 8) / k
    checked = 0
    for g in range(k):
        if y(kept[g]) - y(survivors[g]) < 6 or y(survivors[g]) - y(sizes[g]) < 6:
            continue  # the bands are too thin to sample
        x = int(MARGIN_LEFT + (g + 0.5) * slot)
        mid = [int(255 - (255 - c) * 0.55) for c in palette[g]]
        pale = [int(255 - (255 - c) * 0.25) for c in palette[g]]
        np.testing.assert_array_equal(chart[int((y(kept[g]) + y(survivors[g])) / 2), x], mid)
        np.testing.assert_array_equal(chart[int((y(survivors[g]) + y(sizes[g])) / 2), x], pale)
        checked += 1
    assert checked >= 2


def test_padding_that_took_no_part_is_not_drawn_as_suppressed(tiny_next_vlm):
    from tests.conftest import scene

    image = scene(700, 300, seed=5)
    encoded = tiny_next_vlm.encode(image)
    selection = tiny_next_vlm.compress(encoded, __import__("prunesid").PruneSID(budget=32, lam=0.3))[0]
    assert (~encoded.valid).any() and not selection.survivors[encoded.valid].all()
    drawn = np.asarray(viz.render_survivors(encoded.image, selection, encoded.grids), dtype=np.float32)
    panels = canvases(encoded.image, encoded.grids)
    tiles = panels[1][1]
    left = panels[0][1].pixels.shape[1] + GAP
    padded = (tiles.view >= 1) & ~tiles.on_image & ~tiles.edges
    view, patch = tiles.view[padded], tiles.patch[padded]
    assert not encoded.valid[view, patch].any()  # what the canvas calls padding took no part
    rows, cols = np.nonzero(padded)
    np.testing.assert_allclose(drawn[CAPTION_HEIGHT + rows, left + cols], np.broadcast_to(PADDING_GREY, (rows.size, 3)), atol=0.5)


def test_one_survivor_is_worded_in_the_singular():
    from viz.explain import Explanation

    one = Explanation(view=0, view_label="the image", patch=3, row=0, col=3, status="kept", group=0, num_groups=1,
                      group_size=1, importance=0.5, importance_rank=1, survivor_rank=1, group_survivors=1, group_quota=1)
    text = one.markdown()
    assert "(1 patch)" in text and "of the group's 1 NMS survivor;" in text and "the group keeps 1 patch: its one survivor" in text
    assert "survivors" not in text


def test_quota_words_never_count_more_kept_than_survivors():
    """The explanation's quota sentence: "4 of 2 survivors kept" (the quota read as a count of
    survivors) and "its 1 survivors" were shown before; each case now names what the quota takes."""
    from viz.explain import _quota_words

    assert _quota_words(1, 3) == "the first of its 3 survivors in NMS order"
    assert _quota_words(2, 3) == "the first 2 of its 3 survivors in NMS order"
    assert _quota_words(3, 3) == "all 3 of its survivors"
    assert _quota_words(1, 1) == "its one survivor"
    assert _quota_words(4, 2) == "all 2 of its survivors, then the 2 most important suppressed patches"
    assert _quota_words(2, 1) == "its one survivor, then the most important suppressed patch"
