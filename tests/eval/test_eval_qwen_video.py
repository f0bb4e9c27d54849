"""Clips through lmms-eval's own Qwen2.5-VL classes (``prunesid_qwen2_5_vl``), in process.

lmms-eval prepares a Qwen sample with ``qwen_vl_utils.process_vision_info`` (which needs
torchvision, absent here: ``tests/eval/qwen_vl_utils_standin.py`` takes its place on
lmms-eval's modules). Its chat class takes ``min(max_num_frames, clip length)`` frames
(even) and hands the processor their metadata; its simple class samples at 2 fps and hands
none. Either way the press sees the clip as the processor made it: temporal group after
group, N_eff each, at the positions the unmodified model gives them (``second_per_grid_ts``
included), and a press that keeps everything answers exactly as the unmodified class.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

lmms_eval = pytest.importorskip("lmms_eval")

from prunesid import PruneSID  # noqa: E402
from tests.conftest import scene, scene_clip  # noqa: E402
from tests.eval import qwen_vl_utils_standin  # noqa: E402

pytestmark = pytest.mark.eval

MODEL = "tiny-random-qwen2.5-vl"
FRAMES, FPS, SIZE = 12, 6, (224, 168)  # 2 s; 224 x 168 px = 8 x 6 merged tokens of 28 px
PIXELS = {"min_pixels": 3136, "max_pixels": SIZE[0] * SIZE[1]}
PER_GROUP = (SIZE[0] // 28) * (SIZE[1] // 28)  # 48
BUDGET = 288  # N per 576 merged tokens: N_eff = round(48 x 288 / 576) = 24 per group
QUESTION = "What happens in the clip?"


def n_eff(tokens: int, budget: int) -> int:
    """SPEC section 9, written out independently of prunesid/presets.py."""
    return tokens if tokens <= 16 else max(round(tokens * budget / 576), 16)


def write_clip(path, frames: int = FRAMES, fps: int = FPS, size=SIZE):
    return scene_clip(path, frames, fps, size)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.fixture(scope="module", autouse=True)
def qwen_vl_utils():
    """process_vision_info on lmms-eval's Qwen2.5-VL and Qwen3-VL modules (chat and simple)."""
    from lmms_eval.models.chat import qwen2_5_vl as chat
    from lmms_eval.models.chat import qwen3_vl as chat3
    from lmms_eval.models.simple import qwen2_5_vl as simple
    from lmms_eval.models.simple import qwen3_vl as simple3

    with pytest.MonkeyPatch.context() as patch:
        for module in (chat, simple, chat3, simple3):
            patch.setattr(module, "process_vision_info", qwen_vl_utils_standin.process_vision_info)
            patch.setattr(module, "_has_qwen_vl", True)
        yield


def lmms_model(tmp_path, simple: bool, cls=None, pretrained=MODEL, **ours):
    from prunesid.families.qwen_vl.lmms_eval_model import Qwen2_5_VL, Qwen2_5_VLSimple

    cls = cls or (Qwen2_5_VLSimple if simple else Qwen2_5_VL)
    lm = cls(pretrained=pretrained, device="cpu", device_map="cpu", records=str(tmp_path / f"{len(list(tmp_path.iterdir()))}.jsonl"), **PIXELS, **ours)
    lm.task_dict = {"clips": {"test": [{"video": None, "question": QUESTION}]}}
    return lm


def request(lm, path: str, simple: bool):
    from lmms_eval.api.instance import Instance

    lm.task_dict["clips"]["test"][0]["video"] = path
    gen = {"max_new_tokens": 6, "temperature": 0, "do_sample": False}
    if simple:
        args = (QUESTION, gen, lambda doc: [doc["video"]], 0, "clips", "test")
    else:
        def doc_to_messages(doc):
            return [{"role": "user", "content": [{"type": "video", "url": doc["video"]}, {"type": "text", "text": doc["question"]}]}]

        args = ("ctx", doc_to_messages, gen, 0, "clips", "test")
    return Instance("generate_until", args, idx=0, metadata={"task": "clips", "doc_id": 0, "repeats": 1})


def answer(lm, path: str, simple: bool):
    """lmms-eval's answer, the ids and positions the model's prefill received, and the record."""
    seen = []

    def prefill(module, args, kwargs):
        if kwargs.get("past_key_values") is None or kwargs["past_key_values"].get_seq_length() == 0:
            seen.append({key: kwargs.get(key) for key in ("input_ids", "position_ids", "second_per_grid_ts")})

    hook = lm.model.register_forward_pre_hook(prefill, with_kwargs=True)
    try:
        (text,) = lm.generate_until([request(lm, path, simple)])
    finally:
        hook.remove()
    lines = lm.records_path.read_text().splitlines()
    return getattr(text, "text", text), seen[0], json.loads(lines[-1])


