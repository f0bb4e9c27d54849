"""PSCA solvers and the loop-free selection stages.

- The exact solver's block Krylov path returns the dense solution when it certifies it, and
  refuses (so the dense solver runs) when it cannot: clustered or unconverged spectra.
- The fast ``"krylov"`` solver keeps nearly the exact solver's tokens.
- The stages rewritten without loops that wait for the device (fixed-round NMS, quotas,
  batched output order) equal their step-by-step definitions.
No timings here: speed is measured in benchmarks/compressor.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.compressor import make_inputs
from prunesid import devices, linalg, psca, select
from prunesid.linalg import dense_top_eigenvectors, certified_krylov, top_eigenvectors
from prunesid.psca import principal_token_components
from prunesid.selection import nms_blocks
from prunesid.selection.nms_blocks import greedy_nms_rounds, nms_round_bound
from prunesid.selection.order import kept_indices
from prunesid.selection.quotas import group_quotas

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def _known_spectrum(size, values, seed=0):
    """A symmetric [1, n, n] float64 matrix with the given eigenvalues (descending) and its
    eigenvectors as columns, in that order."""
    generator = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64)).Q
    values = torch.as_tensor(values, dtype=torch.float64)
    return ((basis * values) @ basis.T)[None], basis


def _spiked(size=400, spikes=20, seed=0):
    """Well separated leading eigenvalues over a flat bulk."""
    generator = torch.Generator().manual_seed(seed + 1)
    bulk = torch.rand(size - spikes, generator=generator, dtype=torch.float64).sort(descending=True).values
    return torch.cat([100.0 * 0.8 ** torch.arange(spikes, dtype=torch.float64), bulk])


def _angle_sines(found, expected):
    """Angle between matching unit columns, sign-free (|v - sign * x|, accurate when small)."""
    signs = torch.sign((found * expected).sum(dim=-2, keepdim=True))
    return (found - signs * expected).norm(dim=-2)


def test_a_certified_krylov_run_returns_the_exact_eigenvectors():
    values = _spiked()
    gram, basis = _known_spectrum(400, values)
    k = 10
    vectors, certified = certified_krylov(gram, k, k + 8, [8, 10, 12])
    assert certified.tolist() == [True]
    assert float(_angle_sines(vectors[0], basis[:, :k]).max()) < 1e-9


@pytest.mark.parametrize("where", ["inside the top k", "at the k-th component"])
def test_the_certificate_refuses_repeated_eigenvalues(where):
    values = _spiked()
    k = 10
    if where == "inside the top k":
        values[4] = values[3]  # any basis of that plane is an answer: nothing to certify
    else:
        values[k] = values[k - 1] * (1 - 1e-13)  # the k-th component is not determined
    gram, _ = _known_spectrum(400, values)
    _, certified = certified_krylov(gram, k, k + 8, [8, 10, 12])
    assert certified.tolist() == [False]


def test_the_certificate_refuses_when_a_lower_ritz_pair_may_hide_an_eigenvalue_near_the_wanted_one():
    """Davis-Kahan needs the gap from theta_1 to every other eigenvalue. The second Ritz pair
    only says an eigenvalue lies within r_2 of theta_2, so up to theta_2 + r_2 (here above
    theta_1): no gap can be claimed. This v_1 is 30 degrees from every eigenvector (a mix of
    two whose eigenvalues are 1e-9 apart) although its residual is 4e-10."""
    gram = torch.diag(torch.tensor([1.0, 1.0 - 1e-9, -10.0, 0.0], dtype=torch.float64))
    e = torch.eye(4, dtype=torch.float64)
    angle = np.pi / 6
    wanted = np.cos(angle) * e[0] + np.sin(angle) * e[1]
    below = np.cos(np.pi / 6) * (np.cos(angle) * e[1] - np.sin(angle) * e[0]) + np.sin(np.pi / 6) * e[2]
    vectors = torch.stack([wanted, below], dim=1)[None]  # orthonormal, largest Ritz value first
    theta = (vectors * (gram @ vectors)).sum(dim=-2)[0]
    residual = (gram @ vectors - vectors * theta).norm(dim=-2)[0]
    assert residual[0] < 1e-9 and theta[1] - residual[1] < theta[0] < theta[1] + residual[1]
    assert float(linalg.certification_bounds(vectors, gram @ vectors, 1)[0]) == float("inf")


@pytest.mark.parametrize("blocks", [5, 6, 7])
def test_a_run_that_is_not_within_1e_9_of_the_eigenvectors_is_not_certified(blocks):
    """CERTIFY_TOL is the promise "the same vectors to 1e-9": runs stopped after 5-7 blocks
    leave the 10th vector 1e-5 to 4e-9 away (residual bounds up to 1e-5, well within a looser
    tolerance), so none may be certified."""
    gram, basis = _known_spectrum(400, _spiked())
    vectors, certified = certified_krylov(gram, 10, 14, [blocks])
    assert float(_angle_sines(vectors[0], basis[:, :10]).max()) > 1e-9  # (else the case tests nothing)
    assert certified.tolist() == [False]


def test_the_exact_solver_gives_the_eigenvectors_to_1e_9_where_its_one_krylov_check_falls_short():
    """At n = 256 and k = 10 the exact solver checks its Krylov run once, after 7 blocks,
    where the 10th vector is still 4e-9 off: it must answer from the dense route."""
    gram, basis = _known_spectrum(256, _spiked(256))
    vectors, _ = certified_krylov(gram, 10, 14, [7])
    assert float(_angle_sines(vectors[0], basis[:, :10]).max()) > 1e-9  # (else the case tests nothing)
    assert float(_angle_sines(top_eigenvectors(gram, 10)[0], basis[:, :10]).max()) < 1e-9


def test_an_unconverged_run_is_refused_and_the_dense_solver_answers():
    # A flat spectrum with small gaps: 8 Krylov blocks cannot separate the 10th eigenvector.
    generator = torch.Generator().manual_seed(3)
    values = torch.cat([torch.tensor([50.0, 40.0], dtype=torch.float64), 1 + 1e-3 * torch.rand(398, generator=generator, dtype=torch.float64)])
    gram, _ = _known_spectrum(400, values.sort(descending=True).values, seed=3)
    _, certified = certified_krylov(gram, 10, 18, [8])
    assert certified.tolist() == [False]
    dense = dense_top_eigenvectors(gram, 10)
    assert float(_angle_sines(top_eigenvectors(gram, 10)[0], dense[0]).max()) < 1e-9


def test_the_exact_solver_takes_the_same_decisions_by_either_path(monkeypatch):
    x, importance = make_inputs(2, 576, 256, seed=4)
    centred = psca.centred_sigmoid(x, "token")
    gram = (centred @ centred.transpose(-1, -2)).double()
    _, certified = certified_krylov(gram, 16, 24, [8, 10, 12])
    assert certified.all(), "the case must take the Krylov path, else it tests nothing"
    krylov_path = select(x, 64, importance=importance, reserved=1)
    monkeypatch.setattr(linalg, "_KRYLOV_MIN_SIZE", 10**9)  # dense only
    dense_path = select(x, 64, importance=importance, reserved=1)
    assert torch.equal(krylov_path.groups, dense_path.groups)
    assert all(torch.equal(a, b) for a, b in zip(krylov_path.indices, dense_path.indices))
    no_importance = select(x, 64, reserved=1)
    monkeypatch.undo()
    torch.testing.assert_close(select(x, 64, reserved=1).scores, no_importance.scores, rtol=0, atol=1e-6)


def _golden_views():
    for path in sorted(GOLDEN.glob("case*.npz")):
        data = np.load(path)
        features = torch.from_numpy(data["features"].astype(np.float32))[:, 1:]
        importance = torch.from_numpy(data["cls_attention"].astype(np.float32)).sum(dim=1)
        yield path.stem, features, importance, int(data["budget"])


def _overlaps(exact, other):
    return [len(set(a.tolist()) & set(b.tolist())) / a.numel() for a, b in zip(exact.indices, other.indices)]


def _golden_like(seed, concepts, shared, noise, width=1024, tokens=576):
    """Features made as the golden cases were (a shared direction, planted concepts, noise)
    with a peaked CLS-like importance."""
    generator = torch.Generator().manual_seed(seed)
    direction, centres = torch.randn(width, generator=generator), torch.randn(concepts, width, generator=generator)
    labels = torch.randint(concepts, (1, tokens), generator=generator)
    x = shared * direction + centres[labels] + noise * torch.randn(1, tokens, width, generator=generator)
    return x, torch.softmax(3 * torch.randn(1, tokens, generator=generator), dim=-1) * 16


def test_the_fast_solver_keeps_nearly_the_exact_tokens(monkeypatch):
    """Overlap = share of the exact solver's kept tokens that the fast solver keeps too, per
    view, where its Krylov run is used (N <= 64 at T = 576): the golden cases' features
    (importance = their CLS attention) and more made the same way."""
    ran, exact_calls = [], []
    original, original_exact = linalg._block_krylov, linalg.top_eigenvectors
    monkeypatch.setattr(linalg, "_block_krylov", lambda *args: ran.append(1) or original(*args))
    monkeypatch.setattr(linalg, "top_eigenvectors", lambda *args: exact_calls.append(1) or original_exact(*args))
    views = [(features, importance, budget) for _, features, importance, budget in _golden_views() if budget <= 64]
    views += [(*_golden_like(seed, concepts, shared, noise), budget) for seed, concepts, shared, noise, budget in [
        (1, 6, 0.5, 1.2, 32), (2, 12, 1.0, 1.0, 64), (3, 20, 1.2, 0.8, 64), (4, 30, 0.9, 0.7, 32),
        (5, 8, 0.7, 1.0, 64), (6, 16, 1.0, 0.9, 32),
    ]]
    overlaps = []
    for features, importance, budget in views:
        exact = select(features, budget, importance=importance, reserved=1)
        ran.clear(), exact_calls.clear()
        fast = select(features, budget, importance=importance, reserved=1, solver="krylov")
        assert ran and not exact_calls, "the fast solver must run its own Krylov iteration here"
        overlaps += _overlaps(exact, fast)
    # (Runs stopped at 7 blocks whatever their residuals left views at 0.89-0.97.)
    assert float(np.mean(overlaps)) >= 0.99, overlaps
    assert min(overlaps) >= 0.95, overlaps


def test_the_fast_solver_takes_a_float32_dense_route_for_many_components(monkeypatch):
    """Where K reaches into the noise bulk (N >= 80 at T = 576; here 128 and 192) no short Krylov run
    settles it: the fast solver diagonalises the float32 Gram instead, never the float64
    one, and keeps the exact solver's tokens (the golden cases at N >= 128 and more)."""
    dense_calls, exact_calls = [], []
    original_dense, original_exact = linalg.dense_top_eigenvectors, linalg.top_eigenvectors
    monkeypatch.setattr(linalg, "dense_top_eigenvectors", lambda m, k: dense_calls.append(m.dtype) or original_dense(m, k))
    monkeypatch.setattr(linalg, "top_eigenvectors", lambda *args: exact_calls.append(1) or original_exact(*args))
    views = [(features, importance, budget) for _, features, importance, budget in _golden_views() if budget >= 128]
    views += [(*_golden_like(seed, concepts, shared, noise), budget) for seed, concepts, shared, noise, budget in [
        (7, 10, 0.8, 1.0, 128), (8, 24, 1.0, 0.9, 192), (9, 6, 1.2, 1.1, 192),
    ]]
    assert len(views) >= 5
    overlaps = []
    for features, importance, budget in views:
        exact = select(features, budget, importance=importance, reserved=1)
        dense_calls.clear(), exact_calls.clear()
        fast = select(features, budget, importance=importance, reserved=1, solver="krylov")
        assert dense_calls == [torch.float32] and not exact_calls
        overlaps += _overlaps(exact, fast)
    assert float(np.mean(overlaps)) >= 0.99 and min(overlaps) >= 0.95, overlaps


