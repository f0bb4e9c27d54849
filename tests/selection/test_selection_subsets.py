"""Selections made on part of the tokens, and batches stitched from several calls."""

from __future__ import annotations

import pytest
import torch

from prunesid import select
from prunesid.selection import Selection, redundancy


def _tokens(batch, num_tokens, seed=0):
    return torch.randn(batch, num_tokens, 24, generator=torch.Generator().manual_seed(seed))


def test_embed_maps_a_subset_selection_into_the_full_index_space():
    full = _tokens(2, 100)
    positions = torch.stack([torch.arange(10, 90), torch.arange(20, 100)])  # 80 of 100 per image
    subset = torch.stack([full[b, positions[b]] for b in range(2)])
    selection = select(subset, 16)
    embedded = selection.embed(positions, 100)
    for b in range(2):
        assert torch.equal(embedded.indices[b], positions[b][selection.indices[b]])
        outside = torch.ones(100, dtype=torch.bool)
        outside[positions[b]] = False
        assert (embedded.groups[b, outside] == -1).all() and not embedded.survivors[b, outside].any()
        assert torch.equal(embedded.groups[b, positions[b]], selection.groups[b])
        assert (embedded.survivor_rank[b, outside] == -1).all() and (embedded.scores[b, outside] == 0).all()
        assert embedded.kept[b].sum() == 16 and not embedded.kept[b, outside].any()
    torch.testing.assert_close(embedded.rho, selection.rho)
    with pytest.raises(ValueError, match="positions must be"):
        selection.embed(positions[:, :10], 100)


def test_concat_rebuilds_a_batch_from_its_parts():
    tokens = _tokens(3, 64, seed=1)
    whole = select(tokens, 16)
    parts = [whole.take(0, 1), select(tokens[1:], 32)]
    merged = Selection.concat(parts)
    assert merged.num_views == 3
    assert torch.equal(merged.indices[0], whole.indices[0])
    assert merged.quotas.shape == (3, 8)  # K = 4 for N = 16, K = 8 for N = 32: padded with zeros
    assert merged.quotas[0, 4:].eq(0).all() and merged.quotas[0].sum() == 16 and merged.quotas[1].sum() == 32
    assert merged.budget.tolist() == [16, 32, 32]
    with pytest.raises(ValueError, match="at least one"):
        Selection.concat([])


def test_redundancy_matches_select():
    tokens = _tokens(2, 50, seed=2)
    torch.testing.assert_close(redundancy(tokens), select(tokens, 8).rho)


def test_redundancy_over_valid_tokens_is_each_view_s_rho_on_just_those_tokens():
    """Catches redundancy(tokens, valid) counting the tokens it leaves out, or counting the
    valid tokens of the whole batch instead of per view; and a view of exactly two valid
    tokens (one pair: rho is their similarity) or of one (no pair: rho 0) mistaken."""
    tokens = _tokens(4, 40, seed=3)
    valid = torch.zeros(4, 40, dtype=torch.bool)
    valid[0, :40] = True
    valid[1, 5:17] = True
    valid[2, 7] = True
    valid[3, [4, 30]] = True
    rho = redundancy(tokens, valid)
    assert rho.shape == (4,) and rho.dtype == torch.float32
    for view in range(2):
        torch.testing.assert_close(rho[view], redundancy(tokens[view, valid[view]][None])[0])
    assert float(rho[2]) == 0.0 and float(redundancy(tokens[2, 7:8][None])[0]) == 0.0
    torch.testing.assert_close(rho[3], torch.nn.functional.cosine_similarity(tokens[3, 4], tokens[3, 30], dim=0))


def test_a_view_s_summary_holds_that_view_s_numbers_under_their_names():
    """Catches Selection.to_dict() renaming a key or reading a field of the wrong view
    (budget_clamped, groups, survivors, rho, phi among them)."""
    flat = _tokens(1, 64, seed=4)[:, :1].expand(1, 64, 24) + 0.01 * _tokens(1, 64, seed=5)  # phi near 0
    tokens = torch.cat([flat, _tokens(1, 64, seed=6)])
    selection = select(tokens, [16, 16], dynamic=True)
    assert selection.budget_clamped.tolist() == [True, False]  # the flat view at its floor N / 2
    assert selection.requested_budget.tolist() == [8, 24]  # N' (dynamic): the other view takes the rest
    for view in range(2):
        summary = selection.to_dict(view)
        k = int(selection.num_groups[view])
        expected = {
            "budget_requested": int(selection.requested_budget[view]), "budget_effective": int(selection.budget[view]),
            "budget_clamped": view == 0, "num_groups": k, "groups": selection.groups[view].tolist(),
            "quotas": selection.quotas[view, :k].tolist(), "survivors": int(selection.survivors[view].sum()),
            "rho": float(selection.rho[view]), "phi": float(selection.phi[view]), "lam": float(selection.lam[view]),
            "tau": float(selection.tau[view]), "phi_ref": selection.phi_ref, "grouping": "psca",
            "centering": "token", "dynamic": True, "order": "reference", "solver": selection.solver, "preset": "llava",
        }
        assert {key: summary[key] for key in expected} == expected
        assert summary["kept"] == selection.indices[view].tolist() and summary["method"] == "prunesid"


def test_an_integer_lambda_is_reported_as_float32_like_the_others():
    """Selection.lam is float32 whatever lambda's Python type. Catches the lambdas gathered
    into a tensor without dtype=float32 (lam=2 would give an int64 field)."""
    selection = select(_tokens(2, 40, seed=7), 16, lam=2)
    assert selection.lam.dtype == torch.float32 and selection.lam.tolist() == [2.0, 2.0]
