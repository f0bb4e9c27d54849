"""lmms-eval runs our plug-in end to end, offline, through the README's one command
(``python -m prunesid.eval.grid ... --run``): lmms-eval's own CLI (one process, ``--config``
with one entry per run) finds ``prunesid_llava_hf`` through the ``lmms_eval.models`` entry
point, loads ``pretrained=tiny-random`` and answers a small local yes/no task (images
generated here, no download) with the unmodified model, PruneSID, PruneSID-Dyn (calibrated
over the task's images) and a baseline press from the registry; the results files become
the paper's table; the per-sample records show what reached the LLM. A wrong
``--model_args`` value makes lmms-eval's ``simple_evaluate`` fail naming the argument.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

try:
    import lmms_eval  # noqa: F401
except ImportError:
    if os.environ.get("PRUNESID_REQUIRE_EVAL"):  # CI sets it: these tests must run there
        raise
    pytest.skip(
        "lmms-eval is not installed (pip install --no-deps lmms-eval==0.7.3 after requirements-dev.txt)",
        allow_module_level=True,
    )

from prunesid import PRESSES  # noqa: E402

TASK = "yesno_local"
FULL_TOKENS = 576  # tiny-random: LLaVA-1.5 geometry, 24 x 24 patches (the CLS is not fed)
BASELINE = sorted(name for name in PRESSES if name != "prunesid")[0]  # one baseline press, from the registry
BUDGET = 16
RUNS = {  # row name (grid.py) -> our --model_args
    "none": "method=none",
    f"prunesid-{BUDGET}": f"method=prunesid,budget={BUDGET}",
    f"prunesid-dyn-{BUDGET}": f"method=prunesid,budget={BUDGET},dynamic=True",
    f"{BASELINE}-{BUDGET}": f"method={BASELINE},budget={BUDGET}",
}

UTILS = '''
def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}{kwargs.get('post_prompt', '')}"


def process_results(doc, results):
    return {"yesno_accuracy": float(results[0].strip().lower().startswith(doc["answer"]))}
'''

TASK_YAML = """task: {task}
dataset_path: {data}
dataset_kwargs:
  load_from_disk: true
test_split: test
output_type: generate_until
doc_to_visual: !function yesno_utils.doc_to_visual
doc_to_text: !function yesno_utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 3
  temperature: 0
  do_sample: false
process_results: !function yesno_utils.process_results
metric_list:
  - metric: yesno_accuracy
    aggregation: mean
    higher_is_better: true
lmms_eval_specific_kwargs:
  default:
    pre_prompt: ""
    post_prompt: "\\nAnswer yes or no."
metadata:
  version: 0.0
"""


def task_images() -> list[tuple[Image.Image, str, str]]:
    """(image, question, answer): shapes of different colours and sizes on plain grounds."""
    specs = [
        ((160, 120), (230, 230, 230), (200, 30, 30), "Is there a red circle in the image?", "yes"),
        ((200, 100), (20, 20, 60), (40, 180, 60), "Is there a red circle in the image?", "no"),
        ((96, 144), (250, 240, 200), (30, 60, 200), "Is there a blue circle in the image?", "yes"),
    ]
    items = []
    for (width, height), ground, colour, question, answer in specs:
        image = Image.new("RGB", (width, height), ground)
        draw = ImageDraw.Draw(image)
        draw.ellipse((width // 5, height // 5, width * 3 // 4, height * 4 // 5), fill=colour)
        draw.rectangle((0, height - 12, width, height), fill=(colour[2], colour[0], colour[1]))
        items.append((image, question, answer))
    return items


def write_task(root: Path) -> None:
    """``root/data`` (a DatasetDict saved to disk), ``root/yesno_utils.py``, ``root/yesno.yaml``."""
    import datasets

    items = task_images()
    features = datasets.Features({
        "question_id": datasets.Value("int64"),
        "image": datasets.Image(),
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
    })
    rows = {
        "question_id": list(range(len(items))),
        "image": [image for image, _, _ in items],
        "question": [question for _, question, _ in items],
        "answer": [answer for _, _, answer in items],
    }
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows, features=features)}).save_to_disk(str(root / "data"))
    (root / "yesno_utils.py").write_text(UTILS)
    (root / "yesno.yaml").write_text(TASK_YAML.format(task=TASK, data=root / "data"))


def offline_env() -> dict:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled")
    return env


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("task")
    write_task(root)
    return root


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory, task_dir):
    """The README's command on the local task: the grid of runs in one lmms-eval process, then the table."""
    root = tmp_path_factory.mktemp("lmms_eval")
    command = [
        sys.executable, "-m", "prunesid.eval.grid", "--model", "tiny-random", "--out", str(root / "out"),
        "--tasks", TASK, "--include-path", str(task_dir), "--device", "cpu",
        "--budgets", str(BUDGET), "--methods", f"prunesid,{BASELINE}", "--run",
    ]
    completed = subprocess.run(command, cwd=root, env=offline_env(), capture_output=True, text=True, timeout=900)
    log = completed.stdout + completed.stderr
    (root / "lmms_eval.log").write_text(log)
    return {"root": root, "out": root / "out", "log": log, "returncode": completed.returncode}