@pytest.mark.parametrize("k", [1, 16, 48])
def test_the_float32_dense_eigenvectors_are_the_top_ones(k):
    generator = torch.Generator().manual_seed(k)
    rows = torch.randn(300, 500, generator=generator) * torch.linspace(2, 0.1, 500)
    gram = rows @ rows.T
    gram = (gram + gram.T) / 2
    got = dense_top_eigenvectors(gram[None], k)[0]
    assert got.dtype == torch.float32 and got.shape == (300, k)
    reference = torch.linalg.eigh(gram.double())[1][:, -k:].flip(-1)
    # Same vectors up to sign, largest eigenvalue first.
    assert float((1 - (got.double() * reference).sum(0).abs()).max()) < 1e-4


def test_the_fast_solver_is_deterministic_and_finds_separated_components():
    values = _spiked(300, 12)
    generator = torch.Generator().manual_seed(5)
    # Tokens whose centred sigmoid has the spectrum above: the leading directions converge.
    x = torch.randn(2, 300, 700, generator=generator) * 0.05
    x[:, :, :12] += 3 * torch.randn(2, 300, 12, generator=generator) * (0.8 ** torch.arange(12))
    first = principal_token_components(x, 6, solver="krylov")
    assert torch.equal(first, principal_token_components(x, 6, solver="krylov"))
    exact = principal_token_components(x, 6, solver="exact")
    assert float(_angle_sines(first.double(), exact.double()).max()) < 1e-3


