"""``prunesid_mini_gemini``: our own lmms-eval model class for Mini-Gemini (lmms-eval has none).

End to end: the README's grid command with ``--model-id prunesid_mini_gemini`` on the MGM-HD
built-in (five views: 2 x 2 crops and a global view) runs lmms-eval's own CLI on the local
yes/no task: the unmodified model and PruneSID at N = 8 per view; results, lmms-eval's
samples, the per-sample records (N per view, 5 x 8 fed) and the table. In process: a press
keeping every token answers and scores exactly as ``method=none``; wrong arguments and a
checkpoint of another family are refused by name.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("lmms_eval")

from prunesid import PruneSID  # noqa: E402
from tests.eval.test_eval_lmms import TASK, offline_env, task_images, write_task  # noqa: E402

pytestmark = pytest.mark.eval

MODEL = "tiny-random-mgm-hd"
MODEL_ID = "prunesid_mini_gemini"
VIEWS = 5  # 2 x 2 crops of 336 and a global view
BUDGET = 8


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("task")
    write_task(root)
    return root


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory, task_dir):
    root = tmp_path_factory.mktemp("lmms_eval_mgm")
    command = [
        sys.executable, "-m", "prunesid.eval.grid", "--model", MODEL, "--model-id", MODEL_ID, "--out", str(root / "out"),
        "--tasks", TASK, "--include-path", str(task_dir), "--device", "cpu",
        "--budgets", str(BUDGET), "--methods", "prunesid", "--no-variants", "--run",
    ]
    completed = subprocess.run(command, cwd=root, env=offline_env(), capture_output=True, text=True, timeout=900)
    return {"out": root / "out", "log": completed.stdout + completed.stderr, "returncode": completed.returncode}


def records(evaluation, name: str) -> list[dict]:
    path = evaluation["out"] / "records" / f"{name}.jsonl"
    assert path.is_file(), f"no records for {name}; log:\n{evaluation['log'][-4000:]}"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_entry_point_finds_our_class():
    from lmms_eval.models import get_model

    from prunesid.families.mini_gemini.lmms_eval_model import MiniGemini

    assert get_model(MODEL_ID) is MiniGemini


def test_lmms_eval_runs_the_grid_and_writes_the_table(evaluation):
    assert evaluation["returncode"] == 0, evaluation["log"][-4000:]
    for name in ("none", f"prunesid-{BUDGET}"):
        (results,) = sorted((evaluation["out"] / name).rglob("*_results.json"))
        data = json.loads(results.read_text())
        assert data["config"]["model"] == MODEL_ID and data["config"]["model_backend"] == "prunesid.families.mini_gemini.lmms_eval_model.MiniGemini (simple)"
        assert data["n-samples"][TASK]["effective"] == len(task_images())
        (samples,) = sorted((evaluation["out"] / name).rglob(f"*_samples_{TASK}.jsonl"))
        assert len(samples.read_text().splitlines()) == len(task_images())
    table = (evaluation["out"] / "table.md").read_text()
    assert f"### {MODEL}" in table and f"| prunesid | {BUDGET} |" in table


def test_records_show_n_per_view(evaluation):
    unmodified = records(evaluation, "none")
    pressed = records(evaluation, f"prunesid-{BUDGET}")
    assert sorted(line["doc_id"] for line in pressed) == list(range(len(task_images())))
    for full, line in zip(sorted(unmodified, key=lambda r: r["doc_id"]), sorted(pressed, key=lambda r: r["doc_id"])):
        (image,) = line["images"]
        total = full["visual_tokens"][0]
        assert full["settings"] == {"method": "none"} and full["images"][0]["unmodified_tokens"] == total
        assert line["visual_tokens"] == [VIEWS * BUDGET] and image["unmodified_tokens"] == total > VIEWS * BUDGET
        assert len(image["views"]) == VIEWS
        for view in image["views"]:
            assert view["visual_tokens"] == BUDGET == view["budget"]
            assert len(view["kept"]) + view["reserved"] + view.get("num_merged", 0) == BUDGET
            assert all(0 <= index < total // VIEWS for index in view["kept"])


# --- in process -----------------------------------------------------------------------------


def model(tmp_path, **args):
    from prunesid.families.mini_gemini.lmms_eval_model import MiniGemini

    lm = MiniGemini(pretrained="tiny-random-mgm", device="cpu", records=str(tmp_path / f"{len(list(tmp_path.iterdir()))}.jsonl"), **args)
    lm.task_dict = {TASK: {"test": [{"question": q, "answer": a, "image": image} for image, q, a in task_images()]}}
    return lm


def requests(kind: str):
    from lmms_eval.api.instance import Instance

    out = []
    for doc_id, (_, question, _) in enumerate(task_images()):
        visual = lambda doc: [doc["image"]]  # noqa: E731
        if kind == "generate_until":
            args = (f"<image>\n{question}", {"max_new_tokens": 5, "temperature": 0, "until": ["\n\n"]}, visual, doc_id, TASK, "test")
        else:
            args = (question, lambda doc: " yes", visual, doc_id, TASK, "test")
        out.append(Instance(kind, args, idx=0, metadata={"task": TASK, "doc_id": doc_id, "repeats": 1}))
    return out


def test_keeping_every_token_answers_and_scores_as_the_unmodified_model(tmp_path):
    unmodified = model(tmp_path, method="none")
    keep_all = model(tmp_path, method="prunesid", budget=100_000, order="spatial")
    assert keep_all.generate_until(requests("generate_until")) == unmodified.generate_until(requests("generate_until"))
    expected = unmodified.loglikelihood(requests("loglikelihood"))
    got = keep_all.loglikelihood(requests("loglikelihood"))
    assert [greedy for _, greedy in got] == [greedy for _, greedy in expected]
    # the same tokens, summed in another order by the mining of fewer windows: float32 noise
    assert [score for score, _ in got] == pytest.approx([score for score, _ in expected], rel=1e-4)
    pressed = model(tmp_path, method="prunesid", budget=16)
    scores = pressed.loglikelihood(requests("loglikelihood"))
    assert len(scores) == 3 and all(score < 0 for score, _ in scores)
    assert [score for score, _ in scores] != pytest.approx([score for score, _ in expected], rel=1e-4)  # 16 tokens of 576 do change it
    line = json.loads(pressed.records_path.read_text().splitlines()[-1])
    assert line["visual_tokens"] == [16] and line["images"][0]["views"][0]["budget"] == 16
    assert PruneSID(budget=16).settings()["budget"] == line["settings"]["budget"]


@pytest.mark.parametrize("args, message", [
    ({"method": "prunesid", "budget": "sixteen"}, "--model_args budget must be an integer"),
    ({"method": "prunesid", "device_map": "auto"}, "--model_args device_map is not an argument of prunesid_mini_gemini"),
    ({"method": "prunesid", "batch_size": 4}, "--model_args batch_size must be 1"),
    ({"pretrained": "tiny-random"}, "--model_args pretrained=tiny-random is a 'llava' model; prunesid_mini_gemini runs"),
])
def test_wrong_arguments_are_refused_by_name(tmp_path, args, message):
    from prunesid.families.mini_gemini.lmms_eval_model import MiniGemini

    with pytest.raises(ValueError) as error:
        MiniGemini(**{"pretrained": "tiny-random-mgm", "device": "cpu", "records": str(tmp_path / "r.jsonl"), **args})
    assert message in str(error.value)
