"""Eigensolvers for the Gram matrix of a batch of row sets: the top-k eigenvectors of
G = R R^T for ``[B, n, m]`` rows R, as PSCA needs them (psca.py).

- Exact (float64): :func:`top_eigenvectors`. Two routes give the same vectors (to 1e-9,
  far below the margins that decide a token's group):

  * a block Krylov (Lanczos) run whose result is kept only where it is *certified*: every
    wanted eigenvector's residual bound |G v - theta v| / gap (Davis-Kahan, gaps to the
    neighbouring Ritz values) must be below :data:`CERTIFY_TOL`. This is cheap when the
    leading components stand out from the rest of the spectrum, as K = N/4 components of
    patch features usually do at small budgets;
  * LAPACK's dense route otherwise (or for small matrices): Householder tridiagonalisation
    (O(n^3), whatever K), then MRRR for just the K wanted eigenvectors of the tridiagonal
    matrix and the reflectors applied to those K only. Where K reaches into the noise bulk
    of the spectrum (neighbouring eigenvalues 0.01% apart) no Krylov run settles it and
    this route is taken.

- Fast (float32): :func:`krylov_gram_eigenvectors`, a block Krylov run with no certificate,
  stopped once the Ritz residuals are small (relative 1e-3; usually after 4-6 blocks) or
  when its basis reaches half of n or 16 blocks (a fixed run on a GPU): deterministic,
  several times faster than the exact solver; where the trailing components have not
  converged a few tokens change group (tests/selection/test_solvers.py bounds how far the kept tokens
  move). Where k is too large for such a run (3 x 7 blocks of k + 8 vectors exceed n: from
  K = 20, i.e. N = 80, at T = 576) it solves the float32 Gram densely instead.
- :func:`randomized_gram_eigenvectors`: the authors' released low-rank PCA (two power
  iterations), seeded.

Signs are arbitrary. On a device where a read-back waits (a GPU, see prunesid.devices) the
runs are fixed in advance and the dense solves are torch's, on the device.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from prunesid import devices

# The exact solver's certificate: sin(angle to the true eigenvector) must be below this for
# every wanted component of an image, else that image goes the dense route.
CERTIFY_TOL = 1e-9
_KRYLOV_MIN_SIZE = 256  # smaller matrices go the dense route directly (it is cheap there)
_KRYLOV_MAX_FRACTION = 0.5  # and so do runs whose basis would exceed this share of n
_EXACT_OVERSAMPLING = 4  # block width k + 4
_EXACT_CHECKS = (7, 11, 13, 15)  # blocks after which a certificate is computed (CPU)
_EXACT_HOPELESS = 1e-2  # a bound this large at a check: that image goes dense
# The fast solver's schedule: blocks of k + 8, started in the range of R.
_FAST_OVERSAMPLING = 8
_FAST_BLOCKS = 7  # the Krylov route is taken where 3 x this many blocks fit in n
_FAST_MAX_FRACTION = 0.5  # an unconverged run goes on while its basis is within this share of n
_FAST_MAX_BLOCKS = 16  # and within this many blocks
_FAST_CHECK_EVERY = 2  # blocks between convergence checks (CPU), from block 4
_FAST_TOL = 1e-3  # relative residual of every wanted Ritz pair that ends the run


def exact_gram_eigenvectors(rows: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k eigenvectors of R R^T (``[B, n, k]`` float64, largest first) for ``[B, n, m]``
    rows R. When R has fewer columns than rows, the m x m Gram R^T R is diagonalised
    instead and its eigenvectors u mapped back, v = R u / |R u|."""
    size, width = rows.shape[-2:]
    if size <= width or k > width:
        # (More components than columns: the m x m Gram has too few; the extra vectors
        # span the null space, whatever basis the solver returns for it.)
        return top_eigenvectors(gram_matrix(rows), k)
    column_vectors = top_eigenvectors(gram_matrix(rows.transpose(-1, -2)), k)
    return torch.nn.functional.normalize(rows.double() @ column_vectors, dim=-2)


