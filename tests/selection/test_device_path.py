"""On a GPU, select() reads nothing back from the device inside a loop.

There is no GPU here, so the device code paths (taken where ``devices.waits_are_free`` is False,
i.e. off the CPU: Krylov runs of fixed length checked once, NMS rounds counted in advance,
torch's eigensolvers instead of SciPy's) run on the CPU while every read-back a GPU would
wait for is recorded: ``bool`` / ``int`` / ``float`` / ``item`` of a tensor
(``aten._local_scalar_dense``), ops whose output shape depends on the data (``nonzero``,
``masked_select``, ``unique``), and ``Tensor.tolist`` / ``numpy`` / ``cpu``.

A read inside a loop would make their number grow with the loop's trip count: views in the
batch, NMS rounds (a lower tau discards more, in longer chains), Krylov blocks. So the count
must be the same across such cases, and small. (Reads of host tensors, such as the
budgets, are counted too: the counts are upper bounds.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.compressor import make_inputs
import prunesid
from prunesid import devices, select

PACKAGE = str(Path(prunesid.__file__).resolve().parent)
READ_BACK_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "_unique2", "unique_dim", "unique_consecutive"}


def _caller() -> str:
    """The innermost prunesid function on the stack, as ``module.function``."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith(PACKAGE):
            return f"{Path(frame.f_code.co_filename).stem}.{frame.f_code.co_name}"
        frame = frame.f_back
    return "?"


class ReadBacks(TorchDispatchMode):
    """Records where each read-back happens while active."""

    PATCHED = ("tolist", "numpy", "cpu")

    def __init__(self):
        super().__init__()
        self.sites: list[str] = []
        self._own: dict[str, object] = {}  # methods defined on torch.Tensor itself, restored on exit

    def __enter__(self):
        for name in self.PATCHED:
            if name in vars(torch.Tensor):
                self._own[name] = vars(torch.Tensor)[name]
            original = getattr(torch.Tensor, name)

            def recording(tensor, *args, _original=original, _name=name, **kwargs):
                self.sites.append(f"{_caller()} ({_name})")
                return _original(tensor, *args, **kwargs)

            setattr(torch.Tensor, name, recording)
        return super().__enter__()

    def __exit__(self, *exc):
        for name in self.PATCHED:
            if name in self._own:
                setattr(torch.Tensor, name, self._own.pop(name))
            else:
                delattr(torch.Tensor, name)  # back to the method torch.Tensor inherits
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in READ_BACK_OPS:
            self.sites.append(f"{_caller()} ({func.overloadpacket.__name__})")
        return func(*args, **(kwargs or {}))


@pytest.fixture
def device_paths(monkeypatch):
    monkeypatch.setattr(devices, "waits_are_free", lambda device: False)

    def run(x, budget, **options):
        recorder = ReadBacks()
        with recorder:
            result = select(x, budget, reserved=1, **options)
        return result, recorder.sites

    return run


def _inputs(batch, seed=3):
    """LLaVA-1.5-sized views (D > T: PSCA on the T x T Gram, Krylov first at N 32 and 64)."""
    return make_inputs(batch, 576, 1024, seed=seed)


@pytest.mark.parametrize("solver", ["exact", "krylov"])
def test_read_backs_do_not_grow_with_views_rounds_or_blocks(device_paths, solver):
    x, importance = _inputs(4)
    cases = {
        "1 view, lambda 0.6": (x[:1], importance[:1], 64, 0.6),
        "4 views, lambda 0.6": (x, importance, 64, 0.6),
        "4 views, lambda 0.3 (longer NMS chains)": (x, importance, 64, 0.3),
        "4 views, N 32 (other K, other Krylov run)": (x, importance, 32, 0.6),
    }
    sites = {}
    for name, (tokens, weights, budget, lam) in cases.items():
        result, sites[name] = device_paths(tokens, budget, importance=weights, lam=lam, solver=solver)
        assert not result.survivors.all(), f"{name}: NMS must discard tokens for this test to mean anything"
    counts = {name: len(found) for name, found in sites.items()}
    assert len(set(counts.values())) == 1, (counts, sites)
    assert max(counts.values()) <= 12, sites
    assert not any("(numpy)" in site for found in sites.values() for site in found), "SciPy must not run on a device"


def test_the_dynamic_budget_reads_phi_back_once(device_paths):
    x, importance = _inputs(4, seed=5)
    x[1] += 2 * x[1].mean(dim=0)  # a stronger shared direction: more redundant, a smaller share
    _, fixed = device_paths(x, 64, importance=importance, lam=0.6)
    result, dynamic = device_paths(x, 64, importance=importance, lam=0.6, dynamic=True)
    assert int(result.budget.sum()) == 4 * 64 and len(set(result.budget.tolist())) > 1
    extra = list(dynamic)
    for site in fixed:
        extra.remove(site)
    # phi is copied to the host once; the budget arithmetic (a bisection of up to 200
    # steps) then runs on host tensors only, which the CPU stand-in cannot tell apart.
    assert extra[0] == "stages.select (cpu)" and "stages.select (cpu)" not in extra[1:], extra
    host_side = {"dynamic.dynamic_budgets", "dynamic._shares_with_total", "dynamic._largest_remainder"}
    assert {site.split(" ")[0] for site in extra[1:]} <= host_side, extra


def test_ragged_views_read_back_once_per_group_of_equal_counts(device_paths):
    x, importance = _inputs(4, seed=7)
    valid = torch.ones(4, 576, dtype=torch.bool)
    valid[1, 500:] = False
    valid[3, 500:] = False  # two groups of views: 576 and 500 selectable tokens
    _, full = device_paths(x[:2], 64, importance=importance[:2], lam=0.6)
    _, ragged = device_paths(x, 64, importance=importance, lam=0.6, valid=valid)
    # The per-view decisions are made on the host (one read of the counts); each group of
    # views is then one selection, with the reads of one selection.
    def per_selection(sites):
        return [site for site in sites if not site.startswith(("stages.select ", "validate.validated_inputs "))]

    assert len(per_selection(ragged)) == 2 * len(per_selection(full)) > 0, (ragged, full)

    def in_select(sites):
        return [site for site in sites if site.startswith("stages.select ")]

    assert in_select(ragged) == in_select(full), (ragged, full)
