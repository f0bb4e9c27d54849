"""Principal Semantic Component Analysis: the top-K principal directions in token space.

P = sigmoid(X) (float32), centred, and V = the top-K right singular vectors of the D x T
matrix P_c^T, i.e. the top-K eigenvectors of the T x T Gram matrix G = P_c P_c^T (or of the
D x D Gram P_c^T P_c, mapped back to tokens, when there are fewer features than tokens).
The eigensolvers live in linalg.py; ``solver`` picks one:

- ``"exact"`` (the reference): the exact top-K eigenvectors of G in float64 (a certified
  Krylov run or the dense route: the same vectors to 1e-9);
- ``"krylov"``: a float32 block Krylov run with no certificate, several times faster; a few
  tokens may change group where trailing components have not converged;
- ``"randomized"``: the authors' released low-rank PCA (two power iterations), seeded.

Signs are arbitrary (PSCA uses |V|).
"""

from __future__ import annotations

import torch

from prunesid import linalg
from prunesid.presets import DEFAULTS

CENTERINGS = ("token", "feature")
SOLVERS = ("exact", "randomized", "krylov")


def centred_sigmoid(x: torch.Tensor, centering: str) -> torch.Tensor:
    """sigmoid(X), centred per token over features ("token", the authors' code) or per
    feature over tokens ("feature", the formula in the paper's text)."""
    p = torch.sigmoid(x.float())
    if centering == "token":
        return p.sub_(p.mean(dim=-1, keepdim=True))
    if centering == "feature":
        return p.sub_(p.mean(dim=-2, keepdim=True))
    raise ValueError(f"centering must be one of {CENTERINGS}, got {centering!r}")


def principal_token_components(
    x: torch.Tensor, k: int, *, centering: str = DEFAULTS.centering, solver: str = DEFAULTS.solver, seed: int = DEFAULTS.seed
) -> torch.Tensor:
    """Top-k principal token directions of each image: [B, T, k], largest first.

    ``solver="exact"`` is the reference; ``"krylov"`` and ``"randomized"`` are faster and
    approximate (see the module docstring). ``seed`` seeds the approximate solvers' start.
    Signs are arbitrary (PSCA uses |V|).
    """
    centred = centred_sigmoid(x, centering)
    if solver == "randomized":
        return linalg.randomized_gram_eigenvectors(centred, k, seed)
    if solver == "krylov":
        return linalg.krylov_gram_eigenvectors(centred, k, seed).to(x.dtype)
    if solver != "exact":
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    return linalg.exact_gram_eigenvectors(centred, k).to(x.dtype)
