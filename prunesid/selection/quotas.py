"""Stage 4, quotas: how many tokens each group keeps (SPEC.md section 4): a guaranteed token
per non-empty group, the rest shared in proportion to the groups' NMS survivors under a
per-group ceiling, then topped up in survivor order until the budget is met."""

from __future__ import annotations

import torch


def count_per_group(group_of, mask, k_max):
    """[B, k_max] long: how many tokens of each group ``mask`` holds."""
    counts = torch.zeros(group_of.shape[0], k_max, dtype=torch.long, device=group_of.device)
    return counts.scatter_add_(1, group_of, mask.long())


def group_quotas(sizes, survivor_counts, budgets, to_keep, caps, most_tokens=None):
    """Tokens kept per group (SPEC.md section 4), vectorised over images. ``most_tokens``
    bounds every view's token count (default: read from ``sizes``).

    Beyond the reference: when there are more non-empty groups than tokens to keep, only
    the groups with the most survivors get their guaranteed token (the reference would
    overshoot the budget), and the top-up stops at the number of tokens there are.
    """
    lower = sizes.clamp(max=1)
    lower = torch.where(lower.sum(1, keepdim=True) > to_keep[:, None], _first_by_survivors(survivor_counts, lower, to_keep), lower)
    upper = torch.minimum(torch.minimum(caps[:, None].expand_as(sizes), sizes), survivor_counts)
    # Raise every group's ceiling by one until the ceilings can hold the total budget N (or
    # every token): r raises give min(upper + r, size), so take the smallest r that is enough.
    totals = sizes.sum(1)
    most_tokens = int(totals.max()) if most_tokens is None else most_tokens  # (the caller knows it: no read)
    raises = torch.arange(most_tokens + 1, device=sizes.device)
    held = torch.minimum(upper[:, :, None] + raises, sizes[:, :, None]).sum(1)  # [B, raises]
    needed = (held < torch.minimum(budgets, totals)[:, None]).sum(1)  # held grows with r
    upper = torch.minimum(upper + needed[:, None], sizes)

    remaining = (to_keep - lower.sum(1)).clamp(min=0)
    total_survivors = survivor_counts.sum(1, keepdim=True)
    share = survivor_counts / total_survivors.clamp(min=1)  # float32, as the reference
    cumulative = torch.cumsum(share, dim=1)
    rounded = (cumulative * remaining[:, None]).round().long()
    extra = rounded - torch.nn.functional.pad(rounded[:, :-1], (1, 0))
    quotas = torch.minimum(lower + extra, upper)

    # Fill what is missing, visiting groups by survivor count (descending, stable).
    target = lower.sum(1) + remaining
    visit = torch.sort(survivor_counts, dim=1, descending=True, stable=True).indices
    room = (upper - quotas).clamp(min=0).gather(1, visit)
    missing = (target - quotas.sum(1)).clamp(min=0)
    room_before = torch.cumsum(room, dim=1) - room
    added = torch.minimum(room, (missing[:, None] - room_before).clamp(min=0))
    return quotas.scatter_add(1, visit, added)


def _first_by_survivors(survivor_counts, lower, to_keep):
    """Keep the guaranteed token only for the ``to_keep`` groups with most survivors."""
    visit = torch.sort(survivor_counts, dim=1, descending=True, stable=True).indices
    visited_lower = lower.gather(1, visit)
    allowed = torch.cumsum(visited_lower, dim=1) <= to_keep[:, None]
    return torch.zeros_like(lower).scatter(1, visit, visited_lower * allowed)
