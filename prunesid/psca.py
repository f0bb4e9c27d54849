"""Principal Semantic Component Analysis: the top-K principal directions in token space.

P = sigmoid(X) (float32), centred, and V = the top-K right singular vectors of the D x T
matrix P_c^T, i.e. the top-K eigenvectors of the T x T Gram matrix G = P_c P_c^T.

The reference is the *exact* top-K. A full eigendecomposition costs several times a T x T
similarity matmul, so the default solver is seeded subspace iteration on G that stops only
once every token's group (the argmax of |V| in its row) is certified: for each Ritz vector
the Davis-Kahan bound (residual / spectral gap) limits how far it can be from the exact
eigenvector, and a row is certain when its winning margin exceeds the two columns' bounds.
Any image that is not certified within the iteration limit is solved exactly with eigh, so
the groups always equal those of the exact solver.
"""

from __future__ import annotations

import torch

CENTERINGS = ("token", "feature")

# Rounding of the float32 Gram matrix moves eigenvectors by about this much; the certificate
# demands a margin beyond it.
_GRAM_ROUNDING_SLACK = 1e-5
_MAX_ITERATIONS = 24
_CHECK_EVERY = 3


def centred_sigmoid(x: torch.Tensor, centering: str) -> torch.Tensor:
    """sigmoid(X), centred per token over features ("token", the authors' code) or per
    feature over tokens ("feature", the formula in the paper's text)."""
    p = torch.sigmoid(x.float())
    if centering == "token":
        return p - p.mean(dim=-1, keepdim=True)
    if centering == "feature":
        return p - p.mean(dim=-2, keepdim=True)
    raise ValueError(f"centering must be one of {CENTERINGS}, got {centering!r}")


def principal_token_components(
    x: torch.Tensor, k: int, *, centering: str = "token", exact: bool = False, seed: int = 0
) -> torch.Tensor:
    """Top-k eigenvectors of G = P_c P_c^T for each image: [B, T, k], largest first.

    Signs are arbitrary (PSCA uses |V|).
    """
    centred = centred_sigmoid(x, centering)
    gram = torch.bmm(centred, centred.transpose(1, 2))
    if exact or 2 * (k + _oversampling(k)) >= gram.shape[-1]:
        return exact_top_eigenvectors(gram, k)
    return certified_top_eigenvectors(gram, k, seed=seed)


def exact_top_eigenvectors(gram: torch.Tensor, k: int) -> torch.Tensor:
    _, vectors = torch.linalg.eigh(gram.double())
    return vectors[..., -k:].flip(-1).to(gram.dtype)


def _oversampling(k: int) -> int:
    return max(8, k // 2)


def certified_top_eigenvectors(gram: torch.Tensor, k: int, *, seed: int = 0) -> torch.Tensor:
    batch, size, _ = gram.shape
    width = k + _oversampling(k)
    gram64 = gram.double()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    basis = torch.randn(size, width, generator=generator, dtype=torch.float64)
    basis = basis.to(gram.device).expand(batch, size, width)
    vectors = torch.empty(batch, size, k, dtype=torch.float64, device=gram.device)
    pending = torch.arange(batch, device=gram.device)
    for iteration in range(1, _MAX_ITERATIONS + 1):
        basis, _ = torch.linalg.qr(torch.bmm(gram64[pending], basis))
        if iteration % _CHECK_EVERY:
            continue
        ritz, certified = _rayleigh_ritz_certified(gram64[pending], basis, k)
        vectors[pending[certified]] = ritz[certified]
        pending, basis = pending[~certified], basis[~certified]
        if pending.numel() == 0:
            return vectors.to(gram.dtype)
    vectors[pending] = exact_top_eigenvectors(gram64[pending], k)
    return vectors.to(gram.dtype)


def _rayleigh_ritz_certified(
    gram: torch.Tensor, basis: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k Ritz vectors of each image and whether their row-argmax is certainly exact."""
    projected = basis.transpose(1, 2) @ gram @ basis
    values, small_vectors = torch.linalg.eigh(projected)
    values, small_vectors = values.flip(-1), small_vectors.flip(-1)
    ritz = basis @ small_vectors  # [B, T, width], largest first
    residual = torch.linalg.vector_norm(gram @ ritz - ritz * values[:, None, :], dim=1)
    distance = (values[:, :, None] - values[:, None, :]).abs()
    distance.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    gap = distance.min(dim=-1).values.clamp_min(1e-300)
    # ||v - v_exact||_inf <= ||v - v_exact||_2 <= sqrt(2) * sin(angle) <= sqrt(2) * r / gap
    error = (2.0**0.5 * residual / gap)[:, :k] + _GRAM_ROUNDING_SLACK
    ritz = ritz[..., :k]
    weights = ritz.abs()
    top2, columns = weights.topk(min(2, k), dim=-1)
    if k == 1:
        certified = error[:, 0] < 0.5  # a single group: the argmax cannot change
        return ritz, certified
    margin = top2[..., 0] - top2[..., 1]
    # The runner-up column is unknown after perturbation: bound with the largest error.
    bound = error.gather(1, columns[..., 0]) + error.max(dim=-1, keepdim=True).values
    certified = (margin > bound).all(dim=-1)
    return ritz, certified
