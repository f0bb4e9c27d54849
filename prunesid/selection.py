"""select() and Selection: PruneSID on tensors, stage by stage (docs/SPEC.md).

Stages: redundancy (rho, phi) -> budget (fixed or dynamic, then the preset's N_eff) ->
grouping -> intra-group NMS -> per-group quotas -> kept indices in reference order.

``select`` works on a batch of B *views* (images, LLaVA-NeXT tiles or video frames) of T
tokens each; ``valid`` excludes tokens per view (ragged views) and ``budget`` may differ per
view. Presets (presets.py) derive K, lambda and the kept count from (N, T).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from prunesid import presets
from prunesid.compression import Compression
from prunesid.grouping import GROUPINGS
from prunesid.psca import CENTERINGS, SOLVERS

__all__ = ["Selection", "select", "redundancy", "ORDERS"]

ORDERS = ("reference", "spatial")
# Above this threshold no cosine similarity (at most 1 plus float32 rounding) can exceed
# tau, so NMS cannot suppress anything and is skipped.
_NO_SUPPRESSION_TAU = 1.001


@dataclass(kw_only=True)
class Selection(Compression):
    """PruneSID's result: the kept tokens (see :class:`Compression`) and every decision that
    led to them, per view. Index space: token indices 0..T-1 of the tokens handed to
    :func:`select` (a CLS token the caller passes through is *not* part of it; ``reserved``
    counts it). Tokens that took no part (``valid`` False) have group -1 and score 0."""

    method: str = "prunesid"
    groups: torch.Tensor  # [B, T] long: group of every token (the assignment; K is num_groups)
    scores: torch.Tensor  # [B, T] float32: importance that ordered the NMS
    survivors: torch.Tensor  # [B, T] bool: taken by the intra-group NMS
    survivor_rank: torch.Tensor  # [B, T] long: order taken within its group, -1 if suppressed
    quotas: torch.Tensor  # [B, K_max] long: tokens kept per group (zero-padded)
    num_groups: torch.Tensor  # [B] long: K of each view
    rho: torch.Tensor  # [B] float32: mean pairwise cosine similarity (redundancy)
    phi: torch.Tensor  # [B] float32: 1 - rho (information)
    lam: torch.Tensor  # [B] float32: lambda used
    tau: torch.Tensor  # [B] float32: NMS threshold, lambda * rho (preset "qwen2-vl": lambda * sim_mean)
    requested_budget: torch.Tensor  # [B] long: N, or N' when dynamic, before the preset's N_eff
    budget_clamped: torch.Tensor  # [B] bool: the dynamic budget hit its clamp
    grouping: str
    centering: str
    dynamic: bool
    phi_ref: float | None  # the phi_ref actually used (dynamic only)
    order: str = "reference"
    solver: str = "exact"
    preset: str = "llava"

    TOKEN_FIELDS: ClassVar[dict[str, Any]] = {
        **Compression.TOKEN_FIELDS, "groups": -1, "scores": 0.0, "survivors": False, "survivor_rank": -1,
    }

    def to_dict(self, view: int = 0) -> dict[str, Any]:
        """JSON-friendly summary of one view's selection."""
        k = int(self.num_groups[view])
        summary = super().to_dict(view)
        summary.update({
            "budget_requested": int(self.requested_budget[view]),
            "budget_effective": int(self.budget[view]),
            "budget_clamped": bool(self.budget_clamped[view]),
            "num_groups": k,
            "groups": self.groups[view].tolist(),
            "quotas": self.quotas[view, :k].tolist(),
            "survivors": int(self.survivors[view].sum()),
            "rho": float(self.rho[view]),
            "phi": float(self.phi[view]),
            "lam": float(self.lam[view]),
            "tau": float(self.tau[view]),
            "phi_ref": self.phi_ref,
            "grouping": self.grouping,
            "centering": self.centering,
            "dynamic": self.dynamic,
            "order": self.order,
            "solver": self.solver,
            "preset": self.preset,
        })
        return summary


