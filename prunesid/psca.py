"""Principal Semantic Component Analysis: the top-K principal directions in token space.

P = sigmoid(X) (float32), centred, and V = the top-K right singular vectors of the D x T
matrix P_c^T, i.e. the top-K eigenvectors of the T x T Gram matrix G = P_c P_c^T.

The reference is the *exact* top-K. Iterative solvers are no shortcut here: with K = N/4
the trailing components usually lie in the noise bulk of the spectrum, where neighbouring
eigenvalues differ by 0.01% and subspace iteration would need hundreds of steps to settle
which token belongs where. So the eigenproblem is solved exactly, in float64, on the
smaller of the two Gram matrices, asking LAPACK for only the K wanted eigenvectors.
"""

from __future__ import annotations

import torch

CENTERINGS = ("token", "feature")
SOLVERS = ("exact", "randomized")


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
    x: torch.Tensor, k: int, *, centering: str = "token", solver: str = "exact", seed: int = 0
) -> torch.Tensor:
    """Top-k principal token directions of each image: [B, T, k], largest first.

    ``solver="exact"`` is the reference. ``"randomized"`` is the authors' released solver
    (a randomised low-rank PCA with two power iterations), seeded here: several times
    faster, but its trailing components, and so some groups, differ from the exact ones.
    Signs are arbitrary (PSCA uses |V|).
    """
    centred = centred_sigmoid(x, centering)
    if solver == "randomized":
        return _randomized_components(centred, k, seed)
    num_tokens, width = centred.shape[-2:]
    if num_tokens <= width or k > width:
        # (More components than features: the D x D Gram has too few; the extra columns
        # span the null space, whatever basis eigh returns for it.)
        return top_eigenvectors(centred @ centred.transpose(-1, -2), k).to(x.dtype)
    # Fewer features than tokens: diagonalise the D x D Gram instead and map its
    # eigenvectors u to token space, v = P_c u / |P_c u|.
    feature_vectors = top_eigenvectors(centred.transpose(-1, -2) @ centred, k)
    token_vectors = centred.double() @ feature_vectors
    return torch.nn.functional.normalize(token_vectors, dim=-2).to(x.dtype)


def top_eigenvectors(gram: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k eigenvectors (float64, largest eigenvalue first) of each symmetric matrix."""
    gram64 = gram.double()
    size = gram64.shape[-1]
    if gram64.device.type == "cpu":
        from scipy.linalg import eigh

        # LAPACK's MRRR driver computes only the requested eigenvectors.
        columns = [
            torch.from_numpy(eigh(matrix.numpy(), subset_by_index=[size - k, size - 1], driver="evr")[1].copy())
            for matrix in gram64
        ]
        return torch.stack(columns).flip(-1)
    _, vectors = torch.linalg.eigh(gram64)
    return vectors[..., -k:].flip(-1)


def _randomized_components(centred: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    devices = [centred.device] if centred.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        _, _, vectors = torch.pca_lowrank(centred.transpose(-1, -2), q=k, center=False, niter=2)
    return vectors