def _chain(length):
    conflicts = torch.zeros(1, length, length)
    conflicts[0, torch.arange(length - 1), torch.arange(1, length)] = 1.0
    return conflicts


@pytest.mark.parametrize("seed", range(6))
def test_fixed_round_nms_equals_rounds_until_done(seed):
    generator = torch.Generator().manual_seed(seed)
    size = 60
    takeable = torch.rand(3, size, generator=generator) > 0.1
    density = [0.02, 0.1, 0.4][seed % 3]
    conflicts = (torch.rand(3, size, size, generator=generator) < density).float().triu(1)
    conflicts = conflicts * takeable[:, :, None]  # only takeable tokens discard others
    expected = greedy_nms_rounds(conflicts, takeable, None)
    assert torch.equal(greedy_nms_rounds(conflicts, takeable, int(nms_round_bound(conflicts, takeable))), expected)


def test_the_round_bound_holds_for_the_longest_chain():
    # 0 discards 1, 1 would discard 2, ...: survivors alternate, and the last token is only
    # decided in the last of `length` rounds.
    for length in (2, 3, 8, 9):
        conflicts, takeable = _chain(length), torch.ones(1, length, dtype=torch.bool)
        expected = torch.arange(length) % 2 == 0
        assert torch.equal(greedy_nms_rounds(conflicts, takeable, None)[0], expected)
        assert int(nms_round_bound(conflicts, takeable)) == length
        assert torch.equal(greedy_nms_rounds(conflicts, takeable, int(nms_round_bound(conflicts, takeable)))[0], expected)


