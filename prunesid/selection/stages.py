"""select(): PruneSID on tensors, its stages run in order (docs/SPEC.md).

Stages: redundancy (rho, phi) -> budget (fixed or dynamic, then the preset's N_eff) ->
grouping -> intra-group NMS -> per-group quotas -> kept indices in the preset's order.

``select`` works on a batch of B *views* (images, LLaVA-NeXT tiles or video frames) of T
tokens each; ``valid`` excludes tokens per view (ragged views) and ``budget`` may differ per
view. Presets (presets.py) derive K, lambda and the kept count from (N, T).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prunesid import presets
from prunesid.grouping import GROUPINGS
from prunesid.presets import DEFAULTS
from prunesid.selection.dynamic import dynamic_budgets
from prunesid.selection.nms import intra_group_nms
from prunesid.selection.order import kept_indices, preset_order
from prunesid.selection.quotas import count_per_group, group_quotas
from prunesid.selection.ranking import importance_rank, position_in_group_ranking
from prunesid.selection.redundancy import masked_mean_pairwise_similarity, mean_pairwise_similarity, upper_triangle_mean
from prunesid.selection.result import Selection
from prunesid.selection.validate import validate_settings, validated_budgets, validated_inputs


def select(
    tokens: torch.Tensor,
    budget,
    *,
    importance: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    reserved: int = 0,
    reserved_fed: bool = True,
    preset: str = DEFAULTS.preset,
    groups: int | None = DEFAULTS.groups,
    lam: float | None = DEFAULTS.lam,
    grouping: str = DEFAULTS.grouping,
    centering: str = DEFAULTS.centering,
    dynamic: bool = DEFAULTS.dynamic,
    phi_ref: float | None = DEFAULTS.phi_ref,
    seed: int = DEFAULTS.seed,
    order: str = DEFAULTS.order,
    solver: str = DEFAULTS.solver,
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
        reserved_fed: whether the unmodified model feeds the reserved tokens too (LLaVA-1.5
            feeds no CLS: False). Where it does not, a view's dynamic budget stops at its
            selectable count, so that no view gets more tokens than the unmodified model.
        preset: ``"llava"`` (the reference) or ``"qwen2-vl"`` (SPEC section 9): the policy
            that derives N_eff, K, lambda, the group cap, tau's basis and the order.
        groups: K, the number of groups; default from the preset (``N // 4``). Clamped to the
            number of selectable tokens of each view.
        lam: lambda of the NMS threshold tau = lambda * rho; default from the preset (``N / 32``).
        grouping: ``"psca"`` (the method), ``"kmeans"`` or ``"random"`` (the paper's ablation).
        centering: PSCA centring, ``"token"`` (the authors' code, the reference) or
            ``"feature"`` (the formula of the paper's text).
        dynamic: PruneSID-Dyn: view b gets ``N'_b = N_b * phi_b / phi_ref`` tokens, clamped to
            [N_b/2, 2 N_b] and to what the view holds, N_b in tokens kept (the preset's
            N_eff: for ``"qwen2-vl"`` the shares are of N_eff, not of N per 576 tokens).
            With ``phi_ref=None`` the batch total stays exactly sum(N_b) (e.g. frames x N
            for a video, groups x N_eff on Qwen-VL): what the clamp takes or gives is
            shared by the other views in proportion to phi. K and lambda default per view
            from N'_b.
        phi_ref: reference information score for ``dynamic``; ``None`` = the batch mean
            (weighted by the budgets when they differ).
        seed: seed of the random / kmeans groupings and of the randomized PSCA solver.
        order: ``"reference"`` (group by group, each in rank order, as the authors' code; the
            preset may switch to position order for large N) or ``"spatial"`` (sorted).
        solver: PSCA eigensolver, ``"exact"`` (the reference) or a faster one (see psca.py and linalg.py).
    """
    x, scores_given, valid = validated_inputs(tokens, importance, valid)
    batch, num_tokens, _ = x.shape
    budgets = validated_budgets(budget, batch)
    requested = budgets.tolist()
    validate_settings(
        budget=requested, reserved=reserved, groups=groups, lam=lam, grouping=grouping, centering=centering,
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
        # Shared in the preset's own unit, tokens kept (N_eff), never in N per 576 tokens:
        # the result is each view's kept count, read through no preset again.
        policy = settings["policy"]
        effective = torch.tensor([policy.effective_budget(int(n), count) for n, count in zip(requested, counts)])
        whole = torch.tensor([not policy.prunes(count) for count in counts])
        phi = 1.0 - masked_mean_pairwise_similarity(F.normalize(x, dim=-1) * valid[..., None], selectable)
        room = torch.tensor(counts) + (reserved if reserved_fed else 0)  # what the unmodified model feeds per view
        budgets, clamped, phi_ref_used = dynamic_budgets(effective, phi.cpu(), phi_ref, reserved, room, whole)
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
    rho = mean_pairwise_similarity(xn)
    phi = 1.0 - rho

    # A dynamic budget is already in tokens kept (select() applied the preset before sharing).
    effective = requested.tolist() if dynamic else [policy.effective_budget(int(n), num_tokens) for n in requested.tolist()]
    budgets = torch.tensor(effective, dtype=torch.long, device=device)
    group_counts = [min(groups if groups is not None else policy.num_groups(n, num_tokens), num_tokens) for n in effective]
    num_groups = torch.tensor(group_counts, dtype=torch.long, device=device)
    lams = torch.tensor(
        [lam if lam is not None else policy.lam(n, num_tokens) for n in effective], dtype=torch.float32, device=device
    )
    tau = lams * (rho if policy.threshold_of == "rho" else upper_triangle_mean(xn))

    group_of, grouping_scores = GROUPINGS[grouping](x, num_groups, centering=centering, solver=solver, seed=seed)
    scores = scores_given if scores_given is not None else grouping_scores
    k_max = max(group_counts)

    rank = importance_rank(scores)
    survivor_rank = intra_group_nms(xn, group_of, scores, rank, tau, k_max)
    survivors = survivor_rank >= 0
    position = position_in_group_ranking(group_of, survivor_rank, rank)

    sizes = count_per_group(group_of, torch.ones_like(survivors), k_max)
    survivor_counts = count_per_group(group_of, survivors, k_max)
    caps = torch.tensor([policy.group_cap(n) for n in effective], device=device)
    to_keep = (budgets - reserved).clamp(max=num_tokens)
    quotas = group_quotas(sizes, survivor_counts, budgets, to_keep, caps, most_tokens=num_tokens)

    keep_all = budgets - reserved >= num_tokens
    quotas = torch.where(keep_all[:, None], sizes, quotas)
    indices = preset_order(kept_indices(group_of, position, quotas, keep_all, order), policy, order)

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
