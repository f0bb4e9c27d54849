"""Semantic groupings of patch tokens, looked up by name.

A grouping maps float32 tokens ``[B, T, D]`` and the number of groups of each image
(``[B]`` long), plus keyword options it may ignore (``centering``, ``solver``, ``seed``), to ``(groups [B, T] long, scores [B, T] float32)``. ``scores`` is the
grouping's own importance, used when the caller supplies none:

- ``psca``: |V[i, group(i)]|, the token's weight on its principal semantic component.
- ``kmeans`` and ``random``: how typical the token is of its group, (1 + cos) / 2 of the
  token and its group's mean direction, in [0, 1]; the most central token of a group leads
  its NMS, as the strongest component weight does for PSCA.

A new grouping is one function decorated with :func:`register_grouping`.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from prunesid.presets import DEFAULTS
from prunesid.psca import principal_token_components

GroupingFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]
GROUPINGS: dict[str, GroupingFn] = {}


def register_grouping(name: str) -> Callable[[GroupingFn], GroupingFn]:
    def register(fn: GroupingFn) -> GroupingFn:
        GROUPINGS[name] = fn
        return fn

    return register


def _column_mask(num_groups: torch.Tensor, k_max: int) -> torch.Tensor:
    """[B, k_max] bool: which group columns exist for each image."""
    return torch.arange(k_max, device=num_groups.device) < num_groups[:, None]


@register_grouping("psca")
def psca_grouping(x, num_groups, *, centering=DEFAULTS.centering, solver=DEFAULTS.solver, seed=DEFAULTS.seed):
    """PSCA: each token joins the principal token-space direction it weighs most on."""
    k_max = int(num_groups.max())
    weights = principal_token_components(x, k_max, centering=centering, solver=solver, seed=seed).abs()  # [B, T, K]
    # Images with fewer groups ignore the trailing components (the exact top-k of a
    # smaller k is the leading columns of the larger one).
    weights = weights.masked_fill(~_column_mask(num_groups, k_max)[:, None, :], -1.0)
    scores, groups = weights.max(dim=-1)  # max() returns the first index on ties
    return groups, scores


def _typicality(x: torch.Tensor, groups: torch.Tensor, k_max: int) -> torch.Tensor:
    """(1 + cos(token, group mean direction)) / 2 for every token."""
    xn = F.normalize(x, dim=-1)
    sums = torch.zeros(x.shape[0], k_max, x.shape[2], dtype=x.dtype, device=x.device)
    sums.scatter_add_(1, groups[..., None].expand_as(xn), xn)
    centres = F.normalize(sums, dim=-1).gather(1, groups[..., None].expand_as(xn))
    return ((1.0 + (xn * centres).sum(-1)) / 2).clamp(0.0, 1.0)


@register_grouping("random")
def random_grouping(x, num_groups, *, seed=DEFAULTS.seed, **_):
    """The paper's ablation: shuffle the tokens (seeded) and cut them into K equal groups."""
    batch, tokens, _ = x.shape
    generator = torch.Generator().manual_seed(seed)
    groups = torch.empty(batch, tokens, dtype=torch.long)
    for b in range(batch):
        k = int(num_groups[b])
        permutation = torch.randperm(tokens, generator=generator)
        groups[b, permutation] = torch.arange(tokens) * k // tokens
    groups = groups.to(x.device)
    return groups, _typicality(x, groups, int(num_groups.max()))


@register_grouping("kmeans")
def kmeans_grouping(x, num_groups, *, seed=DEFAULTS.seed, **_):
    """The paper's ablation: K-means with K clusters on the token features (scikit-learn)."""
    from sklearn.cluster import KMeans

    features = x.detach().cpu().numpy()
    groups = torch.empty(x.shape[:2], dtype=torch.long)
    for b in range(x.shape[0]):
        k = int(num_groups[b])
        labels = KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(features[b])
        groups[b] = torch.from_numpy(labels).long()
    groups = groups.to(x.device)
    return groups, _typicality(x, groups, int(num_groups.max()))
