"""`prunesid chat CLIP.mp4` and `prunesid compress CLIP.mp4`, driven the way a user types them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from prunesid.cli import main

CLIP = Path(__file__).resolve().parents[2] / "assets" / "clip.mp4"


def test_compress_json_reports_every_frame(capsys):
    assert main(["compress", str(CLIP), "--json"]) == 0  # a video picks the video built-in and 17 per frame
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "tiny-random-video-llava"
    assert report["visual_tokens"] == 8 * 17 and report["tokens"] == 8 * 256
    assert report["clip"]["frames"] == 8 and report["clip"]["total_frames"] == 72
    assert report["clip"]["indices"] == [0, 10, 20, 30, 41, 51, 61, 71]
    views = report["views"]
    assert [view["label"] for view in views] == [f"frame {i}" for i in range(1, 9)]
    for view in views:
        assert view["budget"] == 17 and view["num_kept"] == len(set(view["kept"])) == 16 and view["reserved"] == 1
        assert view["tau"] == pytest.approx(view["lam"] * view["rho"]) and view["phi"] == pytest.approx(1 - view["rho"])
        assert max(view["kept"]) < 256


def test_compress_dynamic_shares_frames_x_n_and_draws_the_frame_strips(tmp_path, capsys):
    out = tmp_path / "frames.png"
    assert main(["compress", str(CLIP), "--budget", "17", "--dynamic", "--json", "--out", str(out)]) == 0
    views = json.loads(capsys.readouterr().out)["views"]
    budgets = [view["budget"] for view in views]
    assert sum(budgets) == 136 and len(set(budgets)) > 1
    assert [view["num_kept"] + 1 for view in views] == budgets
    with Image.open(out) as sheet:
        assert sheet.height > sheet.width  # three strips of 2 x 4 frames and the chart, one under the other


def test_compress_draws_one_frame_per_temporal_group_on_qwen(tmp_path, capsys):
    # Qwen-VL merges pairs of frames: 16 sampled frames are 8 views, drawn by each group's first frame.
    out = tmp_path / "groups.png"
    assert main(["compress", str(CLIP), "--model", "tiny-random-qwen2.5-vl", "--budget", "64", "--json", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clip"]["frames"] == 16 and len(report["views"]) == 8
    with Image.open(out) as sheet:
        assert sheet.height > sheet.width


def test_chat_about_a_clip_streams_and_reports_the_video_tokens(capsys):
    assert main(["chat", str(CLIP), "What happens?", "--max-new-tokens", "3"]) == 0
    captured = capsys.readouterr()
    assert "Loading tiny-random-video-llava on cpu" in captured.err and "[136 visual tokens;" in captured.err
    assert main(["chat", str(CLIP), "What happens?", "--max-new-tokens", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["visual_tokens"] == [136] and len(report["selection"]) == 8
    assert main(["chat", str(CLIP), "What happens?", "--max-new-tokens", "2", "--json", "--no-compress"]) == 0
    assert json.loads(capsys.readouterr().out)["visual_tokens"] == [2056]


@pytest.mark.parametrize(
    "args, message",
    [
        (["compress", "{clip}", "--model", "tiny-random"], "tiny-random takes images only; a video needs a video model"),
        (["compress", "{cut}"], "cut.mp4"),
        (["compress", "{words}"], "is not a video PyAV can read"),
        (["chat", "/no/such/clip.mp4", "hi"], "video file '/no/such/clip.mp4' does not exist"),
        (["compress", "{empty}"], "is empty"),
        (["chat", "{clip}", "  "], "the question is empty"),
    ],
)
def test_bad_video_input_exits_2_with_a_message_not_a_traceback(tmp_path, capsys, args, message):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(CLIP.read_bytes()[:3000])
    words = tmp_path / "words.mp4"
    words.write_text("no pictures here\n" * 30)
    empty = tmp_path / "empty.webm"
    empty.write_bytes(b"")
    args = [arg.format(clip=CLIP, cut=cut, words=words, empty=empty) for arg in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
