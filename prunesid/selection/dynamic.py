"""Stage 2, the dynamic budget (PruneSID-Dyn): each view's N' in proportion to its
information phi, on host tensors (the per-view numbers are decided without the device)."""

from __future__ import annotations

import math

import torch

from prunesid import presets


def dynamic_budgets(budgets, phi, phi_ref, reserved, room, whole=None):
    """N'_b = N_b * phi_b / phi_ref, clamped to [N_b / 2, 2 N_b] and to the view's
    ``room`` (the tokens the unmodified model feeds for it), rounded by largest remainder.

    ``budgets`` are in tokens kept (the preset's N_eff, reserved included), the unit of
    ``room``: a budget per 576 tokens clamped to a view's token count would put
    every view at the same bound. ``whole`` (bool per view, optional) marks views the
    preset does not prune: they keep N_b = their tokens.

    With ``phi_ref`` None (the budget-weighted batch mean) the batch total is exactly
    sum(N_b): where the clamp takes tokens from some views or gives them to others, the
    unclamped views share the difference in proportion to their phi (unless every view is
    at a bound). With a given ``phi_ref`` each view's N'_b stands on its own."""
    weights = budgets.double()
    if phi_ref is None:
        equal = bool((budgets == budgets[0]).all())
        reference = float(phi.mean()) if equal else float((weights * phi.double()).sum() / weights.sum())
    else:
        reference = float(phi_ref)
    if reference <= 0:
        raise ValueError(f"phi_ref must be positive; the batch mean phi is {reference:.4g} (tokens are all alike)")
    raw = weights * phi.double() / reference
    low = torch.ceil(weights * presets.DYNAMIC_MIN_FRACTION).clamp(min=reserved + 1)
    high = torch.minimum(torch.floor(weights * presets.DYNAMIC_MAX_FRACTION), room.double())
    high = torch.maximum(high, low)
    if whole is not None:
        low = torch.where(whole, weights, low)
        high = torch.where(whole, weights, high)
    if phi_ref is None:
        shares, clamped = _shares_with_total(raw, low, high, float(weights.sum()))
        return _largest_remainder(shares).long(), clamped, reference
    rounded = _largest_remainder(raw)
    result = torch.minimum(torch.maximum(rounded, low), high)
    return result.long(), result != rounded, reference


def _largest_remainder(values: torch.Tensor) -> torch.Tensor:
    """Integers summing to round(sum(values)): floors, plus one for the largest remainders."""
    floor = values.floor()
    shortfall = int(round(float(values.sum() - floor.sum())))
    order = torch.sort(values - floor, descending=True, stable=True).indices
    rounded = floor.clone()
    rounded[order[:shortfall]] += 1
    return rounded


def _shares_with_total(raw, low, high, total):
    """Real-valued shares clamp(s * raw, low, high) with the scale s that makes them sum to
    ``total`` (s = 1 when nothing needs clamping), and which views sit at a bound. The sum
    is non-decreasing in s, so s is found by bisection and then solved exactly on the
    unclamped views."""
    if bool(((raw >= low) & (raw <= high)).all()):
        return raw, torch.zeros(raw.shape, dtype=torch.bool, device=raw.device)

    def shares(scale: float) -> torch.Tensor:
        return torch.minimum(torch.maximum(raw * scale, low), high)

    positive = raw > 0
    reachable = float(torch.where(positive, high, low).sum())
    if total <= float(low.sum()) or total >= reachable:  # every view at a bound
        scale = 0.0 if total <= float(low.sum()) else math.inf
        fixed = low if scale == 0.0 else torch.where(positive, high, low)
        return fixed, torch.ones(raw.shape, dtype=torch.bool, device=raw.device)
    lower, upper = 0.0, 1.0
    while float(shares(upper).sum()) < total:
        upper *= 2.0
    for _ in range(200):
        middle = (lower + upper) / 2
        if float(shares(middle).sum()) < total:
            lower = middle
        else:
            upper = middle
    scaled = raw * upper
    free = positive & (scaled > low) & (scaled < high)
    if bool(free.any()):
        fixed_total = float(shares(upper)[~free].sum())
        upper = (total - fixed_total) / float(raw[free].sum())
        scaled = raw * upper
    return shares(upper), (scaled < low) | (scaled > high)
