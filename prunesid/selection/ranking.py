"""Rankings inside groups: a token's rank by importance, and its place within its group
under any key (the NMS's order taken, the order a group's kept tokens come in)."""

from __future__ import annotations

import torch


def importance_rank(scores: torch.Tensor) -> torch.Tensor:
    """[B, T] rank of each token by importance (descending, ties to the lower index)."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return rank


def rank_within_groups(group_of: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Position of each token within its group when the group is sorted by ``key``
    (smaller first; keys are distinct within an image)."""
    num_tokens = group_of.shape[1]
    combined = group_of * (2 * num_tokens + 1) + key
    order = torch.argsort(combined, dim=1)
    sorted_groups = group_of.gather(1, order)
    positions = torch.arange(num_tokens, device=group_of.device).expand_as(order)
    is_start = torch.ones_like(sorted_groups, dtype=torch.bool)
    is_start[:, 1:] = sorted_groups[:, 1:] != sorted_groups[:, :-1]
    start = torch.where(is_start, positions, 0).cummax(dim=1).values
    within = torch.empty_like(order)
    within.scatter_(1, order, positions - start)
    return within


def position_in_group_ranking(group_of, survivor_rank, rank):
    """Each token's place in its group's ranking: survivors in the order taken, then the
    discarded tokens by importance."""
    num_tokens = group_of.shape[1]
    key = torch.where(survivor_rank >= 0, survivor_rank, num_tokens + rank)
    return rank_within_groups(group_of, key)
