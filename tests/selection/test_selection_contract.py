"""Properties every selection must have, for every grouping and many sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunesid import GROUPINGS, default_groups, default_lam, select
from tests.spec_reference import cosine_similarity, default_cap, spec_select

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def clustered_tokens(seed, batch, tokens, dim, concepts=6, noise=0.6):
    """Tokens drawn around a few concept directions, like real patch features."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(concepts, dim, generator=generator)
    labels = torch.randint(concepts, (batch, tokens), generator=generator)
    return centres[labels] + noise * torch.randn(batch, tokens, dim, generator=generator)


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    tokens=st.integers(16, 700),
    budget=st.integers(1, 800),
    reserved=st.sampled_from([0, 1]),
    grouping=st.sampled_from(sorted(GROUPINGS)),
    with_importance=st.booleans(),
)
def test_keeps_exactly_the_budget_of_unique_in_range_tokens(seed, tokens, budget, reserved, grouping, with_importance):
    if reserved >= budget:
        budget = reserved + 1
    x = clustered_tokens(seed, 2, tokens, 24)
    importance = torch.rand(2, tokens, generator=torch.Generator().manual_seed(seed)) if with_importance else None
    selection = select(x, budget, importance=importance, reserved=reserved, grouping=grouping, seed=seed)
    expected = min(budget - reserved, tokens)
    for b, kept in enumerate(selection.indices):
        assert kept.dtype == torch.long and kept.numel() == expected
        assert kept.unique().numel() == expected
        assert int(kept.min()) >= 0 and int(kept.max()) < tokens
        assert int(selection.quotas[b].sum()) == expected
        if budget - reserved >= tokens:
            assert torch.equal(kept, torch.arange(tokens))


@pytest.mark.parametrize("tokens, budget", [(2880, 160), (576, 64), (16, 4)])
@pytest.mark.parametrize("grouping", sorted(GROUPINGS))
def test_budget_holds_at_model_sizes(tokens, budget, grouping):
    x = clustered_tokens(0, 1, tokens, 64)
    selection = select(x, budget, reserved=1, grouping=grouping)
    assert selection.indices[0].unique().numel() == budget - 1


@SETTINGS
@given(seed=st.integers(0, 10_000), budget=st.sampled_from([16, 32, 64, 128]), lam=st.floats(0.3, 4.0))
def test_every_non_empty_group_keeps_a_token_and_nms_holds(seed, budget, lam):
    x = clustered_tokens(seed, 1, 256, 32)
    importance = torch.rand(1, 256, generator=torch.Generator().manual_seed(seed)) + 0.01
    selection = select(x, budget, importance=importance, reserved=1, lam=lam)
    groups, kept = selection.groups[0], selection.kept[0]
    for g in groups.unique():
        assert kept[groups == g].any(), f"group {int(g)} lost every token"
    similarity = torch.from_numpy(cosine_similarity(x[0].numpy()))
    rank = selection.survivor_rank[0]
    tau = float(selection.tau[0])
    for g in groups.unique():
        members = torch.nonzero((groups == g) & (rank >= 0)).squeeze(1)
        members = members[torch.argsort(rank[members])]
        for later in range(1, members.numel()):
            earlier = members[:later]
            assert float(similarity[earlier, members[later]].max()) <= tau + 1e-5


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    tokens=st.integers(16, 300),
    budget=st.integers(8, 120),
    lam=st.one_of(st.none(), st.floats(0.2, 3.0)),
    zeros=st.booleans(),
)
def test_matches_a_literal_transcription_of_the_spec(seed, tokens, budget, lam, zeros):
    """Vectorised NMS, quotas and order agree with the loop-by-loop oracle."""
    x = clustered_tokens(seed, 1, tokens, 16)
    generator = torch.Generator().manual_seed(seed)
    importance = torch.rand(1, tokens, generator=generator)
    if zeros:  # some tokens of zero importance: they are never taken
        importance[importance < 0.2] = 0.0
    selection = select(x, budget, importance=importance, reserved=1, lam=lam)
    if int(selection.num_groups[0]) > budget - 1 or budget - 1 >= tokens:
        return  # oracle overshoots like the authors' code there; keep-all is tested above
    xn = torch.nn.functional.normalize(x[0], dim=-1)
    similarity = (xn[None] @ xn[None].transpose(1, 2))[0].numpy()
    kept, quotas, survivor_counts = spec_select(
        selection.groups[0].numpy(), importance[0].numpy(), similarity,
        float(selection.tau[0]), budget, 1, default_cap(budget),
    )
    k = int(selection.num_groups[0])
    assert selection.indices[0].tolist() == kept
    assert selection.quotas[0, :k].tolist() == quotas[:k] + [0] * (k - len(quotas))
    assert selection.survivors[0].sum().item() == sum(survivor_counts)


