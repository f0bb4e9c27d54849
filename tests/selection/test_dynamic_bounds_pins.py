"""The dynamic budget where the clamp decides everything: every view at its floor, and a view
without information beside views at their cap. Written against the mutants mutmut left alive
in prunesid/selection/dynamic.py (docs/testing.md); each test was run with them and fails.
"""

from __future__ import annotations

import pytest
import torch

from prunesid import select
from prunesid.selection.dynamic import dynamic_budgets


def _views(kinds, tokens=16, dim=32, seed=0):
    """``"same"``: one direction repeated (phi exactly 0); ``"noise"``: Gaussian tokens."""
    generator = torch.Generator().manual_seed(seed)
    views = []
    for kind in kinds:
        if kind == "same":
            view = torch.zeros(tokens, dim)
            view[:, 0] = 1.0
        else:
            view = torch.randn(tokens, dim, generator=generator)
        views.append(view)
    return torch.stack(views)


def test_when_the_floor_is_the_budget_every_view_keeps_exactly_it():
    """N = 1 (floor ceil(N / 2) = 1 = N) and N = 2 with the CLS reserved (floor 2): the total
    views x N is only reachable with every view at its floor. Catches the all-at-a-bound
    branch sending views to their cap instead (``scale`` not 0, ``<`` for ``<=``), and the
    clamp flags not being bool."""
    x = _views(["same", "noise", "noise"])
    for budget, reserved in ((1, 0), (2, 1)):
        selection = select(x, budget, reserved=reserved, dynamic=True)
        assert selection.budget.tolist() == [budget] * 3
        assert [index.numel() for index in selection.indices] == [budget - reserved] * 3
        assert selection.budget_clamped.dtype == torch.bool and selection.budget_clamped.tolist() == [True] * 3


def test_a_view_without_information_stays_at_its_floor_when_the_others_are_capped():
    """phi = 0 exactly beside noisy views capped at their 16 tokens (N = 16: [8, 32] clamped
    to 16): the total 48 cannot be reached, the noisy views keep 16, the flat one its floor 8.
    Catches a zero-phi view counted as able to grow (``raw >= 0``, it would get 16) and the
    bound test joined with ``and`` (the scale search never ends)."""
    x = _views(["same", "noise", "noise"])
    selection = select(x, 16, dynamic=True)
    assert float(selection.phi[0]) == 0.0
    assert selection.budget.tolist() == [8, 16, 16]
    assert selection.budget_clamped.dtype == torch.bool and selection.budget_clamped.tolist() == [True, True, True]


def test_the_cap_counts_the_reserved_cls_on_top_of_the_views_tokens():
    """16 patches and the CLS: a noisy view's cap is 17 (N = 16: [8, 32] clamped to 16 + 1).
    Catches the cap as ``selectable - reserved`` (15)."""
    x = _views(["same", "noise", "noise"])
    selection = select(x, 16, reserved=1, dynamic=True)
    assert selection.budget.tolist() == [8, 17, 17]
    assert [index.numel() for index in selection.indices] == [7, 16, 16]


def test_views_whose_tokens_are_all_alike_refuse_a_batch_mean_reference():
    """Every view's phi exactly 0: no reference to share by. Catches ``reference < 0`` (a
    0 / 0 budget) and the message that says why."""
    x = _views(["same", "same"])
    with pytest.raises(ValueError, match=r"phi_ref must be positive; the batch mean phi is 0 \(tokens are all alike\)"):
        select(x, 8, dynamic=True)


@pytest.mark.parametrize(
    "phi, selectable, budgets, clamped",
    [
        # mean phi 0.5 (exact): view 0 capped at its 16 tokens; the others share 32 as 1 : 3,
        # view 1 exactly at its floor 8
        ([0.75, 0.1875, 0.5625], [16, 100, 100], [16, 8, 24], [True, False, False]),
        # view 0 at its floor; the others share 40 equally, view 1 exactly at its cap of 20 tokens
        ([0.1, 0.45, 0.45], [100, 20, 100], [8, 20, 20], [True, False, False]),
    ],
)
def test_a_share_landing_exactly_on_its_bound_is_not_reported_clamped(phi, selectable, budgets, clamped):
    """A view whose proportional share is exactly its floor or its cap keeps that share
    without the clamp changing it: budget_clamped stays False for it. Catches the clamp flags
    of the scale search written with ``<=`` / ``>=`` (the two survivors left by the first run)."""
    result, flags, _ = dynamic_budgets(torch.tensor([16, 16, 16]), torch.tensor(phi), None, 0, torch.tensor(selectable))
    assert result.tolist() == budgets and int(result.sum()) == 48
    assert flags.tolist() == clamped
