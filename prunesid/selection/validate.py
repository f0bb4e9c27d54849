"""Validation: select()'s inputs and settings checked up front, each error naming the
parameter, the value and what is allowed."""

from __future__ import annotations

import math

import torch

from prunesid import presets
from prunesid.grouping import GROUPINGS
from prunesid.presets import DEFAULTS
from prunesid.psca import CENTERINGS, SOLVERS
from prunesid.selection.order import ORDERS


def validated_inputs(tokens, importance, valid):
    """``(x [B, T, D] float32, scores [B, T] float32 or None, valid [B, T] bool)`` from
    select()'s arguments (a single ``[T, D]`` view is a batch of one), checked."""
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a torch.Tensor of shape [T, D] or [B, T, D], got {type(tokens).__name__}")
    if not tokens.is_floating_point():
        raise TypeError(f"tokens must be a floating-point tensor, got dtype {tokens.dtype}")
    if tokens.dim() not in (2, 3):
        raise ValueError(f"tokens must have shape [T, D] or [B, T, D], got shape {tuple(tokens.shape)}")
    single = tokens.dim() == 2
    x = tokens[None] if single else tokens  # a single view is a batch of one
    if x.numel() == 0:
        raise ValueError(f"tokens must not be empty, got shape {tuple(tokens.shape)}")
    x = x.float()
    if not bool(torch.isfinite(torch.stack(torch.aminmax(x))).all()):  # NaN propagates; one pass, no copy
        raise ValueError("tokens contain NaN or inf values; all token features must be finite")
    expected = tuple(x.shape[1:2]) if single else tuple(x.shape[:2])
    scores = None
    if importance is not None:
        if not isinstance(importance, torch.Tensor):
            raise TypeError(f"importance must be a torch.Tensor or None, got {type(importance).__name__}")
        if tuple(importance.shape) != expected:
            raise ValueError(
                f"importance must have shape {list(expected)} (one value per token), got shape {list(importance.shape)}"
            )
        scores = importance.reshape(x.shape[:2]).to(device=x.device, dtype=torch.float32)
        if not bool(torch.isfinite(torch.stack(torch.aminmax(scores))).all()):
            raise ValueError("importance contains NaN or inf values; it must be finite")
        if (scores < 0).any():
            raise ValueError(f"importance must be non-negative, got a minimum of {float(scores.min()):.4g}")
    if valid is None:
        return x, scores, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if not isinstance(valid, torch.Tensor) or valid.dtype != torch.bool:
        raise TypeError(f"valid must be a bool torch.Tensor or None, got {getattr(valid, 'dtype', type(valid).__name__)}")
    if tuple(valid.shape) != expected:
        raise ValueError(f"valid must have shape {list(expected)} (one flag per token), got shape {list(valid.shape)}")
    valid = valid.reshape(x.shape[:2]).to(x.device)
    empty = (~valid.any(1)).nonzero().flatten()
    if empty.numel():
        raise ValueError(f"valid leaves no selectable token in view {int(empty[0])}; every view needs at least one")
    return x, scores, valid


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validated_budgets(budget, batch: int) -> torch.Tensor:
    """[B] long budgets from one int or one per view."""
    if isinstance(budget, torch.Tensor):
        if budget.dim() == 0 or budget.is_floating_point() or budget.dtype == torch.bool:
            raise ValueError(f"budget must be a positive integer or one integer per view, got {budget!r}")
        budget = budget.tolist()
    if isinstance(budget, (list, tuple)):
        if len(budget) != batch:
            raise ValueError(f"budget must hold one value per view: got {len(budget)} values for {batch} views")
        for value in budget:
            if not is_int(value) or value <= 0:
                raise ValueError(f"budget must hold positive integers, got {value!r} in {list(budget)}")
        return torch.tensor(list(budget), dtype=torch.long)
    if not is_int(budget) or budget <= 0:
        raise ValueError(f"budget must be a positive integer, got {budget!r}")
    return torch.full((batch,), budget, dtype=torch.long)


def validate_settings(
    *, budget, reserved=0, groups=DEFAULTS.groups, lam=DEFAULTS.lam, grouping=DEFAULTS.grouping,
    centering=DEFAULTS.centering, dynamic=DEFAULTS.dynamic, phi_ref=DEFAULTS.phi_ref, seed=DEFAULTS.seed,
    order=DEFAULTS.order, solver=DEFAULTS.solver, preset=DEFAULTS.preset,
):
    """Check select()'s settings, naming the parameter, the value and what is allowed.
    ``budget`` is one int or a list of them."""
    budgets = budget if isinstance(budget, (list, tuple)) else [budget]
    for value in budgets:
        if not is_int(value) or value <= 0:
            raise ValueError(f"budget must be a positive integer, got {value!r}")
    if not is_int(reserved) or reserved < 0:
        raise ValueError(f"reserved must be a non-negative integer, got {reserved!r}")
    if reserved >= min(budgets):
        raise ValueError(f"reserved must be smaller than budget ({min(budgets)}), got reserved={reserved}")
    if groups is not None and (not is_int(groups) or groups < 1):
        raise ValueError(f"groups must be a positive integer (K) or None, got {groups!r}")
    if lam is not None and (isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam <= 0):
        raise ValueError(f"lam must be a positive finite number or None, got {lam!r}")
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {sorted(GROUPINGS)}, got {grouping!r}")
    if centering not in CENTERINGS:
        raise ValueError(f"centering must be one of {list(CENTERINGS)}, got {centering!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {list(ORDERS)}, got {order!r}")
    if not isinstance(preset, str) or preset not in presets.PRESETS:
        raise ValueError(f"preset must be one of {sorted(presets.PRESETS)}, got {preset!r}")
    if not isinstance(dynamic, bool):
        raise TypeError(f"dynamic must be True or False, got {dynamic!r}")
    if not is_int(seed):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if phi_ref is not None and (isinstance(phi_ref, bool) or not isinstance(phi_ref, (int, float)) or not math.isfinite(phi_ref) or phi_ref <= 0):
        raise ValueError(f"phi_ref must be a positive finite number or None, got {phi_ref!r}")
