"""Time of prunesid.select() per solver, side by side with the authors' released selection.

Every case times, in one run with interleaved repeats (each repeat calls every contender
once, in turn) and reports medians:

- ``exact``, ``krylov``, ``randomized``: ``select()`` with that PSCA solver (linalg.py);
- ``floor``: one batched T x T cosine-similarity matmul on the same tokens, which no
  implementation of PruneSID avoids;
- ``authors`` (with ``--authors PATH``): the selection of the authors' released LLaVA code,
  read at run time from PATH (a checkout of their repository; nothing of it is copied into
  this project), on the same features and CLS attention.

Ratios are ``authors ms / ours ms`` (above 1 we are faster). Overlap is the share of the
exact solver's kept tokens that the other contender keeps too (mean over the views); the
overlap study repeats it on golden-like views (made as tests/golden was) at N 32 and 64. Peak
memory (CPU) is the peak of live allocations in one exact call (torch allocator events
plus NumPy/SciPy via tracemalloc); ``[B,T,T] MB`` is one [B, T, T] float32 tensor.

    python benchmarks/compressor.py [--authors PATH] [--repeats 7] [--threads 2] [--device cpu|cuda]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import statistics
import sys
import time
import tracemalloc
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

CASES = [
    # name, views (B), tokens (T), width (D), budget (N)
    ("LLaVA-1.5 N=64", 1, 576, 1024, 64),
    ("LLaVA-1.5 N=192", 1, 576, 1024, 192),
    ("LLaVA-NeXT 5 views N=64", 5, 576, 1024, 64),
    ("LLaVA-NeXT 5 views N=32", 5, 576, 1024, 32),
    ("2880-token image N=160", 1, 2880, 1024, 160),
]
SOLVERS = ("exact", "krylov", "randomized")
AUTHORS_FILE = Path("prunesid") / "prunesid_llava" / "clip_encoder.py"
HEADS = 16


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


def model_outputs(x, importance):
    """What a LLaVA vision tower hands over: the feature layer's hidden states with a CLS
    token first ([B, T+1, D]) and its attention ([B, H, T+1, T+1]; only the CLS row is
    read, so it is an expanded view whose heads sum to ``importance``)."""
    batch, tokens, _ = x.shape
    hidden = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)
    cls_row = torch.cat([torch.zeros_like(importance[:, :1]), importance], dim=1) / HEADS
    attention = cls_row[:, None, None, :].expand(batch, HEADS, tokens + 1, tokens + 1)
    return hidden, attention


def floor(hidden):
    xn = F.normalize(hidden[:, 1:], dim=-1)
    return torch.bmm(xn, xn.transpose(1, 2))


def ours(hidden, attention, budget, solver):
    """select() as the LLaVA adapter calls it: patch tokens, CLS attention summed over
    heads, the CLS passed through (one reserved slot)."""
    from prunesid import select

    importance = attention[:, :, 0, 1:].sum(dim=1)
    return select(hidden[:, 1:], budget, importance=importance, reserved=1, solver=solver)


def load_authors_selection(path):
    """The authors' LLaVA selection, read from their checkout at ``path`` at run time.

    Their ``CLIPVisionTower_PruneSID.forward`` runs the vision tower and then selects; the
    module's functions and class are compiled from their file (its imports are supplied
    here, so nothing else of their repository or of LLaVA is needed) and ``forward`` is
    called on a stand-in whose tower returns the given hidden states and attention, so
    only their selection is timed. Returns ``fn(hidden, attention, budget) -> [B, N]``
    kept indices (CLS at 0, patch i at i + 1), and the file read."""
    source_file = Path(path) / AUTHORS_FILE
    if not source_file.is_file():
        raise SystemExit(f"--authors: {source_file} not found; PATH must be a checkout of the authors' PruneSID repository")
    tree = ast.parse(source_file.read_text(), filename=str(source_file))
    tree.body = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    namespace = {"torch": torch, "nn": nn, "F": F, "math": math, "np": np, "__name__": "authors_prunesid"}
    exec(compile(tree, str(source_file), "exec"), namespace)  # noqa: S102 - their code, read at run time
    tower_class = namespace.get("CLIPVisionTower_PruneSID")
    if tower_class is None or not hasattr(tower_class, "forward"):
        raise SystemExit(f"--authors: {source_file} has no CLIPVisionTower_PruneSID.forward")

    def select_like_the_authors(hidden, attention, budget):
        outputs = types.SimpleNamespace(hidden_states=[hidden, None], attentions=[attention, None])
        tower = types.SimpleNamespace(
            vision_tower=lambda images, **_: outputs, device=hidden.device, dtype=hidden.dtype, need_token_num=budget,
        )
        images = torch.zeros(hidden.shape[0], 1, device=hidden.device)
        return tower_class.forward(tower, images)[1]

    return select_like_the_authors, source_file


def _synchronize(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_interleaved(calls, repeats, device):
    """Median ms of each call: one warm-up each, then ``repeats`` rounds that call every
    contender once, in turn, so that drift of the machine affects all of them alike."""
    for fn in calls.values():
        fn()
    timings = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            _synchronize(device)
            start = time.perf_counter()
            fn()
            _synchronize(device)
            timings[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in timings.items()}


def kept_sets(result):
    """Kept patch indices per view, from a Selection or the authors' [B, N] indices."""
    if isinstance(result, torch.Tensor):
        return [set((row[row > 0] - 1).tolist()) for row in result.cpu()]
    return [set(index.tolist()) for index in result.indices]


def overlap(reference, other):
    return statistics.mean(len(r & o) / max(1, len(r)) for r, o in zip(reference, other))


