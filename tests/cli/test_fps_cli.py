"""`prunesid chat|compress CLIP --fps RATE`: a Qwen-VL clip sampled at a rate of its length
(prunesid.video.FrameRate: seconds x RATE frames, 4 to 32, an even count), and every misuse
of the flag refused with one line naming it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prunesid.cli import main
from tests.conftest import scene, scene_clip

MODEL = "tiny-random-qwen2-vl"
FRAMES, FPS, SIZE = 36, 6, (112, 84)  # 6 s


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    return scene_clip(tmp_path_factory.mktemp("fps-cli") / "clip.mp4", FRAMES, FPS, SIZE)


@pytest.mark.parametrize("rate, frames, indices", [
    ("2", 12, [0, 3, 6, 10, 13, 16, 19, 22, 25, 29, 32, 35]),  # 6 s x 2
    ("1", 6, [0, 7, 14, 21, 28, 35]),
    ("0.5", 4, [0, 12, 23, 35]),  # 3 frames wanted: the floor of 4
    ("0.9", 4, [0, 12, 23, 35]),  # 5.4 frames: rounded down to pairs
    ("60", 32, None),  # 360 frames wanted: the cap, and no more than the clip's 36
])
def test_compress_samples_the_clip_at_the_rate(clip, capsys, rate, frames, indices):
    assert main(["compress", clip, "--model", MODEL, "--fps", rate, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    sampled = report["clip"]
    assert sampled["frames"] == frames and sampled["total_frames"] == FRAMES
    assert sampled["indices"] == (indices or np.linspace(0, FRAMES - 1, frames).round().astype(int).tolist())
    assert sampled["sampled_fps"] == pytest.approx(frames / FRAMES * FPS)
    assert [view["label"] for view in report["views"]] == [f"frames {2 * g + 1}-{2 * g + 2}" for g in range(frames // 2)]


def test_without_fps_a_qwen_clip_keeps_its_16_frames(clip, capsys):
    assert main(["compress", clip, "--model", MODEL, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["clip"]["frames"] == 16


def test_chat_answers_about_the_frames_sampled_at_the_rate(clip, capsys):
    assert main(["chat", clip, "What happens?", "--model", MODEL, "--fps", "1", "--max-new-tokens", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [view["label"] for view in report["selection"]] == ["frames 1-2", "frames 3-4", "frames 5-6"]
    assert report["visual_tokens"] == [sum(view["num_kept"] for view in report["selection"])]


@pytest.mark.parametrize("rate, message", [
    ("abc", "argument --fps: 'abc' is not a number; give frames per second of the clip, e.g. 2"),
    ("0", "argument --fps: must be a number of frames per second in (0, 60], got 0.0"),
    ("-2", "argument --fps: must be a number of frames per second in (0, 60], got -2.0"),
    ("nan", "argument --fps: must be a number of frames per second in (0, 60], got nan"),
    ("61", "argument --fps: must be a number of frames per second in (0, 60], got 61.0"),
])
@pytest.mark.parametrize("command", ["compress", "chat"])
def test_a_rate_that_is_not_a_positive_number_is_refused_while_parsing(clip, capsys, command, rate, message):
    question = ["hi"] if command == "chat" else []
    with pytest.raises(SystemExit) as exited:
        main([command, clip, *question, "--model", MODEL, "--fps", rate])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"prunesid {command}: error: {message}" and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["compress", "{clip}", "--fps", "2"], "fps applies only to Qwen-VL clips, not to 'video_llava' models"),  # the default video model
    (["chat", "{clip}", "hi", "--model", "tiny-random-video-llava", "--fps", "2"], "fps applies only to Qwen-VL clips, not to 'video_llava' models"),
    (["compress", "{clip}", "--model", "tiny-random", "--fps", "2"], "fps applies only to Qwen-VL clips, not to 'llava' models"),
    (["compress", "{image}", "--model", MODEL, "--fps", "2"], "--fps sets how a clip's frames are sampled; {image} is an image, not a video"),
    (["chat", "{image}", "hi", "--model", MODEL, "--fps", "2"], "--fps sets how a clip's frames are sampled; {image} is an image, not a video"),
])
def test_fps_where_it_cannot_apply_exits_2_with_one_line(clip, tmp_path, capsys, args, message):
    image = tmp_path / "scene.png"
    scene(112, 84).save(image)
    args = [arg.format(clip=clip, image=image) for arg in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"prunesid {args[0]}: error: {message.format(image=image)}" and "Traceback" not in err


@pytest.mark.parametrize("command, has_fps", [("chat", True), ("compress", True), ("calibrate", False)])
def test_the_commands_that_take_clips_offer_fps(capsys, command, has_fps):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert ("--fps RATE" in capsys.readouterr().out) == has_fps


def test_the_clip_is_decoded_once_at_the_rate(clip, capsys, monkeypatch):
    import prunesid.video

    decoded = []
    sample = prunesid.video._sample
    monkeypatch.setattr(prunesid.video, "_sample", lambda container, num_frames, *rest: decoded.append(num_frames) or sample(container, num_frames, *rest))
    assert main(["compress", clip, "--model", MODEL, "--fps", "1", "--json"]) == 0
    assert decoded == [prunesid.video.FrameRate(fps=1.0)]  # not 8 frames first, then again at the model's rate
    assert json.loads(capsys.readouterr().out)["clip"]["frames"] == 6
