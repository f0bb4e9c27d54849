"""The paper's table in one command: every method at every budget, then the table.

    python -m prunesid.eval.grid --model llava-hf/llava-1.5-7b-hf --out results/llava-1.5-7b --run

writes ``OUT/grid.yaml``, an lmms-eval ``--config`` file with one run per row of the table
(the unmodified model, then each method at each budget, each followed by its variants, e.g.
a dynamic budget), and with ``--run`` runs it in one lmms-eval process (``lmms-eval --config
OUT/grid.yaml``; a failing run is reported and the others go on) and writes
``OUT/table.md`` with :mod:`prunesid.eval.table`. Without ``--run`` it prints the command,
e.g. to start it under ``accelerate launch``. Each run writes its results under
``OUT/<row>/`` and its per-sample records to ``OUT/records/<row>.jsonl``. The methods are
every registered press (``prunesid.methods.presses()``, in menu order) unless
``--methods`` names some.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from prunesid.methods import presses
from prunesid.methods.registry import NO_PRESS

DEFAULT_TASKS = "pope,mme,seedbench"
DEFAULT_BUDGETS = "192,128,64"


def rows(methods: list[str], budgets: list[int], variants: bool) -> list[tuple[str, str]]:
    """(row name, our --model_args) for the table: the upper bound first, then per budget
    (largest first) every method, each followed by its variants (``PressInfo.variants``)."""
    out = [(NO_PRESS, f"method={NO_PRESS}")]
    known = presses()
    for budget in sorted(budgets, reverse=True):
        for method in methods:
            out.append((f"{method}-{budget}", f"method={method},budget={budget}"))
            for variant in known[method].info.variants if variants else ():
                settings = "".join(f",{name}={value}" for name, value in variant.settings.items())
                out.append((f"{variant.key}-{budget}", f"method={method},budget={budget}{settings}"))
    return out


def grid_config(args) -> list[dict]:
    known = presses()
    methods = list(known) if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"--methods: unknown {', '.join(unknown)}; registered presses: {', '.join(known)}")
    try:
        budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError as error:
        raise ValueError(f"--budgets must be comma-separated integers, got {args.budgets!r}") from error
    if not budgets or min(budgets) < 1:
        raise ValueError(f"--budgets must be positive integers, got {args.budgets!r}")
    out = Path(args.out).resolve()
    extra = f",{args.model_args}" if args.model_args else ""
    config = []
    for name, ours in rows(methods, budgets, variants=not args.no_variants):
        entry = {
            "model": args.model_id,
            "model_args": f"pretrained={args.model},{ours},records={out / 'records' / name}.jsonl{extra}",
            "tasks": args.tasks,
            "batch_size": 1,
            "output_path": str(out / name),
            "log_samples": True,
        }
        if args.include_path:
            entry["include_path"] = str(Path(args.include_path).resolve())
        if args.device:
            entry["device"] = args.device
        if args.limit is not None:
            entry["limit"] = args.limit
        config.append(entry)
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prunesid.eval.grid", description="every method at every budget with lmms-eval, then the table")
    parser.add_argument("--model", required=True, help="checkpoint (e.g. llava-hf/llava-1.5-7b-hf) or an offline built-in (tiny-random)")
    parser.add_argument("--out", required=True, help="output folder: grid.yaml, one folder per run, records/, table.md")
    parser.add_argument("--model-id", default="prunesid_llava_hf", help="lmms-eval model id: prunesid_llava_hf (LLaVA-1.5 / NeXT) or prunesid_qwen2_5_vl")
    parser.add_argument("--tasks", default=DEFAULT_TASKS, help=f"lmms-eval tasks (default {DEFAULT_TASKS})")
    parser.add_argument("--budgets", default=DEFAULT_BUDGETS, help=f"visual tokens per image (per view on LLaVA-NeXT) (default {DEFAULT_BUDGETS})")
    parser.add_argument("--methods", default="all", help=f"comma-separated presses, or all ({', '.join(presses())})")
    variants = [variant.label for cls in presses().values() for variant in cls.info.variants]
    parser.add_argument("--no-variants", action="store_true", help=f"leave out the methods' variants ({', '.join(variants) or 'none'})")
    parser.add_argument("--model-args", default="", help="more --model_args for every run (e.g. device_map=auto)")
    parser.add_argument("--include-path", default=None, help="folder of extra task YAMLs (lmms-eval --include_path)")
    parser.add_argument("--device", default=None, help="lmms-eval --device (default: lmms-eval's)")
    parser.add_argument("--limit", type=int, default=None, help="lmms-eval --limit (testing only)")
    parser.add_argument("--run", action="store_true", help="run lmms-eval now and write the table")
    args = parser.parse_args(argv)
    try:
        config = grid_config(args)
    except ValueError as error:
        print(f"prunesid grid: error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grid = out / "grid.yaml"
    grid.write_text(json.dumps(config, indent=1) + "\n")  # JSON is YAML: lmms-eval reads it with yaml.safe_load
    command = [sys.executable, "-m", "lmms_eval", "--config", str(grid)]
    print(f"{len(config)} runs in {grid}; lmms-eval --config {grid}  (or: accelerate launch --num_processes N -m lmms_eval --config {grid})")
    if not args.run:
        return 0
    completed = subprocess.run(command)
    from prunesid.eval.table import main as table

    status = table([str(out), "--out", str(out / "table.md")])
    return completed.returncode or status


if __name__ == "__main__":
    sys.exit(main())
