"""'Why was this patch dropped?' (viz/explain.py and the demo's explain handler): every patch
of a selection gets the reason the selection itself implies, on LLaVA-1.5 and LLaVA-NeXT
views, and a pixel of an overlay maps back to the patch drawn there."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import viz
from demo.controls import Controls
from demo.handlers import Handlers
from prunesid import PruneSID
from tests.conftest import scene
from tests.demo.test_demo_handlers import uploaded
from viz.explain import explain_patch, locate, overlay_size
from viz.overlay import CAPTION_HEIGHT, canvases


def _encoded(vlm, seed=12):
    buffer = io.BytesIO()
    scene(640, 480, seed=seed).save(buffer, "PNG")
    return vlm.encode(buffer.getvalue())


@pytest.mark.parametrize("lam", [1.25, 0.5, None])
def test_every_patch_gets_the_reason_the_selection_implies(tiny_vlm, lam):
    encoded = _encoded(tiny_vlm)
    selection = tiny_vlm.compress(encoded, PruneSID(budget=64, lam=lam))[0]
    groups, scores, survivors = selection.groups[0].numpy(), selection.scores[0].numpy(), selection.survivors[0].numpy()
    ranks, kept, tau = selection.survivor_rank[0].numpy(), selection.kept[0].numpy(), float(selection.tau[0])
    normed = F.normalize(encoded.features[0].float(), dim=-1)
    similarity = (normed @ normed.T).numpy()
    seen = set()
    for patch in range(selection.tokens_per_view):
        why = explain_patch(selection, encoded.features, 0, patch, encoded.grids)
        seen.add(why.status)
        group = int(groups[patch])
        assert why.group == group and why.row * 24 + why.col == patch
        assert why.group_quota == int(selection.quotas[0, group])
        assert why.group_survivors == int((survivors & (groups == group)).sum())
        if bool(kept[patch]):
            assert why.status == "kept"
            if bool(survivors[patch]):
                assert why.survivor_rank == int(ranks[patch]) + 1
            else:  # a suppressed patch topping up a group whose quota exceeds its survivors
                assert why.survivor_rank is None and why.group_quota > why.group_survivors and "suppressed it" in why.markdown()
        elif bool(survivors[patch]):
            assert why.status == "quota_full" and int(ranks[patch]) >= why.group_quota
        else:
            assert why.status == "suppressed"
            suppressor = why.suppressor
            assert int(groups[suppressor]) == group and bool(survivors[suppressor])
            assert float(scores[suppressor]) >= float(scores[patch])
            assert why.similarity == pytest.approx(float(similarity[suppressor, patch]), abs=1e-5)
            assert why.similarity > tau - 1e-5
            # The first survivor taken that is close enough, not merely any close one.
            earlier = ((groups == group) & survivors & (ranks < ranks[suppressor])).nonzero()[0]
            assert all(similarity[i, patch] <= tau or scores[i] < scores[patch] for i in earlier)
    if lam == 1.25:
        assert {"kept", "suppressed", "quota_full"} <= seen


def test_the_importance_rank_is_within_the_group(tiny_vlm):
    encoded = _encoded(tiny_vlm)
    selection = tiny_vlm.compress(encoded, PruneSID(budget=64))[0]
    groups, scores = selection.groups[0], selection.scores[0]
    for group in range(3):
        members = (groups == group).nonzero().flatten().tolist()
        by_importance = sorted(members, key=lambda i: (-float(scores[i]), i))
        ranks = [explain_patch(selection, encoded.features, 0, i).importance_rank for i in by_importance]
        assert ranks == list(range(1, len(members) + 1))


def test_next_views_explain_padding_and_tiles(tiny_next_vlm):
    buffer = io.BytesIO()
    scene(900, 400, seed=4).save(buffer, "PNG")  # wide: the tiles carry letterbox padding
    encoded = tiny_next_vlm.encode(buffer.getvalue())
    selection = tiny_next_vlm.compress(encoded, PruneSID(budget=32, lam=0.5))[0]
    padded = (selection.groups < 0).nonzero()
    assert len(padded), "this image should leave padding in some tile"
    view, patch = (int(v) for v in padded[0])
    why = explain_patch(selection, encoded.features, view, patch, encoded.grids)
    assert why.status == "excluded" and "took no part" in why.markdown() and "tile" in why.view_label
    for view in range(selection.num_views):
        patch = int(selection.indices[view][0])
        assert explain_patch(selection, encoded.features, view, patch, encoded.grids).status == "kept"
    dropped = ((selection.groups[2] >= 0) & ~selection.kept[2]).nonzero().flatten()
    why = explain_patch(selection, encoded.features, 2, int(dropped[0]), encoded.grids)
    assert why.status in ("suppressed", "quota_full", "zero_importance") and why.view == 2


@pytest.mark.parametrize("model", ["tiny-random", "tiny-random-next"])
def test_a_pixel_of_the_overlay_maps_back_to_its_patch(request, model):
    vlm = request.getfixturevalue("tiny_vlm" if model == "tiny-random" else "tiny_next_vlm")
    encoded = _encoded(vlm, seed=3)
    selection = vlm.compress(encoded, PruneSID(budget=32))[0]
    drawn = viz.render_all(encoded.image, selection, encoded.grids)["kept"]
    assert overlay_size(encoded.image, encoded.grids) == drawn.size  # the layout locate() reads
    panels = canvases(encoded.image, encoded.grids)
    rng = np.random.default_rng(0)
    checked = 0
    for view in range(len(encoded.grids)):
        for patch in rng.choice(selection.tokens_per_view, 4, replace=False):
            # Where the patch is drawn, found independently: its box on the image, scaled.
            x, y = _centre_on_sheet(panels, view, int(patch))
            if x is None:
                continue
            where = locate(encoded.image, encoded.grids, x, y)
            assert (where.view, where.patch) == (view, int(patch))
            checked += 1
    assert checked >= 4
    assert locate(encoded.image, encoded.grids, drawn.width + 5, 5).where == "outside"


def _centre_on_sheet(panels, view, patch):
    left = 0
    top = 0 if len(panels) == 1 and not panels[0][0] else CAPTION_HEIGHT
    for _, canvas in panels:
        ys, xs = np.nonzero((canvas.view == view) & (canvas.patch == patch))
        if len(xs):
            return left + int(np.median(xs)), top + int(np.median(ys))
        left += canvas.view.shape[1] + 8
    return None, None


def test_the_handler_explains_a_click_and_says_when_it_is_off_the_patches(tiny_vlm):
    path = uploaded(scene(900, 400, seed=2), "wide.png")  # center crop: the sides are cut away
    handlers = Handlers(tiny_vlm)
    encoded = handlers.encode(path)
    selection = tiny_vlm.compress(encoded, PruneSID(budget=64))[0]
    (_, canvas), = canvases(encoded.image, encoded.grids)
    patch = int(selection.indices[0][3])
    ys, xs = np.nonzero((canvas.view == 0) & (canvas.patch == patch))
    text, numbers = handlers.explain(path, Controls.read(64, 0, 0, "psca", False), int(np.median(xs)), int(np.median(ys)))
    assert numbers["patch"] == patch and numbers["status"] == "kept" and f"**Patch {patch}**" in text
    text, numbers = handlers.explain(path, Controls.read(64, 0, 0, "psca", False), 2, canvas.view.shape[0] // 2)
    assert numbers["where"] == "cropped" and "center crop" in text
    assert handlers.explain(None, Controls.read(64, 0, 0, "psca", False), 1, 1) == ("", None)
    with pytest.raises(ValueError, match="x must be a finite number"):
        handlers.explain(path, Controls.read(64, 0, 0, "psca", False), float("nan"), 1)


def test_bad_arguments_are_named():
    selection_like = type("S", (), {"num_views": 1, "tokens_per_view": 4})()
    with pytest.raises(ValueError, match="view must be in"):
        explain_patch(selection_like, torch.zeros(1, 4, 2), 3, 0)
    with pytest.raises(ValueError, match="patch must be in"):
        explain_patch(selection_like, torch.zeros(1, 4, 2), 0, 9)
