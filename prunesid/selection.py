"""select() and Selection: PruneSID on tensors, stage by stage (see SPEC.md).

Stages: redundancy (rho, phi) -> budget (fixed or dynamic) -> grouping -> intra-group NMS
-> per-group quotas -> kept indices in reference order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Selection", "select"]


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
        }


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
) -> Selection:
    raise NotImplementedError  # being written
