"""Selection time of every method (press) on the same tokens, next to PruneSID.

Each case builds one batch of views as the VLM hands it to a press (features, CLS attention,
the feature layer's keys, grid shapes) and times ``press.compress(tokens)`` for every
method: PruneSID (exact, the reference, and the randomized solver), VisionZip, DivPrune,
random and uniform. Calls of one method run back to back after a warm-up; the methods
alternate over a few rounds so that drift of the machine affects all alike; medians. Next
to the wall-clock time it reports the process's CPU time per call (all threads), which a
shared, busy machine inflates much less: the work each method does.

DivPrune measures distances where it is given them: here the tower features (D = 1024). In
a VLM it measures them after the projector (LLaVA-1.5-7B: 4096 wide), so the row
"divprune @4096" times it on 4096-wide tokens; the projector pass itself is reported once
per case as "projector ms" (a 1024 -> 4096 -> 4096 MLP over all tokens, random weights).

    python benchmarks/methods.py [--repeats 15] [--rounds 3]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prunesid import DivPrune, PruneSID, RandomPrune, UniformPrune, VisionTokens, VisionZip  # noqa: E402

CASES = [
    # name, views (B), tokens per view (T), grid (rows, cols), width (D), budget (N), a CLS slot
    ("LLaVA-1.5", 1, 576, (24, 24), 1024, 64, True),
    ("LLaVA-NeXT views", 5, 576, (24, 24), 1024, 64, False),
    ("2880-token image", 1, 2880, (48, 60), 1024, 160, True),
]
KEY_WIDTH = 64  # ViT-L/14: 16 heads of 64
PROJECTED_WIDTH = 4096


def make_tokens(batch, tokens, grid, width, cls_slot, seed=0) -> VisionTokens:
    """Patch-like tokens (a shared direction, a few dozen concepts, noise), a peaked CLS
    attention and keys correlated with the features, as compressor.py builds them."""
    generator = torch.Generator().manual_seed(seed)
    shared = torch.randn(width, generator=generator)
    concepts = torch.randn(24, width, generator=generator)
    labels = torch.randint(24, (batch, tokens), generator=generator)
    features = shared + concepts[labels] + 0.9 * torch.randn(batch, tokens, width, generator=generator)
    importance = torch.softmax(3 * torch.randn(batch, tokens, generator=generator), dim=-1) * 16
    keys = features @ torch.randn(width, KEY_WIDTH, generator=generator) / width**0.5
    return VisionTokens(
        features=features, importance=importance, keys=keys, cls_slot=cls_slot, grid_shapes=[grid] * batch,
    )


def presses(budget: int) -> dict:
    return {
        "prunesid": PruneSID(budget=budget),
        "prunesid randomized": PruneSID(budget=budget, solver="randomized"),
        "visionzip": VisionZip(budget=budget),
        "divprune": DivPrune(budget=budget),
        "random": RandomPrune(budget=budget),
        "uniform": UniformPrune(budget=budget),
    }


def time_side_by_side(calls: dict, repeats: int, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall-clock ms and median CPU ms (process time, all threads) of each call."""
    wall = {name: [] for name in calls}
    cpu = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            call()  # warm-up
            for _ in range(max(1, repeats // rounds)):
                start, start_cpu = time.perf_counter(), time.process_time()
                call()
                cpu[name].append((time.process_time() - start_cpu) * 1000)
                wall[name].append((time.perf_counter() - start) * 1000)
    median = lambda table: {name: statistics.median(values) for name, values in table.items()}
    return median(wall), median(cpu)


def projector(width: int, generator: torch.Generator) -> torch.nn.Module:
    mlp = torch.nn.Sequential(torch.nn.Linear(width, PROJECTED_WIDTH), torch.nn.GELU(), torch.nn.Linear(PROJECTED_WIDTH, PROJECTED_WIDTH))
    with torch.no_grad():
        for parameter in mlp.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    return mlp.eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    rows = []
    for name, batch, tokens, grid, width, budget, cls_slot in CASES:
        given = make_tokens(batch, tokens, grid, width, cls_slot)
        generator = torch.Generator().manual_seed(1)
        mlp = projector(width, generator)
        with torch.inference_mode():
            start = time.perf_counter()
            projected = mlp(given.features.reshape(-1, width)).reshape(batch, tokens, PROJECTED_WIDTH)
            projector_ms = (time.perf_counter() - start) * 1000
        wide = VisionTokens(features=projected, cls_slot=cls_slot, grid_shapes=given.grid_shapes)
        calls = {method: (lambda press=press: press.compress(given)) for method, press in presses(budget).items()}
        calls["divprune @4096"] = lambda press=DivPrune(budget=budget): press.compress(wide)
        with torch.inference_mode():
            times, cpu_times = time_side_by_side(calls, args.repeats, args.rounds)
        reference = times["prunesid"]
        row = {"case": name, "B": batch, "T": tokens, "D": width, "N": budget}
        row.update({f"{method} ms": round(ms, 2) for method, ms in times.items()})
        row.update({f"{method} / prunesid": round(ms / reference, 3) for method, ms in times.items() if method != "prunesid"})
        row.update({f"{method} cpu ms": round(ms, 2) for method, ms in cpu_times.items()})
        row["projector ms"] = round(projector_ms, 1)
        rows.append(row)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu; medians of {args.repeats} calls in {args.rounds} rounds; load average {load:.1f}")
    methods = list(calls)
    for title, suffix, extra in (("wall-clock ms", "ms", ["projector ms"]), ("CPU ms (all threads)", "cpu ms", [])):
        print(f"\n{title}")
        header = ["case", "B", "T", "D", "N"] + [f"{m} {suffix}" for m in methods] + extra
        print(" | ".join(header))
        print(" | ".join("---" for _ in header))
        for row in rows:
            print(" | ".join(str(row[column]) for column in header))
    print(json.dumps({"benchmark": "methods", "device": "cpu", "threads": torch.get_num_threads(), "load_average": load, "rows": rows}))


if __name__ == "__main__":
    main()