def redundancy(tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """rho of each view of ``[B, T, D]`` tokens (mean pairwise cosine similarity over the
    ``valid`` tokens, all by default); phi = 1 - rho."""
    xn = F.normalize(tokens.float(), dim=-1)
    if valid is None:
        return _redundancy(xn)
    return _masked_redundancy(xn * valid[..., None], valid.sum(1))


def select(
    tokens: torch.Tensor,
    budget,
    *,
    importance: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    reserved: int = 0,
    preset: str = "llava",
    groups: int | None = None,
    lam: float | None = None,
    grouping: str = "psca",
    centering: str = "token",
    dynamic: bool = False,
    phi_ref: float | None = None,
    seed: int = 0,
    order: str = "reference",
    solver: str = "exact",
) -> Selection:
    """Choose which tokens of each view to keep with PruneSID (docs/SPEC.md).

    Args:
        tokens: ``[T, D]`` or ``[B, T, D]`` tokens of each view (image, tile or frame), any
            float dtype and device; the decisions are computed in float32.
        budget: N, total visual tokens the LLM receives per view, ``reserved`` included: one
            int for every view, or one per view (a sequence or 1-D tensor of B ints). So
            ``N - reserved`` tokens are kept (all of them, in order, if that is >= T). Preset
            ``"qwen2-vl"`` reads N per 576 tokens and keeps N_eff (presets.py).
        importance: ``[T]`` or ``[B, T]`` non-negative saliency (CLS attention summed over
            heads for CLIP towers). ``None``: the grouping's own score (see grouping.py).
            A token of importance exactly 0 never leads an NMS step.
        valid: ``[T]`` or ``[B, T]`` bool, the tokens each view may keep (default: all).
            The others take no part at all: not in rho, the grouping, NMS or the quotas.
        reserved: tokens the caller passes through untouched (1 for LLaVA's CLS).
        preset: ``"llava"`` (the reference) or ``"qwen2-vl"`` (SPEC section 9): the policy
            that derives N_eff, K, lambda, the group cap, tau's basis and the order.
        groups: K, the number of groups; default from the preset (``N // 4``). Clamped to the
            number of selectable tokens of each view.
        lam: lambda of the NMS threshold tau = lambda * rho; default from the preset (``N / 32``).
        grouping: ``"psca"`` (the method), ``"kmeans"`` or ``"random"`` (the paper's ablation).
        centering: PSCA centring, ``"token"`` (the authors' code, the reference) or
            ``"feature"`` (the formula of the paper's text).
        dynamic: PruneSID-Dyn: view b gets ``N'_b = N_b * phi_b / phi_ref`` tokens, clamped to
            [N_b/2, 2 N_b] and to what the view holds. With ``phi_ref=None`` the batch total
            stays exactly sum(N_b) (e.g. frames x N for a video): what the clamp takes or
            gives is shared by the other views in proportion to phi. K and lambda default
            per view from N'_b.
        phi_ref: reference information score for ``dynamic``; ``None`` = the batch mean
            (weighted by the budgets when they differ).
        seed: seed of the random / kmeans groupings and of the randomized PSCA solver.
        order: ``"reference"`` (group by group, each in rank order, as the authors' code; the
            preset may switch to position order for large N) or ``"spatial"`` (sorted).
        solver: PSCA eigensolver, ``"exact"`` (the reference) or a faster one (see psca.py).
    """
    x, scores_given, valid = _validated_inputs(tokens, importance, valid)
    batch, num_tokens, _ = x.shape
    budgets = _validated_budgets(budget, batch, reserved)
    validate_settings(
        budget=budgets.tolist(), reserved=reserved, groups=groups, lam=lam, grouping=grouping, centering=centering,
        dynamic=dynamic, phi_ref=phi_ref, seed=seed, order=order, solver=solver, preset=preset,
    )
    settings = dict(
        reserved=reserved, policy=presets.get_preset(preset), groups=groups, lam=lam, grouping=grouping,
        centering=centering, dynamic=dynamic, seed=seed, order=order, solver=solver,
    )
    # Per-view numbers (budgets, selectable counts) are worked out on the host: one read
    # from the device here, none inside the loops below.
    selectable = valid.sum(1)
    counts = selectable.tolist()
    if dynamic:
        phi = 1.0 - _masked_redundancy(F.normalize(x, dim=-1) * valid[..., None], selectable)
        budgets, clamped, phi_ref_used = _dynamic_budgets(budgets, phi.cpu(), phi_ref, reserved, torch.tensor(counts))
    else:
        clamped = torch.zeros(batch, dtype=torch.bool)
        phi_ref_used = None
    if all(count == num_tokens for count in counts):
        return _select_views(x, scores_given, budgets, clamped, phi_ref_used, **settings)

    # Ragged views: views with the same number of selectable tokens are selected together
    # on just those tokens, then put back in the full index space.
    parts: list[Selection | None] = [None] * batch
    for count in sorted(set(counts)):
        rows = [row for row, selectable_here in enumerate(counts) if selectable_here == count]
        rows_on_device = torch.tensor(rows, device=x.device)
        # Ascending positions of each row's valid tokens (a stable sort puts them first).
        positions = torch.sort((~valid[rows_on_device]).to(torch.int8), dim=1, stable=True).indices[:, :count]
        subset = x[rows_on_device].gather(1, positions[..., None].expand(-1, -1, x.shape[2]))
        scores = None if scores_given is None else scores_given[rows_on_device].gather(1, positions)
        part = _select_views(subset, scores, budgets[rows], clamped[rows], phi_ref_used, **settings)
        part = part.embed(positions, num_tokens)
        for i, row in enumerate(rows):
            parts[row] = part.take(i, i + 1)
    return Selection.concat(parts)


def _select_views(x, scores_given, requested, clamped, phi_ref_used, *, reserved, policy, groups, lam, grouping, centering, dynamic, seed, order, solver) -> Selection:
    """The stages on views whose every token is selectable (``requested`` and ``clamped``
    are host tensors: budgets, K and lambda are decided without reading the device)."""
    batch, num_tokens, _ = x.shape
    device = x.device
    xn = F.normalize(x, dim=-1)
    rho = _redundancy(xn)
    phi = 1.0 - rho

    effective = [policy.effective_budget(int(n), num_tokens) for n in requested.tolist()]
    budgets = torch.tensor(effective, dtype=torch.long, device=device)
    group_counts = [min(groups if groups is not None else policy.num_groups(n, num_tokens), num_tokens) for n in effective]
    num_groups = torch.tensor(group_counts, dtype=torch.long, device=device)
    lams = torch.tensor(
        [lam if lam is not None else policy.lam(n, num_tokens) for n in effective], dtype=torch.float32, device=device
    )
    tau = lams * (rho if policy.threshold_of == "rho" else _upper_triangle_mean(xn))

    group_of, grouping_scores = GROUPINGS[grouping](x, num_groups, centering=centering, solver=solver, seed=seed)
    scores = scores_given if scores_given is not None else grouping_scores
    k_max = max(group_counts)

    rank = _importance_rank(scores)
    survivor_rank = _intra_group_nms(xn, group_of, scores, rank, tau, k_max)
    survivors = survivor_rank >= 0
    position = _position_in_group_ranking(group_of, survivor_rank, rank)

    sizes = _count_per_group(group_of, torch.ones_like(survivors), k_max)
    survivor_counts = _count_per_group(group_of, survivors, k_max)
    caps = torch.tensor([policy.group_cap(n) for n in effective], device=device)
    to_keep = (budgets - reserved).clamp(max=num_tokens)
    quotas = _quotas(sizes, survivor_counts, budgets, to_keep, caps, most_tokens=num_tokens)

    keep_all = budgets - reserved >= num_tokens
    quotas = torch.where(keep_all[:, None], sizes, quotas)
    indices = _kept_indices(group_of, position, quotas, keep_all, order)
    if order == "reference" and policy.spatial_above is not None:
        indices = [index.sort().values if index.numel() > policy.spatial_above else index for index in indices]

    return Selection(
        indices=indices,
        valid=torch.ones(batch, num_tokens, dtype=torch.bool, device=device),
        budget=budgets,
        reserved=reserved,
        groups=group_of,
        scores=scores,
        survivors=survivors,
        survivor_rank=survivor_rank,
        quotas=quotas,
        num_groups=num_groups,
        rho=rho,
        phi=phi,
        lam=lams,
        tau=tau,
        requested_budget=requested.to(device),
        budget_clamped=clamped.to(device),
        grouping=grouping,
        centering=centering,
        dynamic=dynamic,
        phi_ref=phi_ref_used,
        order=order,
        solver=solver,
        preset=policy.name,
    )


# --- validation ------------------------------------------------------------------------


def _validated_inputs(tokens, importance, valid):
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


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validated_budgets(budget, batch: int, reserved) -> torch.Tensor:
    """[B] long budgets from one int or one per view."""
    if isinstance(budget, torch.Tensor):
        if budget.dim() == 0 or budget.is_floating_point() or budget.dtype == torch.bool:
            raise ValueError(f"budget must be a positive integer or one integer per view, got {budget!r}")
        budget = budget.tolist()
    if isinstance(budget, (list, tuple)):
        if len(budget) != batch:
            raise ValueError(f"budget must hold one value per view: got {len(budget)} values for {batch} views")
        for value in budget:
            if not _is_int(value) or value <= 0:
                raise ValueError(f"budget must hold positive integers, got {value!r} in {list(budget)}")
        return torch.tensor(list(budget), dtype=torch.long)
    if not _is_int(budget) or budget <= 0:
        raise ValueError(f"budget must be a positive integer, got {budget!r}")
    return torch.full((batch,), budget, dtype=torch.long)


def validate_settings(
    *, budget, reserved=0, groups=None, lam=None, grouping="psca", centering="token", dynamic=False,
    phi_ref=None, seed=0, order="reference", solver="exact", preset="llava",
):
    """Check select()'s settings, naming the parameter, the value and what is allowed.
    ``budget`` is one int or a list of them."""
    budgets = budget if isinstance(budget, (list, tuple)) else [budget]
    for value in budgets:
        if not _is_int(value) or value <= 0:
            raise ValueError(f"budget must be a positive integer, got {value!r}")
    if not _is_int(reserved) or reserved < 0:
        raise ValueError(f"reserved must be a non-negative integer, got {reserved!r}")
    if reserved >= min(budgets):
        raise ValueError(f"reserved must be smaller than budget ({min(budgets)}), got reserved={reserved}")
    if groups is not None and (not _is_int(groups) or groups < 1):
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
    if not _is_int(seed):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if phi_ref is not None and (isinstance(phi_ref, bool) or not isinstance(phi_ref, (int, float)) or not math.isfinite(phi_ref) or phi_ref <= 0):
        raise ValueError(f"phi_ref must be a positive finite number or None, got {phi_ref!r}")


def _masked_redundancy(xn: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """rho where excluded tokens' rows of ``xn`` are zero and ``counts`` [B] tokens remain."""
    total = xn.sum(dim=1).double().square().sum(dim=-1)
    diagonal = xn.square().sum(dim=-1).sum(dim=-1).double()
    pairs = (counts.double() * (counts.double() - 1)).clamp(min=1)
    return torch.where(counts >= 2, (total - diagonal) / pairs, 0.0).float()


def _upper_triangle_mean(xn: torch.Tensor) -> torch.Tensor:
    """sum_{i <= j} S_ij / T^2 (the Qwen2-VL variant's tau basis), without forming S:
    the diagonal counts once, each off-diagonal pair once, so (|sum xn|^2 + sum |xn_i|^2) / 2."""
    num_tokens = xn.shape[1]
    total = xn.sum(dim=1).double().square().sum(dim=-1)
    diagonal = xn.square().sum(dim=-1).sum(dim=-1).double()
    return ((total + diagonal) / 2 / (num_tokens * num_tokens)).float()


# --- stage 1: redundancy -------------------------------------------------------------


def _redundancy(xn: torch.Tensor) -> torch.Tensor:
    """rho: mean cosine similarity over pairs i < j, without forming the T x T matrix.

    sum_{i,j} S_ij = |sum_i xn_i|^2, and S is symmetric, so the off-diagonal mean is
    (|sum xn|^2 - sum |xn_i|^2) / (T (T - 1)). O(T D) instead of O(T^2 D).
    """
    num_tokens = xn.shape[1]
    if num_tokens < 2:
        return torch.zeros(xn.shape[0], dtype=torch.float32, device=xn.device)
    total = xn.sum(dim=1).double().square().sum(dim=-1)
    diagonal = torch.linalg.vector_norm(xn.flatten(1), dim=1).double().square()  # sum |xn_i|^2, no copy
    return ((total - diagonal) / (num_tokens * (num_tokens - 1))).float()


# --- stage 2: dynamic budget ------------------------------------------------------------


def _dynamic_budgets(budgets, phi, phi_ref, reserved, selectable):
    """N'_b = N_b * phi_b / phi_ref, clamped to [N_b / 2, 2 N_b] and to the view's
    selectable tokens, rounded by largest remainder.

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
    high = torch.minimum(torch.floor(weights * presets.DYNAMIC_MAX_FRACTION), (selectable + reserved).double())
    high = torch.maximum(high, low)
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


# --- stage 3: intra-group NMS -------------------------------------------------------------


def _waits_are_free(device: torch.device) -> bool:
    """Whether reading a result back to Python costs nothing (the CPU) or waits for the
    device (a GPU): there, no loop below reads anything back."""
    return device.type == "cpu"


def _importance_rank(scores: torch.Tensor) -> torch.Tensor:
    """[B, T] rank of each token by importance (descending, ties to the lower index)."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return rank


def _intra_group_nms(xn, group_of, scores, rank, tau, num_groups=None):
    """Greedy NMS inside every group, all groups and images at once.

    Greedy NMS (take the most important remaining token of the group, discard the rest of
    the group more similar to it than tau, repeat) keeps token j exactly when no *kept*
    token of its group that is more important has similarity > tau with it. That rule is
    resolved by propagation on the conflict graph instead of step by step (see
    _resolve_greedy_nms), and only similarities inside groups are computed.

    Returns [B, T] long: each survivor's place among its group's survivors (the order the
    greedy NMS takes them), -1 for discarded tokens. Zero-importance tokens are never taken.
    """
    num_tokens = group_of.shape[1]
    takeable = scores > 0
    # The shortcut needs tau read back; on a GPU the rounds below find the same survivors
    # (no conflicts, one round) without that wait.
    if _waits_are_free(xn.device) and bool((tau > _NO_SUPPRESSION_TAU).all()):
        kept = takeable  # no similarity can exceed tau: nothing is discarded
    else:
        kept = _greedy_nms_survivors(xn, group_of, rank, takeable, tau, num_groups)
    within = _rank_within_groups(group_of, torch.where(kept, rank, rank + num_tokens))
    return torch.where(kept, within, torch.full_like(within, -1))


def _block_lengths(longest: int, device) -> torch.Tensor:
    """Padded lengths of NMS blocks: 0, 16, 32, 48, 64, then powers of two and one and a
    half times them (96, 128, 192, 256, ...) up to ``longest``: few lengths, little padding."""
    lengths = [0, 16, 32, 48, 64]
    while lengths[-1] < longest:
        last = lengths[-1]
        lengths.append(last * 3 // 2 if last & (last - 1) == 0 else last * 4 // 3)
    return torch.tensor(lengths, device=device)


def _greedy_nms_survivors(xn, group_of, rank, takeable, tau, num_groups=None):
    """[B, T] bool survivors. Every group of every view is a block of its tokens in
    importance order, padded to one of a few lengths (_block_lengths); blocks of the same
    length are resolved together, so similarities are computed only inside groups (the sum
    of the padded n_g^2 per view, never a T x T matrix)."""
    batch, num_tokens, width = xn.shape
    device = xn.device
    if num_groups is None:  # (K, when the caller has not said: one read from the device)
        num_groups = int(group_of.max()) + 1
    sizes = torch.zeros(batch, num_groups, dtype=torch.long, device=device)
    sizes.scatter_add_(1, group_of, torch.ones_like(group_of))
    ladder = _block_lengths(num_tokens, device)
    padded = ladder[torch.searchsorted(ladder, sizes)]
    # Number the blocks of each padded length (on the host: B x K small integers).
    lengths: dict[int, int] = {}
    ordinal = []
    for row in padded.tolist():
        ordinal.append([])
        for length in row:
            ordinal[-1].append(lengths.get(length, 0))
            lengths[length] = lengths.get(length, 0) + 1
    token_length = padded.gather(1, group_of)
    token_slot = torch.tensor(ordinal, device=device).gather(1, group_of) * token_length
    token_slot = (token_slot + _rank_within_groups(group_of, rank)).flatten()
    token_length = token_length.flatten()
    spare = batch * num_tokens  # stands for an empty slot: untakeable, and kept nowhere
    tokens = torch.arange(spare, device=device)
    features = xn.reshape(spare, width)
    takeable_flat = torch.cat([takeable.flatten(), takeable.new_zeros(1)])
    image_tau = tau.repeat_interleave(num_tokens)

    classes = []
    for length, count in sorted(lengths.items()):
        if length == 0:
            continue
        slots = count * length
        slot = torch.where(token_length == length, token_slot, slots)  # other tokens: one extra slot
        members = torch.full((slots + 1,), spare, dtype=torch.long, device=device)
        members = members.scatter(0, slot, tokens)[:slots]
        block = features.index_select(0, members.clamp(max=spare - 1)).view(count, length, width)
        similarity = torch.bmm(block, block.transpose(1, 2))
        block_takeable = takeable_flat[members].view(count, length)
        block_tau = image_tau[members.view(count, length)[:, 0]]  # slot 0: the group's leader
        order = torch.arange(length, device=device)
        earlier = order[:, None] < order[None, :]  # (bool triu is a slow path on CPU)
        conflicts = (similarity > block_tau[:, None, None]) & earlier & block_takeable[:, :, None]
        classes.append((members, conflicts.float(), block_takeable))
    classes = _merge_classes(classes, spare, batch * num_tokens * num_tokens)

    if _waits_are_free(device):
        resolved = [_resolve_greedy_nms(conflicts, block_takeable) for _, conflicts, block_takeable in classes]
    else:  # one wait for the device, for the round counts of all classes
        bounds = torch.stack([_nms_round_bound(c, t) for _, c, t in classes]).tolist()
        resolved = [_greedy_nms_rounds(c, t, bound) for (_, c, t), bound in zip(classes, bounds)]
    kept = torch.zeros(spare + 1, dtype=torch.bool, device=device)
    for (members, _, _), block_kept in zip(classes, resolved):
        kept = kept.scatter(0, members, block_kept.flatten())
    return kept[:spare].view(batch, num_tokens)


def _merge_classes(classes, spare: int, budget: int):
    """Blocks of neighbouring lengths padded to the longest of them and stacked, so that one
    loop of rounds resolves them together: all of them when that takes at most ``budget``
    entries, else classes (ascending lengths) join a stack while its padded size stays
    within twice the size of its parts (so memory at most doubles)."""
    stacks, current = [], []

    def size(parts, length):
        return sum(c.shape[0] for _, c, _ in parts) * length * length

    if not classes or size(classes, classes[-1][1].shape[-1]) <= budget:
        if len(classes) < 2:
            return classes
        return [classes[0] if len(classes) == 1 else _stack_blocks(classes, spare)]
    for part in classes:
        length = part[1].shape[-1]
        joined = current + [part]
        if current and size(joined, length) > 2 * sum(c.numel() for _, c, _ in joined):
            stacks.append(current)
            joined = [part]
        current = joined
    stacks.append(current)
    return [parts[0] if len(parts) == 1 else _stack_blocks(parts, spare) for parts in stacks]


def _stack_blocks(parts, spare: int):
    longest = parts[-1][1].shape[-1]
    count = sum(c.shape[0] for _, c, _ in parts)
    members = parts[0][0].new_full((count, longest), spare)
    conflicts = parts[0][1].new_zeros(count, longest, longest)
    takeable = parts[0][2].new_zeros(count, longest)
    start = 0
    for part_members, part_conflicts, part_takeable in parts:
        blocks, length = part_takeable.shape
        members[start : start + blocks, :length] = part_members.view(blocks, length)
        conflicts[start : start + blocks, :length, :length] = part_conflicts
        takeable[start : start + blocks, :length] = part_takeable
        start += blocks
    return members.flatten(), conflicts, takeable


def _resolve_greedy_nms(conflicts: torch.Tensor, takeable: torch.Tensor) -> torch.Tensor:
    """Survivors of greedy NMS given conflicts[b, i, j] = 1 where i precedes j and would
    discard it. Tokens are decided in rounds; undecided tokens always remain at the head of
    some chain, so each round decides at least one token.

    On the CPU the rounds stop as soon as every token is decided. Elsewhere (a GPU) they run
    a number of times fixed before the loop, so that the loop never waits for the device:
    a token is decided by the round after its longest chain of possible discarders, and
    such a chain only passes through tokens that something can discard."""
    if _waits_are_free(conflicts.device):
        return _greedy_nms_rounds(conflicts, takeable, None)
    return _greedy_nms_rounds(conflicts, takeable, int(_nms_round_bound(conflicts, takeable)))


def _nms_round_bound(conflicts: torch.Tensor, takeable: torch.Tensor) -> torch.Tensor:
    """Rounds that decide every token (a 0-dim tensor, read back by the caller): one more
    than the longest chain of possible discarders, which passes only through tokens that
    something can discard."""
    can_be_discarded = (conflicts.amax(dim=1) > 0) & takeable
    return can_be_discarded.sum(1).max() + 1


def _greedy_nms_rounds(conflicts: torch.Tensor, takeable: torch.Tensor, rounds: int | None) -> torch.Tensor:
    """The rounds of :func:`_resolve_greedy_nms`: until all are decided (``rounds=None``) or
    exactly ``rounds`` times (enough when it bounds the longest chain, plus one)."""
    kept = torch.zeros_like(takeable)
    undecided = takeable.clone()
    into = conflicts.transpose(1, 2)  # into[b, j, i]: i can discard j
    state = torch.empty(*takeable.shape, 2, dtype=conflicts.dtype, device=conflicts.device)
    done = 0
    while (rounds is None and bool(undecided.any())) or (rounds is not None and done < rounds):
        state[..., 0] = kept
        state[..., 1] = undecided
        votes = torch.bmm(into, state)  # [..., 0]: kept discarders, [..., 1]: undecided ones
        free = undecided & (votes[..., 0] == 0)  # the others are discarded
        kept |= free & (votes[..., 1] == 0)
        undecided = free & (votes[..., 1] > 0)
        done += 1
    return kept


def _rank_within_groups(group_of: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
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


def _position_in_group_ranking(group_of, survivor_rank, rank):
    """Each token's place in its group's ranking: survivors in the order taken, then the
    discarded tokens by importance."""
    num_tokens = group_of.shape[1]
    key = torch.where(survivor_rank >= 0, survivor_rank, num_tokens + rank)
    return _rank_within_groups(group_of, key)


# --- stage 4: quotas ------------------------------------------------------------------------


def _count_per_group(group_of, mask, k_max):
    counts = torch.zeros(group_of.shape[0], k_max, dtype=torch.long, device=group_of.device)
    return counts.scatter_add_(1, group_of, mask.long())


def _quotas(sizes, survivor_counts, budgets, to_keep, caps, most_tokens=None):
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


# --- stage 5: output order -------------------------------------------------------------------


def _kept_indices(group_of, position, quotas, keep_all, order):
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