def gram_matrix(rows: torch.Tensor) -> torch.Tensor:
    """rows @ rows^T for ``[B, n, m]`` rows, in two halves of the rows with the block above
    the diagonal mirrored from the one below: 3/4 of the multiplications of one product."""
    size = rows.shape[-2]
    if size < 256:
        return rows @ rows.transpose(-1, -2)
    top, bottom = rows[..., : size // 2, :], rows[..., size // 2 :, :]
    lower = bottom @ top.transpose(-1, -2)
    return torch.cat([
        torch.cat([top @ top.transpose(-1, -2), lower.transpose(-1, -2)], dim=-1),
        torch.cat([lower, bottom @ bottom.transpose(-1, -2)], dim=-1),
    ], dim=-2)


def symmetrised(gram: torch.Tensor) -> torch.Tensor:
    """(G + G^T) / 2: exactly symmetric (a product may differ by an ulp across the diagonal;
    where it does not, this changes nothing), so that every route solves the same matrix."""
    return (gram + gram.transpose(-1, -2)) * 0.5


def top_eigenvectors(gram: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k eigenvectors (float64, largest eigenvalue first) of each symmetric matrix
    ``[B, n, n]``: certified block Krylov where it converges, the dense route elsewhere."""
    gram64 = symmetrised(gram).double()
    size = gram64.shape[-1]
    block = k + _EXACT_OVERSAMPLING
    checks = [c for c in _EXACT_CHECKS if c * block <= size * _KRYLOV_MAX_FRACTION]
    if size < _KRYLOV_MIN_SIZE or not checks:
        return dense_top_eigenvectors(gram64, k)
    free = devices.waits_are_free(gram64.device)
    if not free:
        checks = checks[-1:]  # a fixed run and one certificate: a single wait for the device
    vectors, certified = certified_krylov(gram64, k, block, checks)
    if free and bool(certified.all()):
        return vectors
    rest = (~certified).nonzero().flatten()
    if rest.numel():
        vectors = vectors.index_copy(0, rest, dense_top_eigenvectors(gram64[rest], k))
    return vectors


def dense_top_eigenvectors(matrices: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k eigenvectors (largest first) of each symmetric ``[B, n, n]`` matrix (float64,
    or float32 for the fast solver) by a dense method: on the CPU tridiagonalisation and
    then the k wanted vectors only (:func:`_tridiagonal_top_eigenvectors`), on other
    devices ``torch.linalg.eigh`` (on the device).

    SciPy's BLAS runs on the calling thread here: with a pool of its own, its idle threads
    keep spinning after the call and halve the speed of torch's threads for the rest of the
    selection (55 -> 24 ms at T = 576, N = 192 on two cores, benchmarks/compressor.py)."""
    size = matrices.shape[-1]
    if not devices.waits_are_free(matrices.device) or size < 3:
        return torch.linalg.eigh(matrices)[1][..., size - k :].flip(-1)
    with _single_threaded_blas():
        return torch.stack([_tridiagonal_top_eigenvectors(matrix, k) for matrix in matrices])


def _small_top_eigenvectors(matrices: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k eigenvectors (largest first) of small symmetric float64 matrices (Rayleigh
    quotients, n of a few hundred). On the CPU LAPACK's MRRR driver computes just those k,
    on one thread: a pool of BLAS threads would be left spinning against torch's own."""
    size = matrices.shape[-1]
    if not devices.waits_are_free(matrices.device):
        return torch.linalg.eigh(matrices)[1][..., size - k :].flip(-1)
    from scipy.linalg import eigh

    with _single_threaded_blas():
        found = [eigh(m.numpy(), subset_by_index=[size - k, size - 1], driver="evr", check_finite=False)[1] for m in matrices]
    return torch.from_numpy(np.ascontiguousarray(np.stack(found)[..., ::-1]))


_BLAS_THREADS = []  # the threadpoolctl controller, made once


def _single_threaded_blas():
    """A context in which SciPy's BLAS runs on the calling thread only (threadpoolctl,
    a dependency of scikit-learn; without it, nothing changes)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    if not _BLAS_THREADS:
        import scipy.linalg  # noqa: F401  (its BLAS must be loaded to be seen)

        _BLAS_THREADS.append(ThreadpoolController())
    return _BLAS_THREADS[0].limit(limits=1, user_api="blas")


def _tridiagonal_top_eigenvectors(matrix: torch.Tensor, k: int) -> torch.Tensor:
    """LAPACK, in the matrix's precision: sytrd (Q^T A Q = tridiagonal), then only the
    eigenvectors n-k+1..n of the tridiagonal matrix, and Q applied to those k vectors alone
    (the reflectors of sytrd are those of a QR factorisation shifted down one row, so ormqr
    applies them). The tridiagonal step is MRRR (stemr) in float64, the reference; in
    float32 (the fast solver) bisection and inverse iteration (stebz + stein), a third
    faster there."""
    from scipy.linalg import eigh, eigh_tridiagonal, lapack

    size = matrix.shape[-1]
    array = np.asfortranarray(matrix.numpy())
    sytrd, sytrd_lwork = lapack.get_lapack_funcs(("sytrd", "sytrd_lwork"), (array,))
    lwork = int(sytrd_lwork(size, lower=1)[0])
    reflectors, diagonal, off_diagonal, tau, info = sytrd(array, lower=1, lwork=lwork)
    count = 0
    if info == 0 and array.dtype == np.float64:
        count, _, vectors, info = lapack.dstemr(diagonal, np.append(off_diagonal, 0.0), 2, 0.0, 0.0, size - k + 1, size)
    elif info == 0:
        try:
            vectors = eigh_tridiagonal(
                diagonal, off_diagonal, select="i", select_range=(size - k, size - 1), lapack_driver="stebz", check_finite=False
            )[1]
            count = vectors.shape[1]
        except np.linalg.LinAlgError:
            info = 1
    if info != 0 or count != k:  # (the tridiagonal solver gave up: the slower, always-converging driver)
        found = eigh(matrix.numpy(), subset_by_index=[size - k, size - 1], driver="evx", check_finite=False)[1]
        return torch.from_numpy(found[:, ::-1].copy())
    small = torch.from_numpy(np.ascontiguousarray(vectors[:, :k]))
    found = small.clone()
    found[1:] = torch.ormqr(torch.from_numpy(reflectors)[1:, : size - 1], torch.from_numpy(tau), small[1:])
    return found.flip(-1)


def _block_krylov(apply, start: torch.Tensor, num_blocks: int, checkpoint):
    """Block Lanczos with full reorthogonalisation: an orthonormal basis Q of the Krylov
    space [S, A S, ..., A^(m-1) S] of the symmetric operator A, A Q, and the Rayleigh
    quotient H = Q^T A Q, grown one block at a time.

    Vectors are kept as rows (``start`` is [B, width, n], ``apply(rows)`` returns the rows
    of (A Q_j)^T = Q_j^T A): thin products are then row-major, about twice as fast on the
    CPU. After each block ``checkpoint(blocks_done, Q^T, (A Q)^T, H)`` is called; the run
    stops when it returns True or after ``num_blocks`` blocks."""
    batch, width, size = start.shape
    dim = num_blocks * width
    basis = start.new_empty(batch, dim, size)
    images = start.new_empty(batch, dim, size)
    quotient = start.new_zeros(batch, dim, dim)
    basis[:, :width] = start
    for j in range(num_blocks):
        low, high = j * width, (j + 1) * width
        image = apply(basis[:, low:high])
        images[:, low:high] = image
        done = basis[:, :high]
        coefficients = done @ image.transpose(-1, -2)  # block column j of H
        quotient[:, :high, low:high] = coefficients
        quotient[:, low:high, :high] = coefficients.transpose(-1, -2)
        if checkpoint(j + 1, done, images[:, :high], quotient[:, :high, :high]) or j + 1 == num_blocks:
            return
        # Classical Gram-Schmidt twice, then QR of what is new.
        fresh = image - coefficients.transpose(-1, -2) @ done
        fresh = fresh - (fresh @ done.transpose(-1, -2)) @ done
        basis[:, high : high + width] = torch.linalg.qr(fresh.transpose(-1, -2)).Q.transpose(-1, -2)


def _ritz_vectors(basis, images, quotient, count):
    """The ``count`` leading Ritz vectors V = Q Y (largest Ritz value first, as columns
    [B, n, count]) and A V, from the row-stored Q^T and (A Q)^T."""
    quotient = ((quotient + quotient.transpose(-1, -2)) / 2).double()
    coordinates = _small_top_eigenvectors(quotient, count).to(basis.dtype)
    return (coordinates.transpose(-1, -2) @ basis).transpose(-1, -2), (coordinates.transpose(-1, -2) @ images).transpose(-1, -2)


def certification_bounds(vectors: torch.Tensor, mapped: torch.Tensor, k: int) -> torch.Tensor:
    """[B] largest bound on sin(angle) between one of the first k columns of ``vectors``
    (k + 1 Ritz vectors, largest Ritz value first) and the matching eigenvector of G, given
    ``mapped`` = G V.

    theta_i = v_i^T G v_i and r_i = |G v_i - theta_i v_i|. The eigenvalues above lambda_i are
    at least theta_{i-1} (Cauchy interlacing: the j-th Ritz value is at most the j-th
    eigenvalue); the next one below is within r_{i+1} of theta_{i+1}, provided the run has
    missed no eigenvalue (its start is random). With gap_i the distance from theta_i to
    both, sin <= r_i / gap_i (Davis-Kahan). Columns that are not orthonormal to 1e-10, or a
    gap <= 0 (a repeated eigenvalue: no single eigenvector to certify), give +inf."""
    theta = (vectors * mapped).sum(dim=-2)
    residual = (mapped - vectors * theta[..., None, :]).norm(dim=-2)
    above = torch.cat([torch.full_like(theta[..., :1], float("inf")), theta[..., : k - 1]], dim=-1)
    below = theta[..., 1 : k + 1] + residual[..., 1 : k + 1]
    wanted = theta[..., :k]
    gap = torch.minimum(above - wanted, wanted - below)
    bound = (residual[..., :k] / gap.clamp(min=0)).amax(dim=-1)
    identity = torch.eye(vectors.shape[-1], dtype=vectors.dtype, device=vectors.device)
    orthonormal = (vectors.transpose(-1, -2) @ vectors - identity).abs().amax(dim=(-2, -1)) <= 1e-10
    bad = ~orthonormal | (gap <= 0).any(dim=-1) | bound.isnan()
    return torch.where(bad, torch.full_like(bound, float("inf")), bound)


def certified_krylov(gram64: torch.Tensor, k: int, block: int, checks):
    """Top-k eigenvectors of each ``[B, n, n]`` float64 matrix by block Krylov with blocks
    of ``block`` vectors, and for each image whether all k are certified to
    :data:`CERTIFY_TOL` (:func:`certification_bounds`). A certificate is computed after each
    number of blocks in ``checks``; the run stops once every image is certified or too far
    from it (bound > :data:`_EXACT_HOPELESS`) to get there soon."""
    batch, size, _ = gram64.shape
    generator = torch.Generator().manual_seed(0)
    start = torch.linalg.qr(torch.randn(batch, size, block, generator=generator, dtype=torch.float64).to(gram64.device)).Q
    start = start.transpose(-1, -2).contiguous()
    result = {}

    def checkpoint(blocks_done, basis, images, quotient):
        if blocks_done not in checks:
            return False
        vectors, mapped = _ritz_vectors(basis, images, quotient, k + 1)
        bound = certification_bounds(vectors, mapped, k)
        result.update(vectors=vectors[..., :k], certified=bound <= CERTIFY_TOL)
        if blocks_done == checks[-1]:
            return True
        return bool(((bound <= CERTIFY_TOL) | (bound > _EXACT_HOPELESS)).all())

    _block_krylov(lambda rows: rows @ gram64, start, max(checks), checkpoint)  # (G Q)^T = Q^T G
    return result["vectors"], result["certified"]


def krylov_gram_eigenvectors(rows: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """The fast solver: top-k eigenvectors of R R^T for ``[B, n, m]`` float32 rows R, by
    block Krylov in float32 applied as two thin products (no n x n matrix), started in the
    range of R (R times a seeded Gaussian block), with a float64 Rayleigh-Ritz. It stops
    once every wanted Ritz pair's relative residual |G v - theta v| / theta is below
    _FAST_TOL (checked on the CPU every other block from block 4), else once its basis
    reaches half of n or 16 blocks (a fixed run of that length on a GPU): components that
    need more than the usual four blocks to settle get them, instead of coming back
    half-converged."""
    batch, size, width = rows.shape
    block = k + _FAST_OVERSAMPLING
    if 3 * _FAST_BLOCKS * block > size:  # many components for the size: a dense float32 solve is cheaper
        return _dense_float32_gram_eigenvectors(rows, k)
    num_blocks = max(_FAST_BLOCKS, min(_FAST_MAX_BLOCKS, int(size * _FAST_MAX_FRACTION) // block))
    generator = torch.Generator().manual_seed(seed)
    sketch = torch.randn(batch, width, block, generator=generator).to(rows)
    start = torch.linalg.qr(rows @ sketch).Q.transpose(-1, -2).contiguous()
    checks = list(range(4, num_blocks, _FAST_CHECK_EVERY)) if devices.waits_are_free(rows.device) else []
    result = {}

    def checkpoint(blocks_done, basis, images, quotient):
        if blocks_done not in checks and blocks_done != num_blocks:
            return False
        vectors, mapped = _ritz_vectors(basis, images, quotient, k)
        result["vectors"] = vectors
        if blocks_done == num_blocks:
            return True
        theta = (vectors * mapped).sum(dim=-2)
        residual = (mapped - vectors * theta[..., None, :]).norm(dim=-2)
        return bool((residual <= _FAST_TOL * theta.abs()).all())

    # G Q = R (R^T Q), as rows: (R (Q^T R)^T)^T (the second product with R itself rather
    # than its transpose is 10-30% faster on the CPU).
    _block_krylov(lambda basis: (rows @ (basis @ rows).transpose(-1, -2)).transpose(-1, -2), start, num_blocks, checkpoint)
    return result["vectors"]


def _dense_float32_gram_eigenvectors(rows: torch.Tensor, k: int) -> torch.Tensor:
    """The fast solver where K reaches far into the spectrum (from N = 80 at T = 576): the top-k
    eigenvectors of the float32 Gram by a dense float32 method (on the CPU bisection and
    inverse iteration for just those k, see :func:`dense_top_eigenvectors`;
    ``torch.linalg.eigh`` elsewhere). 10 ms against 16.5 ms for the float64 solve at
    T = 576, K = 48; float32 rounding of G (1e-7) is far below the gaps that decide groups,
    and the kept tokens matched the exact solver's on the golden-like views at N 128 and
    192 (0.976 or more, benchmarks/compressor.py)."""
    return dense_top_eigenvectors(symmetrised(gram_matrix(rows)), k)


def randomized_gram_eigenvectors(rows: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """Approximate top-k eigenvectors of R R^T: the top-k right singular vectors of R^T by
    ``torch.pca_lowrank`` (two power iterations), as the authors' released code, seeded."""
    cuda = rows.device.type == "cuda"
    with torch.random.fork_rng(devices=[rows.device] if cuda else []):
        # Seed only the generator pca_lowrank draws from (torch.manual_seed would also
        # queue the seeding of every other backend, a few ms of Python per call).
        if cuda:
            torch.cuda.manual_seed(seed)
        else:
            torch.default_generator.manual_seed(seed)
        _, _, vectors = torch.pca_lowrank(rows.transpose(-1, -2), q=k, center=False, niter=2)
    return vectors