def test_more_groups_than_budget_still_keeps_exactly_the_budget():
    x = clustered_tokens(3, 1, 200, 16)
    selection = select(x, 10, reserved=1, groups=50, lam=0.5)
    assert selection.indices[0].unique().numel() == 9


def test_redundancy_is_the_mean_off_diagonal_cosine_and_phi_its_complement():
    x = clustered_tokens(1, 3, 100, 12)
    selection = select(x, 20)
    for b in range(3):
        similarity = cosine_similarity(x[b].double().numpy())
        upper = similarity[np.triu_indices(100, k=1)]
        assert abs(float(selection.rho[b]) - upper.mean()) < 1e-6
        assert float(selection.phi[b]) == pytest.approx(1 - float(selection.rho[b]), abs=1e-7)
        assert float(selection.tau[b]) == pytest.approx(default_lam(20) * float(selection.rho[b]), rel=1e-6)
    assert selection.num_groups.tolist() == [default_groups(20)] * 3


def test_defaults_derive_from_budget():
    selection = select(clustered_tokens(0, 1, 576, 32), 192, reserved=1)
    assert int(selection.num_groups[0]) == 48 and float(selection.lam[0]) == 6.0


def _images_of_varied_complexity(seed=0):
    """Same budget, different redundancy: fewer concepts and less noise -> more alike."""
    return torch.cat([clustered_tokens(seed + i, 1, 400, 32, concepts=2 + 4 * i, noise=0.3 + 0.3 * i) for i in range(5)])


def test_dynamic_budget_rises_with_phi_and_averages_to_the_target():
    x = _images_of_varied_complexity()
    selection = select(x, 64, reserved=1, dynamic=True)
    phi, budgets = selection.phi, selection.budget
    order = torch.argsort(phi)
    assert torch.all(budgets[order][1:] >= budgets[order][:-1])
    assert budgets.float().mean().item() == 64.0 or selection.budget_clamped.any()
    assert selection.phi_ref == pytest.approx(float(phi.mean()), rel=1e-6)
    for b in range(5):
        assert selection.indices[b].numel() == int(budgets[b]) - 1
        assert int(selection.num_groups[b]) == default_groups(int(budgets[b]))


@SETTINGS
@given(seed=st.integers(0, 1000), budget=st.integers(8, 200))
def test_dynamic_budget_without_clamping_keeps_the_batch_total(seed, budget):
    x = torch.cat([clustered_tokens(seed + i, 1, 300, 16, concepts=3 + i, noise=0.5 + 0.1 * i) for i in range(4)])
    selection = select(x, budget, reserved=1, dynamic=True)
    if not selection.budget_clamped.any():
        assert int(selection.budget.sum()) == 4 * budget


def test_dynamic_budget_with_a_calibrated_reference_is_clamped_and_reported():
    x = _images_of_varied_complexity()
    selection = select(x, 64, reserved=1, dynamic=True, phi_ref=1e-3)
    assert selection.budget_clamped.all() and selection.budget.tolist() == [128] * 5
    assert selection.phi_ref == 1e-3


def test_spatial_order_is_sorted_reference_order():
    x = clustered_tokens(5, 1, 576, 32)
    reference = select(x, 64, reserved=1)
    spatial = select(x, 64, reserved=1, order="spatial")
    assert torch.equal(spatial.indices[0], reference.indices[0].sort().values)


def test_feature_centering_is_a_different_grouping():
    x = clustered_tokens(5, 1, 576, 32)
    token = select(x, 64, reserved=1, centering="token")
    feature = select(x, 64, reserved=1, centering="feature")
    assert not torch.equal(token.groups, feature.groups)
    assert feature.indices[0].numel() == 63


@pytest.mark.parametrize("grouping", sorted(GROUPINGS))
def test_groupings_are_deterministic_for_a_seed_and_random_cuts_equal_groups(grouping):
    x = clustered_tokens(2, 1, 96, 16)
    first = select(x, 32, grouping=grouping, seed=7)
    second = select(x, 32, grouping=grouping, seed=7)
    assert torch.equal(first.groups, second.groups) and torch.equal(first.indices[0], second.indices[0])
    if grouping == "random":
        assert torch.bincount(first.groups[0]).tolist() == [12] * 8
        assert not torch.equal(first.groups, select(x, 32, grouping=grouping, seed=8).groups)


def test_any_float_dtype_gives_the_float32_decision():
    x = clustered_tokens(4, 1, 144, 32).half()
    assert torch.equal(select(x, 36).indices[0], select(x.float(), 36).indices[0])
    assert torch.equal(select(x.bfloat16(), 36).groups, select(x.bfloat16().float(), 36).groups)


def test_randomized_solver_is_seeded_and_keeps_the_budget():
    x = clustered_tokens(6, 2, 576, 64)
    first = select(x, 64, reserved=1, solver="randomized", seed=3)
    again = select(x, 64, reserved=1, solver="randomized", seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first.indices, again.indices))
    assert [i.numel() for i in first.indices] == [63, 63] and first.solver == "randomized"
