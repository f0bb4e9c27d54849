"""What the baseline presses share: the tokens' checks and how many tokens each view keeps
(their settings are checked against their declarations, ``base.check_options``).

Budgets mean the same for every method, so that methods compare at the same budget: N is
the number of visual tokens the language model receives per view, a passed-through CLS
included (``Press.reserved``), read through the family's preset (``"qwen2-vl"``: N per 576
merged tokens). A view keeps ``N - reserved`` of its selectable tokens, all of them (in
order) when it holds no more than that.
"""

from __future__ import annotations

import torch

from prunesid import presets
from prunesid.methods.base import VisionTokens


def validated(tokens: VisionTokens) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features [B, T, D], valid [B, T] bool)`` after checking the tokens' shapes; every
    view must hold a selectable token."""
    if not isinstance(tokens, VisionTokens):
        raise TypeError(f"a press compresses prunesid.VisionTokens, got {type(tokens).__name__}")
    x = tokens.features
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or not x.is_floating_point():
        raise ValueError(f"features must be a float tensor [B, T, D], got {getattr(x, 'shape', type(x).__name__)}")
    batch, length, _ = x.shape
    if batch == 0 or length == 0:
        raise ValueError(f"features must hold at least one view of at least one token, got shape {list(x.shape)}")
    for name in ("importance", "valid"):
        value = getattr(tokens, name)
        if value is not None and tuple(value.shape) != (batch, length):
            raise ValueError(f"{name} must have shape [{batch}, {length}] (one value per token), got {list(value.shape)}")
    if tokens.keys is not None and tuple(tokens.keys.shape[:2]) != (batch, length):
        raise ValueError(f"keys must have shape [{batch}, {length}, d], got {list(tokens.keys.shape)}")
    if tokens.valid is None:
        valid = torch.ones(batch, length, dtype=torch.bool, device=x.device)
    else:
        if tokens.valid.dtype != torch.bool:
            raise TypeError(f"valid must be a bool tensor, got {tokens.valid.dtype}")
        valid = tokens.valid.to(x.device)
    empty = (~valid.any(1)).nonzero().flatten()
    if empty.numel():
        raise ValueError(f"valid leaves no selectable token in view {int(empty[0])}; every view needs at least one")
    if tokens.grid_shapes is not None and len(tokens.grid_shapes) != batch:
        raise ValueError(f"grid_shapes must hold one (rows, cols) per view: got {len(tokens.grid_shapes)} for {batch} views")
    return x, valid


def budgets(budget: int, reserved: int, tokens: VisionTokens, valid: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """``(budget per view [B] long, tokens to keep per view)``: the family's preset reads N
    for each view's number of selectable tokens; a view keeps ``N - reserved`` of them, or
    all of them when it holds fewer."""
    policy = presets.get_preset(tokens.preset)
    counts = valid.sum(1).tolist()
    effective = [policy.effective_budget(budget, count) for count in counts]
    if reserved and min(effective) <= reserved:
        raise ValueError(f"budget must exceed the {reserved} reserved token(s) (the CLS), got {budget}")
    keep = [min(n - reserved, count) for n, count in zip(effective, counts)]
    return torch.tensor(effective, dtype=torch.long, device=valid.device), keep


def positions(valid_row: torch.Tensor) -> torch.Tensor:
    """Ascending indices of a view's selectable tokens."""
    return valid_row.nonzero().flatten()