def _quotas_raising_one_at_a_time(sizes, survivor_counts, budgets, to_keep, caps):
    """The quotas with the ceilings raised one step per loop, as the reference does
    (the same as group_quotas otherwise)."""
    lower = sizes.clamp(max=1)
    upper = torch.minimum(torch.minimum(caps[:, None].expand_as(sizes), sizes), survivor_counts)
    while True:
        short = upper.sum(1) < torch.minimum(budgets, sizes.sum(1))
        if not bool(short.any()):
            break
        upper = torch.where(short[:, None], torch.minimum(upper + 1, sizes), upper)
    remaining = (to_keep - lower.sum(1)).clamp(min=0)
    share = survivor_counts / survivor_counts.sum(1, keepdim=True).clamp(min=1)
    rounded = (torch.cumsum(share, dim=1) * remaining[:, None]).round().long()
    quotas = torch.minimum(lower + rounded - torch.nn.functional.pad(rounded[:, :-1], (1, 0)), upper)
    for b in range(sizes.shape[0]):
        for g in torch.sort(survivor_counts[b], descending=True, stable=True).indices.tolist():
            missing = int(lower[b].sum() + remaining[b] - quotas[b].sum())
            quotas[b, g] += max(0, min(int(upper[b, g] - quotas[b, g]), missing))
    return quotas


