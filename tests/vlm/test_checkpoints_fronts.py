"""Checkpoint directories in the layouts of real Hub repositories (see tests/vlm/test_checkpoints.py)
through the project's fronts, the way a user points them at a download:
``prunesid chat DIRECTORY ...``, ``python app.py --model DIRECTORY`` and lmms-eval's
``--model_args pretrained=DIRECTORY``. Each answers as ``load_vlm(DIRECTORY)`` does.

Directories: ``llava-hf/llava-interleave-qwen-0.5b-hf`` (the demo's CPU default),
``Qwen/Qwen2.5-VL-7B-Instruct`` and ``LanguageBind/Video-LLaVA-7B-hf`` layouts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunesid import PruneSID, load_vlm
from prunesid.cli import main
from prunesid.images import load_image
from prunesid.video import load_video
from prunesid.family_kit.hub import write_checkpoint
from tests.conftest import launched_app, scene
from tests.vlm.test_checkpoints import build

# Each front end runs in a process of its own (the CLI, a launched app, lmms-eval).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "assets" / "clip.mp4"
QUESTION = "What is in the picture?"
INTERLEAVE, QWEN, VIDEO = "llava-hf/llava-interleave-qwen-0.5b-hf", "Qwen/Qwen2.5-VL-7B-Instruct", "LanguageBind/Video-LLaVA-7B-hf"


@pytest.fixture(scope="module")
def directories(tmp_path_factory) -> dict[str, Path]:
    written = {}
    for repo in (INTERLEAVE, QWEN, VIDEO):
        model, processor, layout = build(repo)
        written[repo] = write_checkpoint(model, processor, tmp_path_factory.mktemp(repo.replace("/", "--")), layout)
    return written


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("picture") / "scene.png"
    scene(520, 390, seed=9).save(path)
    return path


@pytest.mark.parametrize("repo", [INTERLEAVE, QWEN, VIDEO])
def test_cli_chat_with_a_directory(directories, picture, capsys, repo):
    directory = str(directories[repo])
    args = ["chat", str(picture), QUESTION, "--model", directory, "--budget", "64", "--max-new-tokens", "4", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    expected = load_vlm(directory, device="cpu").chat(load_image(str(picture)), QUESTION, press=PruneSID(budget=64), max_new_tokens=4)
    assert report["model"] == directory
    assert report["visual_tokens"] == expected.visual_tokens and report["answer"] == expected.text


def test_cli_chat_about_a_clip_with_a_video_llava_directory(directories, capsys):
    directory = str(directories[VIDEO])
    assert main(["chat", str(CLIP), "What happens?", "--model", directory, "--budget", "17", "--max-new-tokens", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = load_vlm(directory, device="cpu").chat(load_video(CLIP), "What happens?", press=PruneSID(budget=17), max_new_tokens=3)
    assert report["visual_tokens"] == expected.visual_tokens == [8 * 17] and report["answer"] == expected.text


def test_the_demo_serves_a_qwen_directory(directories, picture, tmp_path):
    """`python app.py --model DIRECTORY` loads the directory (no fallback to the offline model)
    and its analysis feeds what load_vlm(DIRECTORY) feeds."""
    from gradio_client import Client, handle_file

    directory = str(directories[QWEN])
    log_path = tmp_path / "app.log"
    with launched_app("--model", directory, "--max-new-tokens", "4", log_path=log_path) as (url, _):
        stats = Client(url, verbose=False).predict(
            image=handle_file(str(picture)), budget=64, groups=0, lam=0, grouping="psca", dynamic=False, api_name="/analyze"
        )[-2]
    text = log_path.read_text()
    assert f"Loading {directory} on cpu" in text and "falling back" not in text
    expected = load_vlm(directory, device="cpu").chat(load_image(str(picture)), QUESTION, press=PruneSID(budget=64), max_new_tokens=1)
    assert [stats["visual_tokens"]] == expected.visual_tokens != [64]  # Qwen's N is per 576 merged tokens


def _task(tmp_path: Path):
    from lmms_eval.tasks import TaskManager

    from tests.eval.test_eval_lmms import write_task

    task_dir = tmp_path / "task"
    task_dir.mkdir()
    write_task(task_dir)
    return TaskManager(include_path=str(task_dir), include_defaults=False)


@pytest.mark.eval
@pytest.mark.parametrize("model, repo", [("prunesid_llava_hf", INTERLEAVE)])
def test_lmms_eval_with_pretrained_directory(directories, tmp_path, monkeypatch, model, repo):
    """lmms-eval's own simple_evaluate on a small local image task with
    ``pretrained=DIRECTORY``: every sample's record shows the tokens load_vlm(DIRECTORY) feeds."""
    from lmms_eval.evaluator import simple_evaluate

    from tests.eval.test_eval_lmms import TASK, task_images

    task_manager = _task(tmp_path)
    monkeypatch.chdir(tmp_path)
    directory = str(directories[repo])
    simple_evaluate(
        model=model, model_args=f"pretrained={directory},method=prunesid,budget=64", tasks=[TASK], device="cpu", limit=2,
        task_manager=task_manager,
    )
    lines = [json.loads(line) for path in (tmp_path / "prunesid-records").glob("*.jsonl") for line in path.read_text().splitlines()]
    assert len(lines) == 2
    vlm = load_vlm(directory, device="cpu")
    images = {line["doc_id"]: task_images()[line["doc_id"]][0] for line in lines}
    for line in lines:
        expected = vlm.chat(images[line["doc_id"]], "x", press=PruneSID(budget=64), max_new_tokens=1).visual_tokens
        assert line["visual_tokens"] == expected, line


