"""Contracts of the "qwen2-vl" preset (SPEC section 9) on random shapes: the derived values
N_eff, K, lambda and tau, written out here independently of prunesid/presets.py, and the
ragged batches Qwen-VL images of different sizes make."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunesid import select
from tests.selection.test_selection_contract import clustered_tokens

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def spec_n_eff(tokens: int, budget: int) -> int:
    return tokens if tokens <= 16 else max(round(tokens * budget / 576), 16)


def spec_sim_mean(x: torch.Tensor) -> float:
    """Sum of the cosine similarities over i <= j, divided by T^2."""
    unit = torch.nn.functional.normalize(x.double(), dim=-1)
    return float((unit @ unit.T).triu(diagonal=0).sum() / x.shape[0] ** 2)


@SETTINGS
@given(seed=st.integers(0, 10_000), tokens=st.integers(17, 700), budget=st.integers(1, 700), dim=st.sampled_from([8, 24, 48]))
def test_derived_values_follow_section_9(seed, tokens, budget, dim):
    x = clustered_tokens(seed, 1, tokens, dim)[0]
    selection = select(x, budget, preset="qwen2-vl")
    n_eff = spec_n_eff(tokens, budget)
    summary = selection.to_dict()
    assert summary["budget_requested"] == budget and summary["budget_effective"] == n_eff
    kept = selection.indices[0]
    assert kept.numel() == kept.unique().numel() == min(n_eff, tokens)
    if n_eff >= tokens:
        assert torch.equal(kept, torch.arange(tokens))
        return
    assert summary["num_groups"] == min(max(n_eff // 4, 4), tokens)
    assert summary["lam"] == pytest.approx(max(n_eff / (tokens / 18), 1.0), rel=1e-6)
    assert summary["tau"] == pytest.approx(summary["lam"] * spec_sim_mean(x), rel=1e-4)
    assert sum(summary["quotas"]) == n_eff
    if n_eff > 150:  # more than 150 kept: position order
        assert torch.equal(kept, kept.sort().values)


@pytest.mark.parametrize(
    "tokens, budget, n_eff, lam",
    [
        (700, 20, 24, 1.0),  # 18 * 24 / 700 = 0.62: lambda's floor of 1
        (400, 8, 16, 1.0),  # N_eff's floor of 16, then lambda's
        (576, 64, 64, 2.0),  # the reference size: N_eff = N, lambda = N / 32
        (1000, 128, 222, 3.996),  # round(222.2); 18 * 222 / 1000
        (18, 1, 16, 16.0),  # 17 < T: N_eff's floor, K = max(16 // 4, 4)
    ],
)
def test_derived_values_at_chosen_sizes(tokens, budget, n_eff, lam):
    x = clustered_tokens(1, 1, tokens, 24)[0]
    summary = select(x, budget, preset="qwen2-vl").to_dict()
    assert summary["budget_effective"] == n_eff and summary["num_kept"] == n_eff
    assert summary["lam"] == pytest.approx(lam, rel=1e-6)
    assert summary["num_groups"] == max(n_eff // 4, 4)


def test_the_policy_floors_k_at_four():
    """K = max(N_eff // 4, 4): unreachable through select() (N_eff >= 16 there), the preset's own rule."""
    from prunesid.presets import get_preset

    policy = get_preset("qwen2-vl")
    assert [policy.num_groups(n, 500) for n in (4, 15, 16, 17, 64)] == [4, 4, 4, 4, 16]
    assert policy.lam(5, 500) == 1.0 and policy.lam(64, 576) == 2.0


@pytest.mark.parametrize("tokens", [1, 5, 16])
def test_sixteen_tokens_or_fewer_are_all_kept(tokens):
    selection = select(clustered_tokens(0, 1, tokens, 16), 1, preset="qwen2-vl")
    assert torch.equal(selection.indices[0], torch.arange(tokens)) and int(selection.budget[0]) == tokens


@pytest.mark.parametrize("kept, by_position", [(149, False), (150, False), (151, True)])
def test_position_order_starts_above_150_kept_tokens(kept, by_position):
    """SPEC section 9: the kept tokens come group by group (as section 5) up to 150 of them,
    and in position order from 151 on (the authors' ``> 150``): at exactly 150 the language
    model still receives them group by group."""
    x = clustered_tokens(7, 1, 576, 24)[0]
    selection = select(x, kept, preset="qwen2-vl")  # T = 576: N_eff = N
    indices = selection.indices[0]
    assert indices.numel() == kept
    groups = selection.groups[0][indices]
    in_position_order = torch.equal(indices, indices.sort().values)
    group_by_group = bool((groups[1:] >= groups[:-1]).all())
    assert (in_position_order, group_by_group) == (by_position, not by_position)


@SETTINGS
@given(seed=st.integers(0, 10_000), tokens=st.integers(60, 600), groups=st.integers(1, 40), lam=st.floats(0.2, 5.0))
def test_explicit_groups_and_lambda_override_the_preset(seed, tokens, groups, lam):
    x = clustered_tokens(seed, 1, tokens, 24)[0]
    summary = select(x, 64, preset="qwen2-vl", groups=groups, lam=lam).to_dict()
    assert summary["budget_effective"] == spec_n_eff(tokens, 64)
    assert summary["num_groups"] == min(groups, tokens)
    assert summary["lam"] == pytest.approx(lam, rel=1e-6)
    assert summary["tau"] == pytest.approx(lam * spec_sim_mean(x), rel=1e-4)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), lengths=st.lists(st.integers(10, 300), min_size=2, max_size=3), budget=st.sampled_from([64, 128, 192]))
def test_a_ragged_batch_selects_each_image_as_alone(seed, lengths, budget):
    """Images of different sizes share one padded batch (padding marked not valid): each keeps
    its own N_eff, chooses only among its own tokens, exactly as when selected alone."""
    longest = max(lengths)
    views = [clustered_tokens(seed + i, 1, length, 24)[0] for i, length in enumerate(lengths)]
    padded = torch.stack([torch.nn.functional.pad(view, (0, 0, 0, longest - view.shape[0])) for view in views])
    valid = torch.arange(longest)[None] < torch.tensor(lengths)[:, None]
    batch = select(padded, budget, valid=valid, preset="qwen2-vl")
    for i, (view, length) in enumerate(zip(views, lengths)):
        alone = select(view, budget, preset="qwen2-vl")
        assert torch.equal(batch.indices[i], alone.indices[0])
        assert int(batch.budget[i]) == spec_n_eff(length, budget)
        assert float(batch.tau[i]) == pytest.approx(float(alone.tau[0]), rel=1e-5)