@pytest.mark.parametrize("seed", range(30))
def test_loop_free_quota_ceilings_equal_raising_one_at_a_time(seed):
    generator = torch.Generator().manual_seed(seed)
    batch, k = 4, int(torch.randint(1, 30, (1,), generator=generator))
    sizes = torch.randint(0, 40, (batch, k), generator=generator)
    sizes[:, 0] += 1  # no view without tokens
    survivor_counts = (sizes.float() * torch.rand(batch, k, generator=generator)).long().clamp(min=sizes.clamp(max=1))
    totals = sizes.sum(1)
    budgets = torch.randint(2, int(totals.max()) + 40, (batch,), generator=generator)
    to_keep = torch.minimum(budgets - 1, totals)
    caps = torch.randint(1, 12, (batch,), generator=generator)
    lower_fits = sizes.clamp(max=1).sum(1) <= to_keep  # (the other branch is tested elsewhere)
    expected = _quotas_raising_one_at_a_time(sizes, survivor_counts, budgets, to_keep, caps)
    got = group_quotas(sizes, survivor_counts, budgets, to_keep, caps)
    assert torch.equal(got[lower_fits], expected[lower_fits])


def _kept_indices_per_view(group_of, position, quotas, keep_all, order):
    """The step-by-step definition: for each view, its kept tokens in output order."""
    batch, num_tokens = group_of.shape
    out = []
    for b in range(batch):
        if bool(keep_all[b]):
            out.append(list(range(num_tokens)))
            continue
        kept = [i for i in range(num_tokens) if position[b, i] < quotas[b, group_of[b, i]]]
        if order == "reference":
            kept.sort(key=lambda i: (int(group_of[b, i]), int(position[b, i])))
        out.append(kept)
    return out


@pytest.mark.parametrize("order", ["reference", "spatial"])
@pytest.mark.parametrize("seed", range(5))
def test_batched_output_order_equals_the_per_view_definition(order, seed):
    generator = torch.Generator().manual_seed(seed)
    batch, num_tokens, k = 4, 50, 7
    group_of = torch.randint(0, k, (batch, num_tokens), generator=generator)
    position = torch.empty_like(group_of)
    for b in range(batch):
        for g in range(k):
            members = (group_of[b] == g).nonzero().flatten()
            position[b, members] = torch.randperm(members.numel(), generator=generator)
    quotas = torch.randint(0, 9, (batch, k), generator=generator)
    keep_all = torch.tensor([False, True, False, False])
    got = kept_indices(group_of, position, quotas, keep_all, order)
    assert [index.tolist() for index in got] == _kept_indices_per_view(group_of, position, quotas, keep_all, order)
    assert all(index.dtype == torch.long for index in got)


def test_the_device_code_paths_make_the_same_selection(monkeypatch):
    """What runs on a GPU (Krylov certified once after a fixed run, NMS rounds counted in
    advance), exercised here on the CPU: the same selection as the CPU paths."""
    x, importance = make_inputs(2, 576, 256, seed=6)
    heavy = {"lam": 0.6}  # tau well below 1: NMS discards many tokens
    expected = [select(x, budget, importance=importance, reserved=1, **heavy) for budget in (64, 32)]
    monkeypatch.setattr(devices, "waits_are_free", lambda device: False)
    for budget, reference in zip((64, 32), expected):
        got = select(x, budget, importance=importance, reserved=1, **heavy)
        assert not reference.survivors.all(), "NMS must discard something here"
        assert torch.equal(got.groups, reference.groups) and torch.equal(got.survivor_rank, reference.survivor_rank)
        assert all(torch.equal(a, b) for a, b in zip(got.indices, reference.indices))


