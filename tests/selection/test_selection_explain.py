"""prunesid.selection.explain: the decision about each token, checked against greedy NMS run
step by step (take the most important remaining token of the group, discard the rest more
similar to it than tau, repeat) and against the selection's own fields."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from prunesid.selection import STATUSES, explain, select
from tests.selection.test_selection_contract import clustered_tokens


def _greedy_nms_step_by_step(xn, members, scores, tau):
    """{token: the survivor that discarded it} for one group, in the NMS's order (importance
    descending, ties to the lower index); tokens of importance 0 are never taken."""
    order = sorted(members, key=lambda i: (-float(scores[i]), i))
    remaining, discarded_by = [i for i in order if scores[i] > 0], {}
    while remaining:
        leader, *rest = remaining
        remaining = []
        for token in rest:
            if float(xn[leader] @ xn[token]) > tau:
                discarded_by[token] = leader
            else:
                remaining.append(token)
    return discarded_by


@pytest.mark.parametrize("lam, coarse_importance", [(6.0, False), (6.0, True), (1.0, False)])
def test_every_token_gets_the_decision_of_the_step_by_step_nms(lam, coarse_importance):
    x = clustered_tokens(3, 1, 300, 16, concepts=5, noise=0.8)
    importance = torch.rand(1, 300, generator=torch.Generator().manual_seed(1))
    if coarse_importance:  # many ties: the lower index goes first
        importance = (importance * 4).floor() / 4
    selection = select(x, 48, importance=importance, lam=lam)  # lambda 1: groups short of survivors
    xn, scores, tau = F.normalize(x[0], dim=-1), selection.scores[0], float(selection.tau[0])
    groups = selection.groups[0]
    expected = {}
    for group in range(int(selection.num_groups[0])):
        expected.update(_greedy_nms_step_by_step(xn, (groups == group).nonzero().flatten().tolist(), scores, tau))
    seen = set()
    for token in range(300):
        decision = explain(selection, x, 0, token)
        seen.add(decision.status)
        assert decision.status in STATUSES and decision.token == token and decision.group == int(groups[token])
        kept = token in selection.indices[0].tolist()
        if decision.status == "suppressed":
            assert not kept and decision.suppressor == expected[token]
            assert decision.similarity == pytest.approx(float(xn[token] @ xn[decision.suppressor]), abs=1e-5)
        elif decision.status == "zero_importance":
            assert not kept and float(scores[token]) == 0
        elif decision.status == "kept" and token in expected:  # topping up a group short of survivors
            assert kept and decision.survivor_rank is None and decision.group_quota > decision.group_survivors
        else:
            assert token not in expected and kept == (decision.status == "kept")
            assert decision.survivor_rank == int(selection.survivor_rank[0, token]) + 1
    assert {"kept", "suppressed"} <= seen and ("quota_full" in seen) == (lam > 1) and ("zero_importance" in seen) == coarse_importance


def test_tokens_that_took_no_part_are_excluded_and_bad_arguments_are_named():
    x = clustered_tokens(0, 1, 40, 8)
    valid = torch.ones(1, 40, dtype=torch.bool)
    valid[0, 30:] = False
    selection = select(x, 12, valid=valid)
    assert explain(selection, x, 0, 35).status == "excluded"
    assert explain(selection, x[0], 0, 3).group == int(selection.groups[0, 3])  # [T, D] for the one view
    with pytest.raises(ValueError, match=r"view must be in \[0, 0\], got 1"):
        explain(selection, x, 1, 0)
    with pytest.raises(ValueError, match=r"token must be in \[0, 39\], got 40"):
        explain(selection, x, 0, 40)
    with pytest.raises(ValueError, match="features hold 39 tokens"):
        explain(selection, x[:, :39], 0, 0)


def test_every_field_of_a_decision_is_the_selection_s_own_number():
    """Catches explain() filling a field from the wrong place: the view or token of an excluded
    token, num_groups, group_size, importance, keep_all, or an importance rank that counts the
    token itself or is off by one (1-based, ties to the lower index)."""
    x = clustered_tokens(4, 2, 60, 8, concepts=4, noise=0.7)
    importance = (torch.rand(2, 60, generator=torch.Generator().manual_seed(2)) * 3).floor() + 1  # ties
    valid = torch.ones(2, 60, dtype=torch.bool)
    valid[1, 50:] = False
    selection = select(x, [20, 70], importance=importance, valid=valid)
    excluded = explain(selection, x, 1, 55)
    assert (excluded.view, excluded.token, excluded.status, excluded.group) == (1, 55, "excluded", None)
    for view, token in [(0, 0), (0, 17), (0, 59), (1, 3), (1, 49)]:
        decision = explain(selection, x, view, token)
        groups = selection.groups[view]
        members = (groups == groups[token]).nonzero().flatten().tolist()
        score = float(importance[view, token])
        ahead = [i for i in members if (float(importance[view, i]), -i) > (score, -token)]
        assert (decision.view, decision.token) == (view, token)
        assert decision.num_groups == int(selection.num_groups[view])
        assert decision.group_size == len(members)
        assert decision.importance == score
        assert decision.importance_rank == len(ahead) + 1
        assert decision.keep_all == (view == 1)  # 70 covers all 60 tokens
        assert decision.to_dict()["importance_rank"] == decision.importance_rank


def _three_tokens_one_suppressed():
    """A (importance 3) and B (2) survive, C (1) is discarded by B: sim(A, C) = 0.6 stays
    under tau = 1.5 rho = 0.7, sim(B, C) = 0.8 does not."""
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.6, 0.8, 0.0]])
    selection = select(x, 2, importance=torch.tensor([3.0, 2.0, 1.0]), groups=1, lam=1.5)
    assert selection.survivors[0].tolist() == [True, True, False]
    return x, selection


def test_the_suppressor_is_the_first_survivor_strictly_above_tau():
    """Catches `similarity >= tau` when naming the suppressor: with tau at exactly sim(A, C),
    A did not discard C (the NMS discards above tau only), B did."""
    x, selection = _three_tokens_one_suppressed()
    assert explain(selection, x, 0, 2).suppressor == 1
    at_a = torch.tensor([0.6], dtype=torch.float32)  # exactly the float32 similarity of A and C
    decision = explain(replace(selection, tau=at_a), x, 0, 2)
    assert decision.suppressor == 1 and decision.similarity == pytest.approx(0.8)


def test_a_similarity_rounded_under_tau_names_the_closest_survivor():
    """Catches the fallback of explain's suppressor search dropped or reading the wrong thing:
    when no survivor is above tau (the device computed the similarity in another order), the
    closest survivor (B, 0.8 against A's 0.6) is named instead of failing."""
    x, selection = _three_tokens_one_suppressed()
    decision = explain(replace(selection, tau=torch.tensor([0.9])), x, 0, 2)
    assert decision.status == "suppressed" and decision.suppressor == 1
    assert decision.similarity == pytest.approx(0.8)


def test_keep_all_means_the_budget_less_the_reserved_tokens_covers_the_view():
    """Catches keep_all worked out with the reserved tokens added instead of taken off, or
    with `>` (a budget of exactly T + reserved covers the view)."""
    x = clustered_tokens(5, 1, 30, 8)
    assert explain(select(x, 31, reserved=1), x, 0, 4).keep_all
    assert not explain(select(x, 30, reserved=1), x, 0, 4).keep_all


def test_a_selection_that_disagrees_with_itself_is_named_not_explained():
    """Catches the refusal losing its message: a dropped token that no survivor of its group
    could have discarded (here every survivor flag cleared) is an inconsistent selection."""
    x, selection = _three_tokens_one_suppressed()
    broken = replace(selection, survivors=torch.zeros_like(selection.survivors))
    with pytest.raises(ValueError, match="token 2 of view 0 was neither kept nor suppressed"):
        explain(broken, x, 0, 2)
