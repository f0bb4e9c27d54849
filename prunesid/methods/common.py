"""What the baseline presses share: :class:`PerViewPress`, their base, which checks the
tokens, reads how many tokens each view keeps and gathers the views' decisions into one
result, so that a baseline holds only what makes it different (their settings are checked
against their declarations, ``base.check_options``).

Budgets mean the same for every method, so that methods compare at the same budget: N is
the number of visual tokens the language model receives per view, a passed-through CLS
included (``Press.reserved``), read through the family's preset (``"qwen2-vl"``: N per 576
merged tokens). A view keeps ``N - reserved`` of its selectable tokens, all of them (in
order) when it holds no more than that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prunesid import presets
from prunesid.compression import Compression
from prunesid.methods.base import Press, VisionTokens


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


@dataclass
class Views:
    """A batch of views as a per-view press sees it: checked, each view's budget read."""

    tokens: VisionTokens
    features: torch.Tensor  # [B, T, D]
    valid: torch.Tensor  # [B, T] bool: tokens that may be kept
    budget: torch.Tensor  # [B] long: N of each view, read through the family's preset
    keep: list[int]  # tokens each view keeps: N - reserved, or all it holds
    reserved: int  # budget slots passed through untouched (the CLS, where kept)

    def candidates(self, view: int) -> torch.Tensor:
        """Ascending indices of a view's selectable tokens."""
        return positions(self.valid[view])


@dataclass(frozen=True)
class PerViewPress(Press):
    """Base of the presses that decide view by view (as kvpress' ``ScorerPress`` is of the
    presses that score tokens): :meth:`compress` checks the tokens (:meth:`check_tokens` for
    what a method needs besides), reads each view's budget and hands the :class:`Views` to
    :meth:`compress_views`. A method gives :meth:`keep_view`, which tokens one view keeps;
    one that works on the whole batch, or whose result holds more than the kept tokens,
    gives :meth:`compress_views` instead."""

    def compress(self, tokens: VisionTokens) -> Compression:
        features, valid = validated(tokens)
        self.check_tokens(tokens)
        reserved = self.reserved(tokens)
        budget, keep = budgets(self.budget, reserved, tokens, valid)
        return self.compress_views(Views(tokens, features, valid, budget, keep, reserved))

    def check_tokens(self, tokens: VisionTokens) -> None:
        """Refuse, with a ValueError saying why, tokens that lack what the method needs."""

    def compress_views(self, views: Views) -> Compression:
        """Every view's kept tokens (:meth:`keep_view`) as a plain :class:`Compression`."""
        return self.result(views, [self.keep_view(views, view, count) for view, count in enumerate(views.keep)])

    def keep_view(self, views: Views, view: int, count: int) -> torch.Tensor:
        """Ascending indices of the ``count`` tokens ``view`` keeps."""
        raise NotImplementedError(f"{type(self).__name__} gives neither keep_view nor compress_views")

    def result(self, views: Views, indices: list[torch.Tensor], kind: type[Compression] = Compression, **fields) -> Compression:
        """A result of ``kind`` for the kept ``indices`` of every view, with the method's own ``fields``."""
        return kind(indices=indices, valid=views.valid, budget=views.budget, reserved=views.reserved, method=self.name, **fields)
