"""select() and Selection: PruneSID on tensors, stage by stage (see SPEC.md).

Stages: redundancy (rho, phi) -> budget (fixed or dynamic) -> grouping -> intra-group NMS
-> per-group quotas -> kept indices in reference order.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from prunesid import defaults
from prunesid.grouping import GROUPINGS
from prunesid.psca import CENTERINGS, SOLVERS

__all__ = ["Selection", "select", "redundancy", "ORDERS"]

ORDERS = ("reference", "spatial")
# Above this threshold no cosine similarity (at most 1 plus float32 rounding) can exceed
# tau, so NMS cannot suppress anything and is skipped.
_NO_SUPPRESSION_TAU = 1.001


@dataclass
class Selection:
    """Everything PruneSID decided for a batch of B images (or tiles) of T patch tokens.

    Index space: patch indices 0..T-1 of the tokens handed to :func:`select` (a CLS token the
    caller passes through is *not* part of it; ``reserved`` counts it).
    """

    indices: list[torch.Tensor]  # per image: kept patch indices, in output order
    groups: torch.Tensor  # [B, T] long: group of every patch
    scores: torch.Tensor  # [B, T] float32: importance that ordered the NMS
    survivors: torch.Tensor  # [B, T] bool: taken by the intra-group NMS
    survivor_rank: torch.Tensor  # [B, T] long: order taken within its group, -1 if suppressed
    quotas: torch.Tensor  # [B, K_max] long: patches kept per group (zero-padded)
    num_groups: torch.Tensor  # [B] long: K of each image
    rho: torch.Tensor  # [B] float32: mean pairwise cosine similarity (redundancy)
    phi: torch.Tensor  # [B] float32: 1 - rho (information)
    lam: torch.Tensor  # [B] float32: lambda used
    tau: torch.Tensor  # [B] float32: NMS threshold lambda * rho
    budget: torch.Tensor  # [B] long: total budget of each image (N, or N' when dynamic)
    budget_clamped: torch.Tensor  # [B] bool: the dynamic budget hit its clamp
    reserved: int
    grouping: str
    centering: str
    dynamic: bool
    phi_ref: float | None  # the phi_ref actually used (dynamic only)
    order: str = "reference"
    solver: str = "exact"

    @property
    def num_images(self) -> int:
        return self.groups.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.groups.shape[1]

    @property
    def kept(self) -> torch.Tensor:
        """[B, T] bool mask of kept patches."""
        mask = torch.zeros_like(self.survivors)
        for b, idx in enumerate(self.indices):
            mask[b, idx] = True
        return mask

    def take(self, start: int, stop: int) -> "Selection":
        """The selection of images (or views) ``start..stop-1`` of the batch, as a Selection."""
        if not 0 <= start < stop <= self.num_images:
            raise ValueError(f"take({start}, {stop}) is outside the batch of {self.num_images}")
        per_image = {
            f.name: getattr(self, f.name)[start:stop]
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), (torch.Tensor, list))
        }
        return dataclasses.replace(self, **per_image)

    def embed(self, positions: torch.Tensor, num_tokens: int) -> "Selection":
        """This selection, made on a subset of each image's tokens, in the full index space.

        ``positions[b, i]`` is the full index of subset token ``i`` of image ``b`` (``[B, T']``,
        ascending). Tokens outside the subset get group -1, score 0 and no survivor rank:
        they took no part (e.g. LLaVA-NeXT letterbox padding).
        """
        positions = positions.to(self.groups.device)
        if positions.shape != self.groups.shape:
            raise ValueError(f"positions must be {tuple(self.groups.shape)}, got {tuple(positions.shape)}")

        def spread(values: torch.Tensor, fill) -> torch.Tensor:
            full = torch.full((values.shape[0], num_tokens), fill, dtype=values.dtype, device=values.device)
            return full.scatter(1, positions, values)

        return dataclasses.replace(
            self,
            indices=[row[index] for row, index in zip(positions, self.indices)],
            groups=spread(self.groups, -1),
            scores=spread(self.scores, 0),
            survivors=spread(self.survivors, False),
            survivor_rank=spread(self.survivor_rank, -1),
        )

    @staticmethod
    def concat(selections: list["Selection"]) -> "Selection":
        """Several selections (same settings and token count) as one batch, in order."""
        if not selections:
            raise ValueError("concat needs at least one selection")
        first = selections[0]
        k_max = max(selection.quotas.shape[1] for selection in selections)
        merged = {}
        for f in dataclasses.fields(first):
            values = [getattr(selection, f.name) for selection in selections]
            if f.name == "quotas":
                merged[f.name] = torch.cat([F.pad(q, (0, k_max - q.shape[1])) for q in values])
            elif isinstance(values[0], torch.Tensor):
                merged[f.name] = torch.cat(values)
            elif isinstance(values[0], list):
                merged[f.name] = [item for value in values for item in value]
        return dataclasses.replace(first, **merged)

    def to_dict(self, image: int = 0) -> dict[str, Any]:
        """JSON-friendly summary of one image's selection."""
        k = int(self.num_groups[image])
        return {
            "tokens": self.num_tokens,
            "budget": int(self.budget[image]),
            "budget_clamped": bool(self.budget_clamped[image]),
            "reserved": self.reserved,
            "kept": self.indices[image].tolist(),
            "num_kept": int(self.indices[image].numel()),
            "num_groups": k,
            "groups": self.groups[image].tolist(),
            "quotas": self.quotas[image, :k].tolist(),
            "survivors": int(self.survivors[image].sum()),
            "rho": float(self.rho[image]),
            "phi": float(self.phi[image]),
            "lam": float(self.lam[image]),
            "tau": float(self.tau[image]),
            "phi_ref": self.phi_ref,
            "grouping": self.grouping,
            "centering": self.centering,
            "dynamic": self.dynamic,
            "order": self.order,
            "solver": self.solver,
        }


def redundancy(tokens: torch.Tensor) -> torch.Tensor:
    """rho of each image of ``[B, T, D]`` tokens (mean pairwise cosine similarity); phi = 1 - rho."""
    return _redundancy(F.normalize(tokens.float(), dim=-1))


def select(
    tokens: torch.Tensor,
    budget: int,
    *,
    importance: torch.Tensor | None = None,
    reserved: int = 0,
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
    """Choose which patch tokens to keep with PruneSID (SPEC.md).

    Args:
        tokens: ``[T, D]`` or ``[B, T, D]`` patch tokens of each image (or tile), any float
            dtype and device; the decisions are computed in float32.
        budget: total visual tokens the LLM receives per image, ``reserved`` included; so
            ``budget - reserved`` patches are kept (all of them, in order, if that is >= T).
        importance: ``[T]`` or ``[B, T]`` non-negative saliency (CLS attention summed over
            heads for CLIP towers). ``None``: the grouping's own score (see grouping.py).
            A patch of importance exactly 0 never leads an NMS step.
        reserved: tokens the caller passes through untouched (1 for LLaVA's CLS).
        groups: K, the number of groups; default ``budget // 4`` (defaults.py).
        lam: lambda of the NMS threshold tau = lambda * rho; default ``budget / 32``.
        grouping: ``"psca"`` (the method), ``"kmeans"`` or ``"random"`` (the paper's ablation).
        centering: PSCA centring, ``"token"`` (the authors' code, the reference) or
            ``"feature"`` (the formula of the paper's text).
        dynamic: PruneSID-Dyn: image b gets ``N'_b = N * phi_b / phi_ref`` tokens, rounded
            so the batch total is kept, clamped to [N/2, 2N] and to what the image holds.
            K and lambda default per image from N'_b.
        phi_ref: reference information score for ``dynamic``; ``None`` = the batch mean.
        seed: seed of the random / kmeans groupings and of the randomized PSCA solver.
        order: ``"reference"`` (group by group, each in rank order, as the authors' code) or
            ``"spatial"`` (kept indices sorted).
        solver: PSCA eigensolver, ``"exact"`` (the reference) or ``"randomized"`` (the
            authors' released low-rank PCA, seeded; faster, not exact; see psca.py).
    """
    x, scores_given = _validated_inputs(tokens, importance)
    batch, num_tokens, _ = x.shape
    validate_settings(budget, reserved, groups, lam, grouping, centering, dynamic, phi_ref, seed, order, solver, num_tokens)
    device = x.device

    xn = F.normalize(x, dim=-1)
    rho = _redundancy(xn)
    phi = 1.0 - rho

    if dynamic:
        budgets, clamped, phi_ref_used = _dynamic_budgets(budget, phi, phi_ref, reserved, num_tokens)
    else:
        budgets = torch.full((batch,), budget, dtype=torch.long, device=device)
        clamped = torch.zeros(batch, dtype=torch.bool, device=device)
        phi_ref_used = None

    num_groups = torch.tensor(
        [min(groups if groups is not None else defaults.default_groups(int(n)), num_tokens) for n in budgets.tolist()],
        dtype=torch.long,
        device=device,
    )
    lams = torch.tensor(
        [lam if lam is not None else defaults.default_lam(int(n)) for n in budgets.tolist()],
        dtype=torch.float32,
        device=device,
    )
    tau = lams * rho

    group_of, grouping_scores = GROUPINGS[grouping](x, num_groups, centering=centering, solver=solver, seed=seed)
    scores = scores_given if scores_given is not None else grouping_scores
    k_max = int(num_groups.max())

    rank = _importance_rank(scores)
    survivor_rank = _intra_group_nms(xn, group_of, scores, rank, tau)
    survivors = survivor_rank >= 0
    position = _position_in_group_ranking(group_of, survivor_rank, rank)

    sizes = _count_per_group(group_of, torch.ones_like(survivors), k_max)
    survivor_counts = _count_per_group(group_of, survivors, k_max)
    caps = torch.tensor([defaults.group_cap(int(n)) for n in budgets.tolist()], device=device)
    to_keep = (budgets - reserved).clamp(max=num_tokens)
    quotas = _quotas(sizes, survivor_counts, budgets, to_keep, caps)

    keep_all = budgets - reserved >= num_tokens
    quotas = torch.where(keep_all[:, None], sizes, quotas)
    indices = _kept_indices(group_of, position, quotas, keep_all, order)

    return Selection(
        indices=indices,
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
        budget=budgets,
        budget_clamped=clamped,
        reserved=reserved,
        grouping=grouping,
        centering=centering,
        dynamic=dynamic,
        phi_ref=phi_ref_used,
        order=order,
        solver=solver,
    )


# --- validation ------------------------------------------------------------------------


def _validated_inputs(tokens, importance):
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a torch.Tensor of shape [T, D] or [B, T, D], got {type(tokens).__name__}")
    if not tokens.is_floating_point():
        raise TypeError(f"tokens must be a floating-point tensor, got dtype {tokens.dtype}")
    if tokens.dim() not in (2, 3):
        raise ValueError(f"tokens must have shape [T, D] or [B, T, D], got shape {tuple(tokens.shape)}")
    single = tokens.dim() == 2
    x = tokens[None] if single else tokens  # a single image is a batch of one
    if x.numel() == 0:
        raise ValueError(f"tokens must not be empty, got shape {tuple(tokens.shape)}")
    x = x.float()
    if not torch.isfinite(x.abs().amax()):  # amax propagates NaN; one pass, no mask
        raise ValueError("tokens contain NaN or inf values; all token features must be finite")
    if importance is None:
        return x, None
    if not isinstance(importance, torch.Tensor):
        raise TypeError(f"importance must be a torch.Tensor or None, got {type(importance).__name__}")
    expected = tuple(x.shape[1:2]) if single else tuple(x.shape[:2])
    if tuple(importance.shape) != expected:
        raise ValueError(
            f"importance must have shape {list(expected)} (one value per token), got shape {list(importance.shape)}"
        )
    scores = importance.reshape(x.shape[:2]).to(device=x.device, dtype=torch.float32)
    if not torch.isfinite(scores.abs().amax()):
        raise ValueError("importance contains NaN or inf values; it must be finite")
    if (scores < 0).any():
        raise ValueError(f"importance must be non-negative, got a minimum of {float(scores.min()):.4g}")
    return x, scores


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_settings(budget, reserved, groups, lam, grouping, centering, dynamic, phi_ref, seed, order, solver, num_tokens=None):
    """Check select()'s settings; ``num_tokens=None`` (no tokens yet) skips the groups <= T check."""
    if not _is_int(budget) or budget <= 0:
        raise ValueError(f"budget must be a positive integer, got {budget!r}")
    if not _is_int(reserved) or reserved < 0:
        raise ValueError(f"reserved must be a non-negative integer, got {reserved!r}")
    if reserved >= budget:
        raise ValueError(f"reserved must be smaller than budget ({budget}), got reserved={reserved}")
    if groups is not None and (not _is_int(groups) or groups < 1 or (num_tokens is not None and groups > num_tokens)):
        allowed = f"in [1, T={num_tokens}]" if num_tokens is not None else ">= 1"
        raise ValueError(f"groups must be an integer {allowed} or None, got {groups!r}")
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
    if not isinstance(dynamic, bool):
        raise TypeError(f"dynamic must be True or False, got {dynamic!r}")
    if not _is_int(seed):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if phi_ref is not None and (isinstance(phi_ref, bool) or not isinstance(phi_ref, (int, float)) or not math.isfinite(phi_ref) or phi_ref <= 0):
        raise ValueError(f"phi_ref must be a positive finite number or None, got {phi_ref!r}")


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
    diagonal = xn.square().sum(dim=-1).sum(dim=-1).double()
    return ((total - diagonal) / (num_tokens * (num_tokens - 1))).float()


# --- stage 2: dynamic budget ------------------------------------------------------------


def _dynamic_budgets(budget, phi, phi_ref, reserved, num_tokens):
    """N'_b = N * phi_b / phi_ref, rounded by largest remainder so that the batch total is
    exactly B * N when phi_ref is the batch mean, then clamped."""
    reference = float(phi.mean()) if phi_ref is None else float(phi_ref)
    if reference <= 0:
        raise ValueError(f"phi_ref must be positive; the batch mean phi is {reference:.4g} (tokens are all alike)")
    raw = budget * phi.double() / reference
    floor = raw.floor()
    shortfall = int(round(float(raw.sum() - floor.sum())))
    order = torch.sort(raw - floor, descending=True, stable=True).indices
    rounded = floor.clone()
    rounded[order[:shortfall]] += 1
    low = max(reserved + 1, math.ceil(budget * defaults.DYNAMIC_MIN_FRACTION))
    high = max(low, min(math.floor(budget * defaults.DYNAMIC_MAX_FRACTION), num_tokens + reserved))
    budgets = rounded.clamp(low, high).long()
    return budgets, budgets != rounded.long(), reference


# --- stage 3: intra-group NMS -------------------------------------------------------------


def _importance_rank(scores: torch.Tensor) -> torch.Tensor:
    """[B, T] rank of each token by importance (descending, ties to the lower index)."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return rank


def _intra_group_nms(xn, group_of, scores, rank, tau):
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
    if bool((tau > _NO_SUPPRESSION_TAU).all()):
        kept = takeable  # no similarity can exceed tau: nothing is discarded
    else:
        kept = _greedy_nms_survivors(xn, group_of, rank, takeable, tau)
    within = _rank_within_groups(group_of, torch.where(kept, rank, rank + num_tokens))
    return torch.where(kept, within, torch.full_like(within, -1))


def _greedy_nms_survivors(xn, group_of, rank, takeable, tau):
    """[B, T] bool survivors. Tokens are laid out in blocks, each in importance order: one
    block per group when the padded blocks are small (similarities only within groups),
    else one block per image holding every token (one T x T similarity matrix)."""
    batch, num_tokens, width = xn.shape
    sizes = torch.zeros(batch, int(group_of.max()) + 1, dtype=torch.long, device=xn.device)
    sizes.scatter_add_(1, group_of, torch.ones_like(group_of))
    longest = int(sizes.max())
    if sizes.shape[1] * longest * longest * 2 <= num_tokens * num_tokens:
        block_of, block_len = group_of, longest
    else:
        block_of, block_len = torch.zeros_like(group_of), num_tokens
    num_blocks = int(block_of.max()) + 1
    slot = block_of * block_len + _rank_within_groups(block_of, rank)  # [B, T]
    members = torch.zeros(batch, num_blocks * block_len, dtype=torch.long, device=xn.device)
    members.scatter_(1, slot, torch.arange(num_tokens, device=xn.device).expand(batch, num_tokens))
    occupied = torch.zeros_like(members, dtype=torch.bool).scatter_(1, slot, True)

    def blocks(values):
        return values.gather(1, members).view(batch * num_blocks, block_len)

    features = xn.gather(1, members[..., None].expand(-1, -1, width)).view(batch * num_blocks, block_len, width)
    similarity = torch.bmm(features, features.transpose(1, 2))
    block_groups, block_takeable = blocks(group_of), blocks(takeable) & occupied.view(-1, block_len)
    block_tau = tau.repeat_interleave(num_blocks)[:, None, None]
    order = torch.arange(block_len, device=xn.device)
    earlier = order[:, None] < order[None, :]  # (bool triu is a slow path on CPU)
    conflicts = (
        (similarity > block_tau)
        & earlier
        & (block_groups[:, :, None] == block_groups[:, None, :])
        & block_takeable[:, :, None]
    )
    block_kept = _resolve_greedy_nms(conflicts.float(), block_takeable)
    return block_kept.view(batch, -1).gather(1, slot)


def _resolve_greedy_nms(conflicts: torch.Tensor, takeable: torch.Tensor) -> torch.Tensor:
    """Survivors of greedy NMS given conflicts[b, i, j] = 1 where i precedes j and would
    discard it. Tokens are decided in rounds; undecided tokens always remain at the head of
    some chain, so each round decides at least one token."""
    kept = torch.zeros_like(takeable)
    undecided = takeable.clone()
    into = conflicts.transpose(1, 2)  # into[b, j, i]: i can discard j
    while bool(undecided.any()):
        votes = torch.bmm(into, torch.stack([kept, undecided], dim=-1).float())
        discarded = undecided & (votes[..., 0] > 0)
        newly_kept = undecided & (votes[..., 1] == 0) & ~discarded
        kept |= newly_kept
        undecided &= ~(discarded | newly_kept)
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


def _quotas(sizes, survivor_counts, budgets, to_keep, caps):
    """Tokens kept per group (SPEC.md section 4), vectorised over images.

    Beyond the reference: when there are more non-empty groups than tokens to keep, only
    the groups with the most survivors get their guaranteed token (the reference would
    overshoot the budget), and the top-up stops at the number of tokens there are.
    """
    lower = sizes.clamp(max=1)
    lower = torch.where(lower.sum(1, keepdim=True) > to_keep[:, None], _first_by_survivors(survivor_counts, lower, to_keep), lower)
    upper = torch.minimum(torch.minimum(caps[:, None].expand_as(sizes), sizes), survivor_counts)
    # Raise every group's ceiling by one until the ceilings can hold the total budget N.
    target_ceiling = budgets.clamp(max=int(sizes.sum(1).max()))
    while True:
        short = upper.sum(1) < torch.minimum(target_ceiling, sizes.sum(1))
        if not bool(short.any()):
            break
        upper = torch.where(short[:, None], torch.minimum(upper + 1, sizes), upper)

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
    batch, num_tokens = group_of.shape
    kept = position < quotas.gather(1, group_of)
    # Reference order: group by group, each in ranking order.
    sort_key = group_of * num_tokens + position
    indices = []
    for b in range(batch):
        if bool(keep_all[b]) or order == "spatial":
            chosen = torch.arange(num_tokens, device=group_of.device) if keep_all[b] else kept[b].nonzero().squeeze(1)
        else:
            candidates = kept[b].nonzero().squeeze(1)
            chosen = candidates[torch.argsort(sort_key[b, candidates])]
        indices.append(chosen)
    return indices