def test_the_grid_is_one_lmms_eval_config(evaluation):
    config = json.loads((evaluation["out"] / "grid.yaml").read_text())
    assert [entry["output_path"].rsplit("/", 1)[-1] for entry in config] == list(RUNS)
    for entry, (name, ours) in zip(config, RUNS.items()):
        assert entry["model"] == "prunesid_llava_hf" and entry["tasks"] == TASK and entry["log_samples"] is True
        assert entry["model_args"].startswith(f"pretrained=tiny-random,{ours},records=")
    assert evaluation["returncode"] == 0, evaluation["log"][-4000:]


def results_file(evaluation, name: str) -> Path:
    found = sorted((evaluation["out"] / name).rglob("*_results.json"))
    assert found, f"lmms-eval wrote no results for run {name!r}; its log:\n{evaluation['log'][-6000:]}"
    return found[-1]


def records(evaluation, name: str) -> list[dict]:
    path = evaluation["out"] / "records" / f"{name}.jsonl"
    assert path.is_file(), f"no per-sample records for run {name!r}; log:\n{evaluation['log'][-4000:]}"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_entry_point_is_registered():
    names = {ep.name: ep.value for ep in entry_points(group="lmms_eval.models")}
    assert names.get("prunesid") == "prunesid.eval.manifest:manifests", (
        f"lmms_eval.models entry points: {names}; reinstall the package (pip install --no-deps -e .)"
    )
    from lmms_eval.models import get_model, get_model_manifest
    from prunesid.families.llava import lmms_eval_model as llava
    from prunesid.families.qwen_vl import lmms_eval_model as qwen
    from prunesid.families.video_llava import lmms_eval_model as video_llava

    assert get_model_manifest("prunesid_llava_hf").chat_class_path == "prunesid.families.llava.lmms_eval_model.LlavaHf"
    assert get_model("prunesid_llava_hf") is llava.LlavaHf
    assert get_model("prunesid_llava_hf", force_simple=True) is llava.LlavaHfSimple
    assert get_model("prunesid_qwen2_5_vl") is qwen.Qwen2_5_VL
    assert get_model("prunesid_video_llava") is video_llava.VideoLlava
    assert get_model_manifest("prunesid_mini_gemini").simple_class_path == "prunesid.families.mini_gemini.lmms_eval_model.MiniGemini"


@pytest.mark.parametrize("name", list(RUNS))
def test_lmms_eval_writes_results_for_every_run(evaluation, name):
    data = json.loads(results_file(evaluation, name).read_text())
    assert data["config"]["model"] == "prunesid_llava_hf"
    assert RUNS[name] in data["config"]["model_args"]
    assert data["config"]["model_backend"].startswith("prunesid.families.llava.lmms_eval_model.LlavaHf")
    assert set(data["results"]) == {TASK}
    assert data["n-samples"][TASK]["effective"] == len(task_images())
    samples = sorted((evaluation["out"] / name).rglob(f"*_samples_{TASK}.jsonl"))
    assert samples, "no per-sample log from lmms-eval (--log_samples)"
    assert len(samples[0].read_text().splitlines()) == len(task_images())