@pytest.mark.parametrize("simple", [False, True], ids=["chat class", "simple class"])
def test_a_clip_gets_n_eff_per_group_and_keep_everything_is_the_unmodified_class(tmp_path, clip, simple):
    unmodified = lmms_model(tmp_path, simple, method="none")
    video_token = unmodified.model.config.video_token_id
    expected, fed, record = answer(unmodified, clip, simple)
    full = int((fed["input_ids"] == video_token).sum())
    # lmms-eval's frame choice, not the library's 16: the chat class takes the clip's 12
    # frames (6 groups); the simple one samples 2 s at 2 fps: 4 frames (2 groups).
    groups = 2 if simple else FRAMES // 2
    assert full == groups * PER_GROUP and record["visual_tokens"] == [full]

    keep_all = lmms_model(tmp_path, simple, method="prunesid", budget=100_000, order="spatial")
    got, fed_all, record = answer(keep_all, clip, simple)
    assert got == expected
    assert torch.equal(fed_all["input_ids"], fed["input_ids"])
    # the unmodified model's own M-RoPE positions, timing included (chat: 12 frames at 6 fps,
    # second_per_grid_ts 1/3 s; simple: no metadata, transformers' 24 fps)
    assert float(fed["second_per_grid_ts"][0]) == pytest.approx(2 / 24 if simple else 1 / 3)
    assert torch.equal(fed_all["position_ids"], fed["position_ids"])
    assert record["visual_tokens"] == [full] and len(record["images"][0]["views"]) == groups

    pressed = lmms_model(tmp_path, simple, method="prunesid", budget=BUDGET)
    _, fed_pressed, record = answer(pressed, clip, simple)
    per_group = n_eff(PER_GROUP, BUDGET)
    assert int((fed_pressed["input_ids"] == video_token).sum()) == groups * per_group  # what the LLM receives
    assert fed_pressed["input_ids"].shape[1] == fed["input_ids"].shape[1] - full + groups * per_group
    (video,) = record["images"]
    assert video["modality"] == "video" and record["visual_tokens"] == [groups * per_group]
    assert [view["visual_tokens"] for view in video["views"]] == [per_group] * groups
    assert [view["view"] for view in video["views"]] == [f"frames {2 * g + 1}-{2 * g + 2}" for g in range(groups)]
    kept = fed_pressed["position_ids"][1:, 0, fed_pressed["input_ids"][0] == video_token]
    assert set(map(tuple, kept.T.tolist())) < set(map(tuple, fed["position_ids"][1:, 0, fed["input_ids"][0] == video_token].T.tolist()))


