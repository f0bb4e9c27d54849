"""Stage 1, redundancy: rho, the mean pairwise cosine similarity of a view's tokens, and the
Qwen2-VL variant's tau basis, all from one sum of the unit tokens (no T x T matrix).

sum_{i,j} S_ij = |sum_i xn_i|^2 for the unit tokens xn and S is symmetric, so the pair sums
need O(T D) work instead of O(T^2 D).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def redundancy(tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """rho of each view of ``[B, T, D]`` tokens (mean pairwise cosine similarity over the
    ``valid`` tokens, all by default); phi = 1 - rho."""
    xn = F.normalize(tokens.float(), dim=-1)
    if valid is None:
        return mean_pairwise_similarity(xn)
    return masked_mean_pairwise_similarity(xn * valid[..., None], valid.sum(1))


def mean_pairwise_similarity(xn: torch.Tensor) -> torch.Tensor:
    """rho of unit tokens ``[B, T, D]``: the mean of S_ij over pairs i < j,
    (|sum xn|^2 - sum |xn_i|^2) / (T (T - 1))."""
    num_tokens = xn.shape[1]
    if num_tokens < 2:
        return torch.zeros(xn.shape[0], dtype=torch.float32, device=xn.device)
    total = xn.sum(dim=1).double().square().sum(dim=-1)
    diagonal = torch.linalg.vector_norm(xn.flatten(1), dim=1).double().square()  # sum |xn_i|^2, no copy
    return ((total - diagonal) / (num_tokens * (num_tokens - 1))).float()


def masked_mean_pairwise_similarity(xn: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """rho where excluded tokens' rows of ``xn`` are zero and ``counts`` [B] tokens remain."""
    total = xn.sum(dim=1).double().square().sum(dim=-1)
    diagonal = xn.square().sum(dim=-1).sum(dim=-1).double()
    pairs = (counts.double() * (counts.double() - 1)).clamp(min=1)
    return torch.where(counts >= 2, (total - diagonal) / pairs, 0.0).float()


def upper_triangle_mean(xn: torch.Tensor) -> torch.Tensor:
    """sum_{i <= j} S_ij / T^2 (the Qwen2-VL variant's tau basis): the diagonal counts once,
    each off-diagonal pair once, so (|sum xn|^2 + sum |xn_i|^2) / 2 / T^2."""
    num_tokens = xn.shape[1]
    total = xn.sum(dim=1).double().square().sum(dim=-1)
    diagonal = xn.square().sum(dim=-1).sum(dim=-1).double()
    return ((total + diagonal) / 2 / (num_tokens * num_tokens)).float()
