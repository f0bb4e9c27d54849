"""The parts of selection that a "different / deterministic" check would not catch: which
groups the quota fallback favours, the order of the randomized solver's components, per-image
centring, and what the kmeans / random groupings call a typical token."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from prunesid import select
from prunesid.grouping import GROUPINGS
from prunesid.psca import centred_sigmoid, principal_token_components
from tests.selection.test_selection_contract import clustered_tokens


def test_when_groups_outnumber_the_tokens_to_keep_the_groups_with_most_survivors_get_one():
    x = clustered_tokens(3, 1, 120, 24, concepts=12, noise=0.3)
    importance = torch.rand(1, 120, generator=torch.Generator().manual_seed(3)) + 0.01
    selection = select(x, 5, importance=importance, groups=12, lam=0.5)
    k = int(selection.num_groups[0])
    groups = selection.groups[0]
    survivors = torch.bincount(groups[selection.survivors[0]], minlength=k)
    sizes = torch.bincount(groups, minlength=k)
    non_empty = [g for g in range(k) if sizes[g] > 0]
    assert len(non_empty) > 5, "the case must have more non-empty groups than tokens to keep"
    # SPEC (beyond the reference): the first tokens go to the groups with most survivors, ties
    # to the lower group index.
    favoured = sorted(non_empty, key=lambda g: (-int(survivors[g]), g))[:5]
    assert sorted(selection.quotas[0, :k].nonzero().flatten().tolist()) == sorted(favoured)
    assert selection.indices[0].numel() == 5
    assert sorted(groups[selection.indices[0]].tolist()) == sorted(favoured)


def _spectrum_with_gaps(seed: int) -> torch.Tensor:
    """Tokens whose centred sigmoid has well separated leading singular values."""
    generator = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(200, 6, generator=generator)).Q  # token directions
    features = torch.linalg.qr(torch.randn(48, 6, generator=generator)).Q
    strengths = torch.tensor([40.0, 20.0, 10.0, 5.0, 2.5, 1.2])
    return (basis * strengths) @ features.T * 0.2 + 0.01 * torch.randn(200, 48, generator=generator)


def test_the_randomized_solver_returns_components_largest_first():
    x = _spectrum_with_gaps(0)[None]
    exact = principal_token_components(x, 4, solver="exact")[0]
    fast = principal_token_components(x, 4, solver="randomized")[0]
    agreement = (F.normalize(exact, dim=0) * F.normalize(fast, dim=0)).sum(0).abs()
    assert (agreement > 0.99).all(), agreement  # same components, in the same order


@pytest.mark.parametrize("centering, axis", [("token", -1), ("feature", -2)])
def test_centring_uses_each_images_own_means(centering, axis):
    generator = torch.Generator().manual_seed(1)
    first = torch.randn(1, 30, 8, generator=generator)
    second = 3.0 + 2.0 * torch.randn(1, 30, 8, generator=generator)  # a very different image
    batch = centred_sigmoid(torch.cat([first, second]), centering)
    for b, image in enumerate((first, second)):
        p = torch.sigmoid(image[0].double())
        expected = p - p.mean(dim=axis, keepdim=True)
        torch.testing.assert_close(batch[b].double(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("grouping", ["kmeans", "random"])
def test_typicality_is_the_cosine_to_the_groups_mean_direction(grouping):
    x = clustered_tokens(5, 2, 90, 16, concepts=5, noise=0.5)
    groups, scores = GROUPINGS[grouping](x, torch.tensor([6, 4]), seed=2)
    xn = F.normalize(x, dim=-1).numpy()
    for b in range(2):
        for g in np.unique(groups[b].numpy()):
            members = groups[b].numpy() == g
            centre = xn[b, members].sum(0)
            centre /= np.linalg.norm(centre)
            expected = (1 + xn[b, members] @ centre) / 2
            np.testing.assert_allclose(scores[b, members].numpy(), expected, atol=1e-5)
            # The most typical member leads its group's NMS.
            assert int(np.argmax(scores[b].numpy() * members)) == int(np.flatnonzero(members)[np.argmax(expected)])
