"""Selection: PruneSID's result, the kept tokens and every decision that led to them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from prunesid.compression import Compression
from prunesid.presets import DEFAULTS


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
    requested_budget: torch.Tensor  # [B] long: N before the preset's N_eff; when dynamic N', already in tokens kept
    budget_clamped: torch.Tensor  # [B] bool: the dynamic budget hit its clamp
    grouping: str
    centering: str
    dynamic: bool
    phi_ref: float | None  # the phi_ref actually used (dynamic only)
    order: str = DEFAULTS.order
    solver: str = DEFAULTS.solver
    preset: str = DEFAULTS.preset

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