@pytest.mark.parametrize("name, tokens", [("none", FULL_TOKENS), (f"prunesid-{BUDGET}", BUDGET), (f"{BASELINE}-{BUDGET}", BUDGET)])
def test_records_show_the_requested_visual_tokens(evaluation, name, tokens):
    lines = records(evaluation, name)
    assert sorted(line["doc_id"] for line in lines) == list(range(len(task_images())))
    assert {line["task"] for line in lines} == {TASK}
    for line in lines:
        assert line["visual_tokens"] == [tokens], line
        if name == "none":
            assert line["settings"] == {"method": "none"}
            continue
        (image,) = line["images"]
        (view,) = image["views"]
        assert image["unmodified_tokens"] == FULL_TOKENS
        assert view["visual_tokens"] == tokens == view["budget"]
        kept = view["kept"]
        # the passed-through CLS (if the press keeps it), the kept patches and any merged tokens
        assert len(kept) == len(set(kept)) and len(kept) + view["reserved"] + view.get("num_merged", 0) == tokens
        assert view["reserved"] == (1 if name.startswith("prunesid") else view["reserved"])
        assert all(0 <= index < FULL_TOKENS for index in kept)
        assert 0.0 <= view["rho"] <= 1.0 and abs(view["rho"] + view["phi"] - 1.0) < 1e-6
        assert line["settings"]["method"] == name.rsplit("-", 1)[0]


def test_dynamic_budget_is_calibrated_over_the_evaluated_images(evaluation):
    lines = records(evaluation, f"prunesid-dyn-{BUDGET}")
    assert len(lines) == len(task_images())
    phis = {line["doc_id"]: line["images"][0]["views"][0]["phi"] for line in lines}
    phi_ref = lines[0]["settings"]["phi_ref"]
    # phi_ref: the mean phi over the (distinct) images of the run, before answering.
    assert phi_ref == pytest.approx(sum(phis.values()) / len(phis), rel=1e-5)
    budgets = []
    for line in lines:
        view = line["images"][0]["views"][0]
        assert view["phi_ref"] == pytest.approx(phi_ref) and view["dynamic"] is True
        expected = min(max(round(BUDGET * view["phi"] / phi_ref), BUDGET // 2), 2 * BUDGET)
        assert abs(view["budget"] - expected) <= 1, (view["budget"], expected)
        assert line["visual_tokens"] == [view["budget"]] == [view["visual_tokens"]]
        budgets.append(view["budget"])
    assert len(set(budgets)) > 1, f"every image got the same budget {budgets}: the budget is not dynamic"


@pytest.mark.parametrize("args, named", [
    ("method=prunesid,budget=0", "budget must be a positive integer"),
    ("method=prunesid,budget=16,grouping=banana", "grouping"),
    ("method=prunesid,dynamic=maybe", "--model_args dynamic must be true or false"),
    ("method=prunesid,budget=sixteen", "--model_args budget must be an integer"),
    ("method=prunesid,phi_ref=high", "--model_args phi_ref must be a number"),
    ("method=prunesid,budgett=16", "--model_args budgett is not an argument of prunesid_llava_hf"),
    (f"method={BASELINE},grouping=psca", f"--model_args grouping is not a setting of method {BASELINE!r}"),
    ("method=none,budget=64", "--model_args budget is a press setting but method=none"),
    ("method=fastv,budget=64", "--model_args method must be one of"),
    ("method=prunesid,budget=16,batch_size=2", "--model_args batch_size must be 1 with a press"),
])
def test_a_wrong_model_args_value_fails_naming_the_argument(task_dir, tmp_path, monkeypatch, args, named):
    """Through lmms-eval's own simple_evaluate, before any model is loaded."""
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as error:
        simple_evaluate(
            model="prunesid_llava_hf", model_args=f"pretrained=tiny-random,{args}", tasks=[TASK], device="cpu",
            task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
        )
    assert named in str(error.value)
    assert not (tmp_path / "prunesid-records").exists()


def test_table_from_the_results_files(evaluation):
    table = (evaluation["out"] / "table.md").read_text()
    lines = table.splitlines()
    assert lines[0] == "### tiny-random"
    assert lines[2] == f"| Method | Tokens | {TASK} | Rel. |"
    score = {name: json.loads(results_file(evaluation, name).read_text())["results"][TASK]["yesno_accuracy,none"] for name in RUNS}
    rows = [line for line in lines[4:] if line.startswith("| ")]
    assert rows[0].startswith(f"| all tokens | all | {score['none'] * 100:.1f}")
    assert rows[1].startswith(f"| *Retain {BUDGET} tokens*")
    labels = {"prunesid": f"prunesid-{BUDGET}", "prunesid (dyn)": f"prunesid-dyn-{BUDGET}", BASELINE: f"{BASELINE}-{BUDGET}"}
    assert [row.split(" | ")[0][2:] for row in rows[2:]] == list(labels)
    for row, name in zip(rows[2:], labels.values()):
        cells = row.split(" | ")
        assert cells[1] == str(BUDGET) and cells[2].startswith(f"{score[name] * 100:.1f}"), row
