"""Budgets per view in select(): each view gets its own count, the golden cases hold when
they share one call, and the dynamic budget spreads frames x N over the frames of a clip in
proportion to their information phi, exactly, even where the clamp bites."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from prunesid import select
from prunesid.selection.dynamic import dynamic_budgets

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
FRAMES, PER_FRAME = 8, 17  # Video-LLaVA: 8 frames, 17 tokens each in the paper


def _views_with_information(phis, tokens=256, dim=64, seed=0):
    """``[len(phis), tokens, dim]``: a shared direction of weight sqrt(1/phi - 1) plus unit
    noise, so each view's phi = 1 - rho comes out close to the asked value."""
    generator = torch.Generator().manual_seed(seed)
    shared = F.normalize(torch.randn(dim, generator=generator), dim=0)
    views = [shared * math.sqrt(1 / phi - 1) + F.normalize(torch.randn(tokens, dim, generator=generator), dim=1) for phi in phis]
    return torch.stack(views)


def _importance(views, seed=1):
    return torch.rand(views.shape[:2], generator=torch.Generator().manual_seed(seed))


# --- a budget per view -------------------------------------------------------------------


def test_each_view_gets_its_own_budget_and_the_same_selection_as_alone():
    views = _views_with_information([0.4, 0.5, 0.6], seed=3)
    importance = _importance(views)
    budgets = [17, 40, 9]
    batched = select(views, budgets, importance=importance, reserved=1)
    assert batched.budget.tolist() == budgets
    assert [index.numel() for index in batched.indices] == [16, 39, 8]
    assert batched.output_counts() == budgets
    for view, budget in enumerate(budgets):
        alone = select(views[view], budget, importance=importance[view], reserved=1)
        assert torch.equal(batched.indices[view], alone.indices[0])
        assert int(batched.num_groups[view]) == int(alone.num_groups[0]) == budget // 4
        k = int(alone.num_groups[0])
        assert torch.equal(batched.quotas[view, :k], alone.quotas[0, :k])
        assert float(batched.lam[view]) == pytest.approx(budget / 32)
    as_tensor = select(views, torch.tensor(budgets), importance=importance, reserved=1)
    assert all(torch.equal(a, b) for a, b in zip(as_tensor.indices, batched.indices))


def test_a_budget_list_of_the_wrong_length_is_refused():
    views = _views_with_information([0.4, 0.5])
    with pytest.raises(ValueError, match="one value per view: got 3 values for 2 views"):
        select(views, [17, 17, 17])


def test_golden_cases_hold_when_they_share_one_call_with_their_own_budgets():
    """Every golden case of the same width in one batch, each with its own budget."""
    cases = {}
    for path in sorted(GOLDEN.glob("case*.npz")):
        data = np.load(path)
        cases.setdefault(data["features"].shape[2], []).append(data)
    assert sum(len(group) for group in cases.values()) >= 6
    for group in cases.values():
        features = torch.cat([torch.from_numpy(d["features"].astype(np.float32)) for d in group])
        importance = torch.cat([torch.from_numpy(d["cls_attention"].astype(np.float32)).sum(dim=1) for d in group])
        budgets = [int(d["budget"]) for d in group for _ in range(d["features"].shape[0])]
        assert len(set(budgets)) > 1  # the point: different budgets in one call
        selection = select(features[:, 1:], budgets, importance=importance, reserved=1)
        view = 0
        for data in group:
            for b in range(data["features"].shape[0]):
                got = np.concatenate([[0], selection.indices[view].numpy() + 1])
                np.testing.assert_array_equal(got, data["expected"][b])
                np.testing.assert_array_equal(selection.groups[view].numpy(), data["groups"][b])
                np.testing.assert_array_equal(selection.survivors[view].numpy(), data["survivors"][b])
                k = data["quotas"].shape[1]
                np.testing.assert_array_equal(selection.quotas[view, :k].numpy(), data["quotas"][b])
                assert not selection.quotas[view, k:].any()
                np.testing.assert_allclose(float(selection.tau[view]), data["tau"][b], rtol=0, atol=1e-5)
                view += 1


# --- dynamic budget across the frames of a clip ---------------------------------------------