def test_nms_blocks_are_padded_to_the_documented_ladder_on_the_tokens_device():
    """The padded block lengths are 0, 16, 32, 48, 64, then powers of two and one and a half
    times them, ending at the first length that holds the largest group (a group is padded by
    at most half its length beyond 16; one length more is memory for nothing). Catches the
    ladder's steps or its stopping test changed, and the ladder made on the host whatever the
    tokens' device (``searchsorted`` would then mix devices on a GPU; "meta" stands for one)."""
    assert nms_blocks._block_lengths(64, "cpu").tolist() == [0, 16, 32, 48, 64]
    assert nms_blocks._block_lengths(65, "cpu").tolist() == [0, 16, 32, 48, 64, 96]
    assert nms_blocks._block_lengths(700, "cpu").tolist() == [0, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768]
    assert nms_blocks._block_lengths(100, torch.device("meta")).device.type == "meta"


def test_the_nms_discards_only_tokens_strictly_more_similar_than_tau():
    """Greedy NMS discards a token more similar than tau to a kept one; at exactly tau it
    stays (SPEC: S_ij > tau). Catches the block conflicts written with ``>=``."""
    xn = torch.tensor([[[1.0, 0.0], [0.6, 0.8]]])  # cosine similarity exactly float32(0.6)
    group_of, rank = torch.zeros(1, 2, dtype=torch.long), torch.arange(2)[None]
    takeable = torch.ones(1, 2, dtype=torch.bool)
    at_tau = nms_blocks.greedy_nms_survivors(xn, group_of, rank, takeable, torch.tensor([0.6]))
    below_tau = nms_blocks.greedy_nms_survivors(xn, group_of, rank, takeable, torch.tensor([0.59]))
    assert at_tau.tolist() == [[True, True]] and below_tau.tolist() == [[True, False]]


@pytest.mark.parametrize("seed", range(3))
def test_resolving_with_the_round_count_fixed_in_advance_gives_the_same_survivors(seed, monkeypatch):
    """Off the CPU, resolve_greedy_nms runs the rounds a fixed number of times (counted
    before the loop); the survivors must be those of rounds run until every token is decided.
    Catches that branch passing the wrong tensors or the wrong count to the rounds."""
    generator = torch.Generator().manual_seed(seed)
    takeable = torch.rand(2, 40, generator=generator) > 0.1
    conflicts = (torch.rand(2, 40, 40, generator=generator) < 0.15).float().triu(1) * takeable[:, :, None]
    expected = greedy_nms_rounds(conflicts, takeable, None)
    monkeypatch.setattr(devices, "waits_are_free", lambda device: False)
    assert torch.equal(nms_blocks.resolve_greedy_nms(conflicts, takeable), expected)


def test_the_device_path_resolves_the_longest_chain(monkeypatch):
    """Tokens on an arc, each similar enough to its neighbours only and ordered along it:
    the first discards the second, which cannot discard the third, ... so deciding the last
    one takes as many rounds as there are tokens, the most the round count allows."""
    count, step = 41, 0.05
    angles = torch.arange(count) * step
    xn = torch.stack([angles.cos(), angles.sin(), torch.zeros(count), torch.zeros(count)], dim=-1)[None]
    tau = torch.tensor([(np.cos(step) + np.cos(2 * step)) / 2], dtype=torch.float32)
    group_of = torch.zeros(1, count, dtype=torch.long)
    rank = torch.arange(count)[None]  # importance decreases along the arc
    takeable = torch.ones(1, count, dtype=torch.bool)
    expected = torch.arange(count)[None] % 2 == 0
    assert torch.equal(nms_blocks.greedy_nms_survivors(xn, group_of, rank, takeable, tau), expected)
    monkeypatch.setattr(devices, "waits_are_free", lambda device: False)
    assert torch.equal(nms_blocks.greedy_nms_survivors(xn, group_of, rank, takeable, tau), expected)
