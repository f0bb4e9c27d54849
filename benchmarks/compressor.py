"""Time and peak memory of prunesid.select() next to the floor, measured side by side.

Rows time the reference (exact PSCA) and solver="randomized" (the authors' low-rank PCA).
The floor is what no implementation of PruneSID avoids: one batched T x T cosine-similarity
matmul on the same tokens. Every case runs all of them in one run and reports medians; peak
memory is the peak of live allocations during one call (torch allocator events plus
NumPy/SciPy via tracemalloc); tt_matrix_mb is the size of one [B, T, T] float32 tensor.

    python benchmarks/compressor.py [--repeats 15] [--device cpu]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

CASES = [
    # name, images (B), tokens (T), width (D), budget (N)
    ("LLaVA-1.5 N=64", 1, 576, 1024, 64),
    ("LLaVA-1.5 N=192", 1, 576, 1024, 192),
    ("LLaVA-NeXT tiles N=64", 5, 576, 1024, 64),
    ("2880-token image N=160", 1, 2880, 1024, 160),
]


def make_inputs(batch, tokens, width, seed=0, device="cpu"):
    """Patch-like tokens: a shared direction, a few dozen concepts, noise; CLS-like
    attention that is peaked on a few tokens (softmax of scaled noise)."""
    generator = torch.Generator().manual_seed(seed)
    shared = torch.randn(width, generator=generator)
    concepts = torch.randn(24, width, generator=generator)
    labels = torch.randint(24, (batch, tokens), generator=generator)
    x = shared + concepts[labels] + 0.9 * torch.randn(batch, tokens, width, generator=generator)
    importance = torch.softmax(3 * torch.randn(batch, tokens, generator=generator), dim=-1) * 16
    return x.to(device), importance.to(device)


def floor(x):
    xn = F.normalize(x, dim=-1)
    return torch.bmm(xn, xn.transpose(1, 2))


def run_select(x, importance, budget, solver="exact"):
    from prunesid import select

    return select(x, budget, importance=importance, reserved=1, solver=solver)


def _synchronize(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_side_by_side(x, importance, budget, repeats, device, rounds=3):
    """Median ms of each call. Calls of one kind run back to back (warm thread pools and
    caches, as in steady serving); the kinds alternate over a few rounds so that drift of
    the machine affects all of them alike."""
    calls = {
        "floor": lambda: floor(x),
        "select": lambda: run_select(x, importance, budget),
        "randomized": lambda: run_select(x, importance, budget, solver="randomized"),
    }
    timings = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            fn()  # warm-up
            for _ in range(max(1, repeats // rounds)):
                _synchronize(device)
                start = time.perf_counter()
                fn()
                _synchronize(device)
                timings[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in timings.items()}


def peak_memory_mb(fn):
    """Peak of live memory while ``fn`` runs: torch's CPU allocations (profiler memory
    events, replayed in time order) plus NumPy/SciPy allocations (tracemalloc, in a
    separate call so that the profiler's own bookkeeping is not counted)."""
    tracemalloc.start()
    fn()
    _, numpy_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return (peak + numpy_peak) / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    args = parser.parse_args()

    rows = []
    for name, batch, tokens, width, budget in CASES:
        x, importance = make_inputs(batch, tokens, width, device=args.device)
        times = time_side_by_side(x, importance, budget, args.repeats, args.device)
        row = {
            "case": name, "B": batch, "T": tokens, "D": width, "N": budget,
            "select_ms": round(times["select"], 2), "floor_ms": round(times["floor"], 2),
            "ratio": round(times["select"] / times["floor"], 2),
            "randomized_ms": round(times["randomized"], 2),
            "randomized_ratio": round(times["randomized"] / times["floor"], 2),
        }
        if not args.no_memory and args.device == "cpu":
            row["select_peak_mb"] = round(peak_memory_mb(lambda: run_select(x, importance, budget)), 1)
            row["floor_peak_mb"] = round(peak_memory_mb(lambda: floor(x)), 1)
            row["tt_matrix_mb"] = round(batch * tokens * tokens * 4 / 2**20, 1)
        rows.append(row)

    columns = list(rows[0])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    print(" | ".join(columns))
    print(" | ".join("---" for _ in columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))
    print(json.dumps({"benchmark": "compressor", "device": args.device, "threads": torch.get_num_threads(), "rows": rows}))


if __name__ == "__main__":
    main()
