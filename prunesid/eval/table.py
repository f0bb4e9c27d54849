"""lmms-eval result files -> the paper's table: accuracy per method and budget, and the
performance relative to the uncompressed model.

    python -m prunesid.eval.table results/ [more files or directories] [--out table.md] [--json]
    prunesid-table results/

Reads every ``*_results.json`` lmms-eval wrote (recursively) and groups them by checkpoint
(``pretrained=``), method and budget, read from the run's ``--model_args``
(``method=none`` is the uncompressed upper bound). One table per checkpoint: a row per
method, one block per budget (largest first), a column per benchmark with its score and, in
parentheses, that score relative to the uncompressed model's on the same benchmark; the last
column is the mean of those ratios (the papers' "Rel." / "Avg." column).

The score of a benchmark is the metric the papers report: POPE F1, MME perception, SEED-Bench
image accuracy; for any other task the first metric its config lists. Fractions are shown
in percent. When a (checkpoint, method, budget, benchmark) was run more than once, the
latest run counts. Runs without ``method=`` in their ``--model_args`` (e.g. lmms-eval's own
``llava_hf``) are the uncompressed model.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from prunesid.methods import options_of, presses
from prunesid.methods.registry import default_method

# task -> (metric, label) the papers report; the value is shown x100 when it is a fraction.
PRIMARY_METRICS = {
    "pope": ("pope_f1_score", "POPE"),
    "mme": ("mme_perception_score", "MME"),
    "seedbench": ("seed_image", "SEED-I"),
    "seedbench_lite": ("seed_image", "SEED-I lite"),
    "gqa": ("exact_match", "GQA"),
    "scienceqa_img": ("exact_match", "SQA-I"),
    "textvqa_val": ("exact_match", "TextVQA"),
    "mmbench_en_dev": ("gpt_eval_score", "MMB"),
}
UPPER_BOUND = "none"


@dataclass
class Run:
    model: str  # the checkpoint (pretrained=)
    method: str  # press name or "none"
    label: str  # method + distinguishing settings
    budget: int | None
    scores: dict[str, float]  # task -> score as reported by lmms-eval
    date: str
    path: Path


@dataclass
class Table:
    model: str
    tasks: list[str]
    baseline: dict[str, float] = field(default_factory=dict)  # task -> upper bound score
    rows: list[dict] = field(default_factory=list)  # {"label", "budget", "scores", "relative", "mean_relative"}


def parse_model_args(text: str) -> dict[str, str]:
    """``key=value,key=value`` as lmms-eval writes it into the results (values kept as strings)."""
    args = {}
    for part in (text or "").split(","):
        if "=" in part:
            key, value = part.split("=", 1)
            args[key.strip()] = value.strip()
    return args


def load_runs(paths: list[str | Path]) -> list[Run]:
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(path.rglob("*_results.json")))
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"no such results file or directory: {path}")
    if not files:
        raise ValueError(f"no lmms-eval results (*_results.json) under {', '.join(map(str, paths))}")
    return [run for file in files for run in [_run(file)] if run is not None]


def _run(path: Path) -> Run | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not an lmms-eval results file: {error}") from error
    if "results" not in data or "config" not in data:
        raise ValueError(f"{path} is not an lmms-eval results file (no 'results' / 'config')")
    args = parse_model_args(data["config"].get("model_args") or "")
    ours = str(data["config"].get("model", "")).startswith("prunesid_")  # our plug-in's model ids
    method = args.get("method", default_method() if ours else UPPER_BOUND).lower()
    budget = args.get("budget")
    if method != UPPER_BOUND and budget is None:
        declared = _defaults(method).get("budget")
        if declared is None:
            raise ValueError(f"{path}: method {method!r} is not a registered press and the run gives no budget=")
        budget = str(declared.default)  # the press's default
    scores = {}
    for task, metrics in data["results"].items():
        score = _primary_score(task, metrics, data.get("configs", {}).get(task, {}))
        if score is not None:
            scores[task] = score
    return Run(
        model=args.get("pretrained", str(data["config"].get("model", "?"))),
        method=method,
        label=_label(method, args),
        budget=None if method == UPPER_BOUND else int(float(budget)),
        scores=scores,
        date=str(data.get("date", "")),
        path=path,
    )


def _defaults(method: str) -> dict:
    """The options of ``method`` by name (empty for a press this installation does not know)."""
    cls = presses().get(method)
    return {} if cls is None else {spec.name: spec for spec in options_of(cls)}


def _label(method: str, args: dict[str, str]) -> str:
    """The method and the options that differ from its defaults: a bool option by its tag
    (``dyn``, ``no CLS``), any other as ``name=value``."""
    if method == UPPER_BOUND:
        return "all tokens"
    specs = _defaults(method)
    extras = []
    for name, text in args.items():
        spec = specs.get(name)
        if spec is None or name == "budget":
            continue  # the budget has its own column; not an option: lmms-eval's (device_map, ...) or ours (records)
        try:
            value = spec.parse(text)
        except ValueError:
            value = text
        if value == spec.default:
            continue
        if spec.kind is bool and isinstance(value, bool):
            tag = spec.declaration.tag or name
            extras.append(tag if value else f"no {tag}")
        else:
            extras.append(f"{name}={text}")
    return method + (f" ({', '.join(extras)})" if extras else "")


def _primary_score(task: str, metrics: dict, config: dict) -> float | None:
    wanted = PRIMARY_METRICS.get(task, (None, None))[0]
    if wanted is None:
        listed = [entry.get("metric") for entry in config.get("metric_list", []) if isinstance(entry, dict)]
        wanted = listed[0] if listed else None
    for key, value in metrics.items():
        name = key.partition(",")[0]  # "metric,filter"
        if name == "alias" or "_stderr" in name or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if wanted is None or name == wanted:
            return float(value)
    return None


def build_tables(runs: list[Run]) -> list[Table]:
    tables = []
    for model in dict.fromkeys(run.model for run in runs):
        mine = sorted((run for run in runs if run.model == model), key=lambda run: run.date)
        latest: dict[tuple, float] = {}
        for run in mine:  # later runs overwrite earlier ones
            for task, score in run.scores.items():
                latest[(run.label, run.budget, task)] = score
        tasks = list(dict.fromkeys(task for run in mine for task in run.scores))
        table = Table(model=model, tasks=tasks)
        table.baseline = {task: score for (label, budget, task), score in latest.items() if budget is None}
        keys = dict.fromkeys((label, budget) for (label, budget, _task) in latest)
        ordered = [key for key in keys if key[1] is None]
        ordered += sorted((key for key in keys if key[1] is not None), key=lambda key: -key[1])
        for label, budget in ordered:
            scores = {task: latest[(label, budget, task)] for task in tasks if (label, budget, task) in latest}
            relative = {
                task: score / table.baseline[task]
                for task, score in scores.items()
                if table.baseline.get(task) not in (None, 0)
            }
            mean = sum(relative.values()) / len(relative) if relative and len(relative) == len(tasks) else None
            table.rows.append({"label": label, "budget": budget, "scores": scores, "relative": relative, "mean_relative": mean})
        tables.append(table)
    return tables


def _task_label(task: str) -> str:
    return PRIMARY_METRICS.get(task, (None, task))[1]


def _shown(score: float) -> str:
    return f"{score * 100:.1f}" if 0.0 <= score <= 1.0 else f"{score:.1f}"


def to_markdown(tables: list[Table]) -> str:
    out = []
    for table in tables:
        out.append(f"### {table.model}\n")
        out.append("| Method | Tokens | " + " | ".join(_task_label(task) for task in table.tasks) + " | Rel. |")
        out.append("|---|---|" + "---|" * len(table.tasks) + "---|")
        budget_shown = object()
        for row in table.rows:
            if row["budget"] is not None and row["budget"] != budget_shown:
                budget_shown = row["budget"]
                out.append(f"| *Retain {budget_shown} tokens* | | " + " | ".join("" for _ in table.tasks) + " | |")
            cells = []
            for task in table.tasks:
                if task not in row["scores"]:
                    cells.append("—")
                elif task in row["relative"]:
                    cells.append(f"{_shown(row['scores'][task])} ({row['relative'][task] * 100:.1f}%)")
                else:
                    cells.append(_shown(row["scores"][task]))
            mean = "—" if row["mean_relative"] is None else f"{row['mean_relative'] * 100:.1f}%"
            tokens = "all" if row["budget"] is None else str(row["budget"])
            out.append(f"| {row['label']} | {tokens} | " + " | ".join(cells) + f" | {mean} |")
        out.append("")
    return "\n".join(out)


def to_json(tables: list[Table]) -> list[dict]:
    return [{"model": t.model, "tasks": t.tasks, "baseline": t.baseline, "rows": t.rows} for t in tables]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prunesid-table", description="lmms-eval results -> the paper's table (markdown)")
    parser.add_argument("paths", nargs="+", help="lmms-eval --output_path directories or *_results.json files")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    try:
        tables = build_tables(load_runs(args.paths))
    except ValueError as error:
        print(f"prunesid-table: error: {error}", file=sys.stderr)
        return 2
    text = json.dumps(to_json(tables), indent=1) if args.json else to_markdown(tables)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