def test_dynamic_budget_across_frames_is_proportional_to_phi_and_sums_to_frames_times_n():
    phis = [0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65]
    frames = _views_with_information(phis, seed=5)
    selection = select(frames, PER_FRAME, importance=_importance(frames), reserved=1, dynamic=True)
    budgets = selection.budget.tolist()
    measured = selection.phi.double()
    assert int(selection.budget.sum()) == FRAMES * PER_FRAME == 136
    assert not selection.budget_clamped.any()
    ideal = FRAMES * PER_FRAME * measured / measured.sum()
    assert (torch.tensor(budgets, dtype=torch.float64) - ideal).abs().max() < 1.0
    assert budgets == sorted(budgets) and budgets[0] < PER_FRAME < budgets[-1]
    assert selection.phi_ref == pytest.approx(float(measured.mean()), rel=1e-6)
    # Each frame keeps its own N' (CLS included): the budget is not only reported.
    assert [index.numel() + 1 for index in selection.indices] == budgets
    assert selection.requested_budget.tolist() == budgets


def test_a_frame_clamped_high_passes_its_excess_to_the_others_and_the_total_stays_exact():
    phis = [0.05] * 7 + [0.9]
    frames = _views_with_information(phis, seed=7)
    selection = select(frames, PER_FRAME, importance=_importance(frames), reserved=1, dynamic=True)
    budgets = selection.budget.tolist()
    assert budgets[7] == 2 * PER_FRAME and bool(selection.budget_clamped[7])
    assert sum(budgets) == 136
    # The seven others share the remaining 102 in proportion to their phi: none is clamped
    # (each alone would have dropped to its floor of 9: phi_b / phi_mean is about 0.3).
    assert not selection.budget_clamped[:7].any()
    others = selection.phi[:7].double()
    ideal = 102 * others / others.sum()
    assert (torch.tensor(budgets[:7], dtype=torch.float64) - ideal).abs().max() < 1.0
    assert all(budget > math.ceil(PER_FRAME / 2) for budget in budgets[:7])


def test_a_frame_clamped_low_gives_its_tokens_to_the_others_and_the_total_stays_exact():
    phis = [0.02] + [0.6] * 7
    frames = _views_with_information(phis, seed=11)
    selection = select(frames, PER_FRAME, importance=_importance(frames), reserved=1, dynamic=True)
    budgets = selection.budget.tolist()
    assert budgets[0] == math.ceil(PER_FRAME / 2) == 9 and bool(selection.budget_clamped[0])
    assert sum(budgets) == 136
    others = selection.phi[1:].double()
    ideal = (136 - 9) * others / others.sum()
    assert (torch.tensor(budgets[1:], dtype=torch.float64) - ideal).abs().max() < 1.0


def test_dynamic_totals_are_exact_for_many_random_batches():
    """The budget arithmetic alone, on random phi and budgets: the total is sum(N) whenever
    the bounds allow it, every N' lies within its bounds, and more phi never means less."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        views = int(rng.integers(1, 12))
        same = bool(rng.integers(0, 2))
        budgets = torch.tensor([17] * views if same else rng.integers(4, 80, views).tolist())
        phi = torch.tensor(rng.uniform(0.001, 1.0, views) ** rng.uniform(0.5, 4), dtype=torch.float32)
        room = torch.full((views,), 257)  # 256 selectable + the reserved CLS
        result, clamped, _ = dynamic_budgets(budgets, phi, None, 1, room)
        assert int(result.sum()) == int(budgets.sum())
        low = torch.ceil(budgets / 2).clamp(min=2)
        assert bool((result >= low).all()) and bool((result <= 2 * budgets).all())
        if same:
            order = torch.argsort(phi)
            assert bool((result[order].diff() >= 0).all())
        assert clamped.dtype == torch.bool


def test_a_given_phi_ref_still_sets_each_frame_on_its_own():
    frames = _views_with_information([0.3, 0.6], seed=13)
    selection = select(frames, PER_FRAME, importance=_importance(frames), reserved=1, dynamic=True, phi_ref=0.3)
    wanted = PER_FRAME * selection.phi.double() / 0.3
    assert (selection.budget.double() - wanted).abs().max() < 1.0
    assert selection.phi_ref == 0.3 and int(selection.budget.sum()) != 2 * PER_FRAME
