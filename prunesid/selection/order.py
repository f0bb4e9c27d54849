"""Stage 5, output order: which tokens each view keeps, in the order the language model
receives them."""

from __future__ import annotations

import torch

from prunesid.presets import Preset

ORDERS = ("reference", "spatial")


def kept_indices(group_of, position, quotas, keep_all, order):
    """Kept token indices of each view: reference order (group by group, each in ranking
    order) or spatial order; every token, in order, where ``keep_all``. One sort for the
    whole batch: kept tokens first, by their key; then each row is cut at its count."""
    batch, num_tokens = group_of.shape
    tokens = torch.arange(num_tokens, device=group_of.device).expand(batch, num_tokens)
    kept = (position < quotas.gather(1, group_of)) | keep_all[:, None]
    if order == "spatial":
        key = tokens
    else:
        key = torch.where(keep_all[:, None], tokens, group_of * num_tokens + position)
    # Keys are distinct within a row and below T * T (position < T, group < T).
    key = key + (~kept).long() * (num_tokens * num_tokens)
    ordered = torch.argsort(key, dim=1)
    counts = kept.sum(1).tolist()
    return [ordered[b, : counts[b]] for b in range(batch)]


def preset_order(indices: list[torch.Tensor], policy: Preset, order: str) -> list[torch.Tensor]:
    """The reference order as the preset feeds it: position order instead once a view keeps
    more tokens than the preset says (``"qwen2-vl"``: more than 150, SPEC section 9)."""
    if order != "reference":
        return indices
    return [index.sort().values if policy.orders_by_position(index.numel()) else index for index in indices]