def test_a_qwen3_vl_clip_gets_n_eff_per_timestamped_group(tmp_path, clip):
    """lmms-eval's qwen3_vl (chat): 8 frames (max_num_frames) resized by qwen-vl-utils to
    multiples of 32 px, the processor told not to resize again; its prompt writes each
    group's timestamp before the group's own run: each run is cut to N_eff."""
    from prunesid.families.qwen_vl.lmms_eval_model import Qwen3_VL

    args = {"cls": Qwen3_VL, "pretrained": "tiny-random-qwen3-vl", "max_num_frames": 8}
    unmodified = lmms_model(tmp_path, False, method="none", **args)
    video_token = unmodified.model.config.video_token_id
    expected, fed, _ = answer(unmodified, clip, False)
    groups, per_group = 4, (224 // 32) * (160 // 32)  # 168 px -> 160 (5 merged tokens of 32 px)
    assert int((fed["input_ids"] == video_token).sum()) == groups * per_group
    got, fed_all, _ = answer(lmms_model(tmp_path, False, method="prunesid", budget=100_000, order="spatial", **args), clip, False)
    assert got == expected and torch.equal(fed_all["input_ids"], fed["input_ids"])
    _, fed_pressed, record = answer(lmms_model(tmp_path, False, method="prunesid", budget=BUDGET, **args), clip, False)
    kept = n_eff(per_group, BUDGET)
    assert int((fed_pressed["input_ids"] == video_token).sum()) == groups * kept == record["visual_tokens"][0]
    assert [view["visual_tokens"] for view in record["images"][0]["views"]] == [kept] * groups
    # every group's run follows its own timestamp, as the processor wrote them
    tokenizer = unmodified.processor.tokenizer
    assert tokenizer.decode(fed_pressed["input_ids"][0]).count("seconds>") == groups


# --- end to end: lmms-eval's CLI on a task of clips ---------------------------------------------

VIDEO_TASK = "clips_local"
VIDEO_UTILS = """
def doc_to_visual(doc):
    return [doc["video"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def process_results(doc, results):
    return {"clip_accuracy": float(results[0].strip().lower().startswith(doc["answer"]))}
"""


def write_video_task(root, clip_path: str) -> None:
    """A task of two docs on one clip file: ``root/data``, ``root/clips_utils.py``, ``root/clips.yaml``."""
    import datasets

    from tests.eval.test_eval_lmms import TASK_YAML

    rows = {"question_id": [0, 1], "video": [clip_path, clip_path], "question": ["Is a box moving?", "Is it night?"], "answer": ["yes", "no"]}
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)}).save_to_disk(str(root / "data"))
    (root / "clips_utils.py").write_text(VIDEO_UTILS)
    yaml = TASK_YAML.format(task=VIDEO_TASK, data=root / "data").replace("yesno_utils", "clips_utils").replace("yesno_accuracy", "clip_accuracy")
    (root / "clips.yaml").write_text(yaml)


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory, clip):
    """The grid command with --model-id prunesid_qwen2_5_vl: lmms-eval's CLI, our entry point,
    its chat class, the unmodified model and PruneSID at N = 288; qwen-vl-utils stood in for
    by a package on the subprocess's path."""
    import os
    import subprocess

    from tests.eval.test_eval_lmms import offline_env

    root = tmp_path_factory.mktemp("lmms_eval_clips")
    (root / "task").mkdir()
    write_video_task(root / "task", clip)
    shim = root / "shim" / "qwen_vl_utils"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("from tests.eval.qwen_vl_utils_standin import process_vision_info  # noqa: F401\n")
    env = offline_env()
    env["PYTHONPATH"] = os.pathsep.join([str(root / "shim"), str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    command = [
        sys.executable, "-m", "prunesid.eval.grid", "--model", MODEL, "--model-id", "prunesid_qwen2_5_vl", "--out", str(root / "out"),
        "--tasks", VIDEO_TASK, "--include-path", str(root / "task"), "--device", "cpu", "--budgets", str(BUDGET),
        "--methods", "prunesid", "--no-variants", "--model-args", f"device_map=cpu,min_pixels={PIXELS['min_pixels']},max_pixels={PIXELS['max_pixels']}",
        "--run",
    ]
    completed = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    return {"out": root / "out", "log": completed.stdout + completed.stderr, "returncode": completed.returncode}


def test_lmms_eval_s_cli_presses_a_task_of_clips(evaluation):
    assert evaluation["returncode"] == 0, evaluation["log"][-4000:]
    lines = {}
    for name in ("none", f"prunesid-{BUDGET}"):
        (results,) = sorted((evaluation["out"] / name).rglob("*_results.json"))
        data = json.loads(results.read_text())
        assert data["config"]["model_backend"].startswith("prunesid.families.qwen_vl.lmms_eval_model.Qwen2_5_VL") and data["n-samples"][VIDEO_TASK]["effective"] == 2
        lines[name] = [json.loads(line) for line in (evaluation["out"] / "records" / f"{name}.jsonl").read_text().splitlines()]
    groups, per_group = FRAMES // 2, n_eff(PER_GROUP, BUDGET)  # lmms-eval's chat class: the clip's 12 frames
    assert [line["visual_tokens"] for line in lines["none"]] == [[groups * PER_GROUP]] * 2
    for line in lines[f"prunesid-{BUDGET}"]:
        (video,) = line["images"]
        assert line["task"] == VIDEO_TASK and video["modality"] == "video" and line["visual_tokens"] == [groups * per_group]
        assert [view["visual_tokens"] for view in video["views"]] == [per_group] * groups
    assert f"| prunesid | {BUDGET} |" in (evaluation["out"] / "table.md").read_text()


def test_the_stand_in_never_enters_this_process():
    """The stand-in is monkeypatched onto lmms-eval's modules here (and put on the path of the
    CLI's subprocess only), never importable as the package in the test process."""
    assert "qwen_vl_utils" not in sys.modules