@pytest.mark.eval
def test_lmms_eval_builds_the_video_llava_model_from_a_directory(directories):
    """lmms-eval's video_llava class loads its processor with VideoLlavaProcessor, whose video
    processor needs torchvision: the class is built from the directory all the same, and its
    processor takes clips (frame by frame through the image processor)."""
    from prunesid.families.video_llava.lmms_eval_model import VideoLlava

    import numpy as np

    model = VideoLlava(pretrained=str(directories[VIDEO]), device="cpu", device_map="auto", method="prunesid", budget="17")
    assert model.prunesid_vlm.family.num_frames == 8
    assert model.prunesid_vlm.model.config.model_type == "video_llava"
    # what its generate_until hands the processor: the prompt and the clip as a [T, H, W, 3] array
    clip = np.stack([np.asarray(frame) for frame in load_video(CLIP).frames])
    inputs = model._processor(text="USER: <video>\nWhat happens? ASSISTANT:", videos=clip, return_tensors="pt")
    assert inputs["pixel_values_videos"].shape == (1, 8, 3, 224, 224)
    assert int((inputs["input_ids"] == model.prunesid_vlm.model.config.video_token_id).sum()) == 8 * 257


@pytest.mark.eval
def test_lmms_eval_qwen_fails_first_naming_qwen_vl_utils(directories, tmp_path, monkeypatch):
    """lmms-eval's Qwen2.5-VL classes prepare each sample with qwen_vl_utils (which imports
    torchvision): without it, one message before anything is loaded, not a TypeError at the
    first sample."""
    import importlib.util

    if importlib.util.find_spec("qwen_vl_utils") is not None:
        pytest.skip("qwen-vl-utils is installed")
    from lmms_eval.evaluator import simple_evaluate

    from tests.eval.test_eval_lmms import TASK

    task_manager = _task(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"qwen_vl_utils.process_vision_info, which is not installed: `pip install qwen-vl-utils`"):
        simple_evaluate(
            model="prunesid_qwen2_5_vl", model_args=f"pretrained={directories[QWEN]},method=prunesid,budget=64", tasks=[TASK],
            device="cpu", limit=1, task_manager=task_manager,
        )


@pytest.mark.eval
def test_lmms_eval_builds_the_qwen_model_from_a_directory(directories, monkeypatch):
    """Its processor (AutoProcessor in lmms-eval's class) is built without torchvision, with
    lmms-eval's max_pixels / min_pixels applied to the image processor."""
    import lmms_eval.models.chat.qwen2_5_vl as chat_module
    import lmms_eval.models.simple.qwen2_5_vl as simple_module

    from prunesid.families.qwen_vl.lmms_eval_model import Qwen2_5_VL

    for module in (chat_module, simple_module):
        monkeypatch.setattr(module, "_has_qwen_vl", True)
    model = Qwen2_5_VL(pretrained=str(directories[QWEN]), device="cpu", device_map="cpu", max_pixels=200_704, method="prunesid", budget="64")
    assert model.prunesid_vlm.family.preset == "qwen2-vl"
    assert model.processor.image_processor.size["longest_edge"] == 200_704
    assert simple_module.AutoProcessor.__name__ == "AutoProcessor"  # restored