def golden_like(seed, width, concepts, shared, noise, tokens=576):
    """One view made as the golden cases were (a shared direction, planted concepts, noise;
    see tests/golden/cases.json) with a peaked CLS-like attention."""
    generator = torch.Generator().manual_seed(seed)
    direction, centres = torch.randn(width, generator=generator), torch.randn(concepts, width, generator=generator)
    labels = torch.randint(concepts, (1, tokens), generator=generator)
    x = shared * direction + centres[labels] + noise * torch.randn(1, tokens, width, generator=generator)
    return x, torch.softmax(3 * torch.randn(1, tokens, generator=generator), dim=-1) * 16


STUDY_BUDGETS = (32, 64, 128, 192)


def overlap_study(views, authors, device):
    """Kept-token overlap with the exact solver on ``views`` golden-like views (D 512 or 1024,
    6-30 concepts, shared 0.5-1.2, noise 0.7-1.2, N 32, 64, 128 or 192 in turn, drawn with a
    fixed seed): overall, then per N."""
    rng = np.random.default_rng(0)
    found = {name: [] for name in ("krylov", "randomized", *(["authors"] if authors else []))}
    budgets = []
    for view in range(views):
        width, budget = int(rng.choice([512, 1024])), STUDY_BUDGETS[view % len(STUDY_BUDGETS)]
        budgets.append(budget)
        x, importance = golden_like(1000 + view, width, int(rng.integers(6, 31)), rng.uniform(0.5, 1.2), rng.uniform(0.7, 1.2))
        hidden, attention = model_outputs(x.to(device), importance.to(device))
        exact = kept_sets(ours(hidden, attention, budget, "exact"))
        for name in found:
            result = authors(hidden, attention, budget) if name == "authors" else ours(hidden, attention, budget, name)
            found[name].append(overlap(exact, kept_sets(result)))
    def summary(values):
        return {"mean": round(statistics.mean(values), 3), "min": round(min(values), 3),
                "share_at_least_0.95": round(sum(v >= 0.95 for v in values) / len(values), 2)}

    study = {}
    for name, values in found.items():
        study[name] = summary(values)
        for budget in STUDY_BUDGETS:
            here = [value for value, b in zip(values, budgets) if b == budget]
            if here:
                study[f"{name} N={budget}"] = summary(here)
    return study


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


def run_case(case, args, authors):
    name, batch, tokens, width, budget = case
    x, importance = make_inputs(batch, tokens, width)
    dtype = torch.float16 if args.device.startswith("cuda") and args.half else torch.float32
    hidden, attention = model_outputs(x.to(args.device, dtype), importance.to(args.device, dtype))
    calls = {solver: (lambda s=solver: ours(hidden, attention, budget, s)) for solver in SOLVERS}
    calls["floor"] = lambda: floor(hidden)
    if authors is not None:
        calls["authors"] = lambda: authors(hidden, attention, budget)
    times = time_interleaved(calls, args.repeats, args.device)

    exact = kept_sets(calls["exact"]())
    row = {"case": name, "B": batch, "T": tokens, "D": width, "N": budget}
    for contender in ("authors", *SOLVERS, "floor"):
        if contender in times:
            row[f"{contender}_ms"] = round(times[contender], 2)
    if authors is not None:
        for solver in SOLVERS:
            row[f"{solver}_speedup"] = round(times["authors"] / times[solver], 2)
    for contender in ("krylov", "randomized", "authors"):
        if contender in calls:
            row[f"{contender}_overlap"] = round(overlap(exact, kept_sets(calls[contender]())), 3)
    if not args.no_memory and args.device == "cpu":
        row["exact_peak_mb"] = round(peak_memory_mb(calls["exact"]), 1)
        row["btt_mb"] = round(batch * tokens * tokens * 4 / 2**20, 1)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", metavar="PATH", help="checkout of the authors' PruneSID repository, timed side by side")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--half", action="store_true", help="float16 features on CUDA, as LLaVA runs")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    parser.add_argument("--cases", help="comma-separated case numbers to run (default all), e.g. 0,2")
    parser.add_argument("--overlap-views", type=int, default=48, help="golden-like views for the overlap study (0: none)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    torch.set_num_threads(args.threads)
    authors, source_file = load_authors_selection(args.authors) if args.authors else (None, None)
    cases = CASES if not args.cases else [CASES[int(i)] for i in args.cases.split(",")]

    load_before = os.getloadavg()[0]
    rows = [run_case(case, args, authors) for case in cases]
    load = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # other work on the machine skews times
    study = overlap_study(args.overlap_views, authors, args.device) if args.overlap_views else None

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"{args.repeats} interleaved repeats (medians), load average {load[0]} -> {load[1]}"
          + (f", authors' code from {source_file}" if authors else ""))
    columns = list(dict.fromkeys(column for row in rows for column in row))
    print(" | ".join(columns))
    print(" | ".join("---" for _ in columns))
    for row in rows:
        print(" | ".join(str(row.get(column, "")) for column in columns))
    if study:
        print(f"\nkept-token overlap with the exact solver, {args.overlap_views} golden-like views (N 32, 64, 128, 192):")
        print("solver | mean | min | share of views >= 0.95")
        print("--- | --- | --- | ---")
        for name, values in study.items():
            print(f"{name} | {values['mean']} | {values['min']} | {values['share_at_least_0.95']}")
    print(json.dumps({
        "benchmark": "compressor", "device": args.device, "threads": torch.get_num_threads(),
        "repeats": args.repeats, "load_average": load, "authors": str(source_file) if authors else None, "rows": rows,
        "overlap_study": study,
    }))


if __name__ == "__main__":
    sys.exit(main())
