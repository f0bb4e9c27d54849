"""The demo's video handlers and the frame pictures, called directly (no server, no browser):
each frame drawn with its own selection, the chart showing each frame's N', the stats,
the chat about the clip, and a clear error for every bad input."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import functools

from demo.controls import Controls
from demo.files import upload_folder
from demo.limits import FRAME_BUDGET_RANGE
from demo.video import VIDEO_REFUSED, VideoHandlers, choose_video_model, example_videos, video_conversation
from prunesid import PruneSID, load_vlm
from viz.frames import BAR_COLOUR, CAPTION_HEIGHT, GAP, TILE_WIDTH, render_frame_chart, render_frame_strip

clip = functools.partial(Controls.read, budget_range=FRAME_BUDGET_RANGE)  # the clip section's controls, N per frame

CLIP = Path(__file__).resolve().parents[2] / "assets" / "clip.mp4"


@pytest.fixture(scope="module")
def handlers():
    return VideoHandlers(load_vlm("tiny-random-video-llava"), max_new_tokens=6)


def uploaded(data: bytes, name: str) -> str:
    """Put ``data`` where Gradio puts uploads: the only place (besides assets/) read from."""
    os.makedirs(upload_folder(), exist_ok=True)
    path = os.path.join(tempfile.mkdtemp(dir=upload_folder(), prefix="test-video-"), name)
    Path(path).write_bytes(data)
    return path


@pytest.fixture(scope="module")
def clip_upload():
    path = uploaded(CLIP.read_bytes(), "clip.mp4")
    yield path
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def _tile_origin(frame: int, tile_height: int, columns: int = 4) -> tuple[int, int]:
    row, col = divmod(frame, columns)
    return col * (TILE_WIDTH + GAP), row * (CAPTION_HEIGHT + tile_height + GAP) + CAPTION_HEIGHT


def test_the_example_clip_is_offered():
    assert [Path(path).name for path in example_videos()] == ["clip.mp4"]


def test_analyze_video_draws_every_frame_with_its_own_kept_patches(handlers, clip_upload):
    groups, survivors, kept, chart, stats, table = handlers.analyze_video({"path": clip_upload}, clip(17, 0, 0, "psca", False))
    assert kept.size == groups.size == survivors.size == (4 * TILE_WIDTH + 3 * GAP, 2 * (CAPTION_HEIGHT + 240) + GAP)
    encoded = handlers.encode(clip_upload)
    selection = handlers.vlm.compress(encoded, PruneSID(budget=17))[0]
    pixels = np.asarray(kept, dtype=np.float64)
    checked = 0
    for frame in (0, 5, 7):  # a street frame and two sea frames: different kept sets
        x0, y0 = _tile_origin(frame, 240)
        original = np.asarray(encoded.video.frames[frame], dtype=np.float64)
        grid = encoded.grids[frame]
        kept_mask = selection.kept[frame]
        for patch in (int(selection.indices[frame][0]), int((~kept_mask).nonzero()[0])):
            left, top, right, bottom = grid.patch_box(patch)
            cx, cy = int((left + right) / 2), int((top + bottom) / 2)
            drawn, seen = pixels[y0 + cy, x0 + cx], original[cy, cx]
            if bool(kept_mask[patch]):
                np.testing.assert_allclose(drawn, seen, atol=3)  # kept: at full brightness
            else:
                np.testing.assert_allclose(drawn, 0.22 * seen, atol=3)  # dropped: dimmed
            checked += 1
    assert checked == 6
    assert stats["frames"] == 8 and stats["budget_total"] == 136
    assert stats["visual_tokens"] == 136 and stats["visual_tokens_uncompressed"] == 2056 and stats["compression"] == 15.12
    assert [frame["kept"] for frame in stats["per_frame"]] == [16] * 8
    assert [frame["clip_frame"] for frame in stats["per_frame"]] == list(encoded.video.indices)
    assert table.count("| 16 + CLS |") == 8 and "**136** video tokens" in table


def test_each_frame_of_the_strip_shows_its_own_selection_not_the_first_frames():
    frames = [Image.new("RGB", (224, 224), (200, 200, 200)) for _ in range(2)]
    vlm = load_vlm("tiny-random-video-llava")
    from prunesid.video import Video

    encoded = vlm.encode(Video.from_frames([Image.new("RGB", (224, 224), (40 * i, 90, 200 - 40 * i)) for i in range(2)]))
    selection = vlm.compress(encoded, PruneSID(budget=3, keep_cls=False))[0]
    selection.indices = [selection.indices[0].new_tensor([0, 1, 2]), selection.indices[1].new_tensor([253, 254, 255])]
    strip = np.asarray(render_frame_strip(frames, selection, encoded.grids, "kept", columns=2), dtype=np.float64)
    scale = TILE_WIDTH / 240  # a 224 px frame is drawn at 240 (the smallest drawing side), then tiled at 320
    for frame, bright, dark in ((0, 1, 254), (1, 254, 1)):
        x0, y0 = _tile_origin(frame, TILE_WIDTH, columns=2)
        for patch, level in ((bright, 200), (dark, 44)):
            left, top, right, bottom = encoded.grids[frame].patch_box(patch)
            x, y = int((left + right) / 2 * 240 / 224 * scale), int((top + bottom) / 2 * 240 / 224 * scale)
            assert abs(strip[y0 + y, x0 + x].mean() - level) < 8, (frame, patch)


def test_the_chart_has_one_bar_per_frame_as_tall_as_its_budget(handlers, clip_upload):
    *_, stats, _ = handlers.analyze_video(clip_upload, clip(17, 0, 0, "psca", True))
    budgets = [frame["budget"] for frame in stats["per_frame"]]
    assert sum(budgets) == 136 and len(set(budgets)) > 1
    encoded = handlers.encode(clip_upload)
    selection = handlers.vlm.compress(encoded, handlers.press(clip(17, 0, 0, "psca", True)))[0]
    chart = np.asarray(render_frame_chart(selection, list(encoded.video.timestamps), budget=17))
    from viz.frames import CHART_WIDTH, MARGIN_LEFT, MARGIN_RIGHT

    slot = (CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / 8
    heights = []
    for frame in range(8):
        x = int(MARGIN_LEFT + slot * (frame + 0.5)) + 4  # beside the rho / phi lines' dots
        column = chart[:, x]
        heights.append(int((np.abs(column.astype(int) - BAR_COLOUR).sum(axis=1) == 0).sum()))
    ratios = [h / b for h, b in zip(heights, budgets)]
    assert max(ratios) - min(ratios) < 0.1 * max(ratios), (heights, budgets)


def test_dynamic_shares_frames_x_n_and_the_stats_report_every_frames_budget(handlers, clip_upload):
    *_, stats, table = handlers.analyze_video(clip_upload, clip(17, 0, 0, "psca", True))
    assert stats["dynamic"] and stats["phi_ref"] == pytest.approx(np.mean([f["phi"] for f in stats["per_frame"]]), rel=1e-5)
    assert stats["visual_tokens"] == 136 == sum(f["budget"] for f in stats["per_frame"])
    street, sea = stats["per_frame"][0], stats["per_frame"][-1]
    assert street["phi"] > sea["phi"] and street["budget"] > 17 > sea["budget"]
    assert "136 in all" in table


def test_chat_about_the_clip_streams_and_reports_the_video_tokens(handlers, clip_upload):
    updates = list(handlers.chat_video("What happens in the clip?", [], clip_upload, clip(17, 0, 0, "psca", False)))
    history, info, stats, table = updates[-1]
    assert history[0] == {"role": "user", "content": "What happens in the clip?"}
    assert history[-1]["role"] == "assistant" and history[-1]["content"]
    assert info.startswith("136 video tokens (8 frames) of 2056") and stats["visual_tokens"] == 136
    follow_up = list(handlers.chat_video("And then?", history, clip_upload, clip(17, 0, 0, "psca", False)))[-1]
    assert len(follow_up[0]) == 4
    messages = video_conversation(history, "And then?")
    assert messages[0]["content"][0] == {"type": "video"} and [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert not any(part.get("type") == "video" for m in messages[1:] for part in m["content"])


def test_bad_inputs_are_named_and_the_handlers_keep_working(handlers, clip_upload, tmp_path):
    with pytest.raises(ValueError, match="no video: upload a clip"):
        handlers.analyze_video(None, clip(17, 0, 0, "psca", False))
    outside = tmp_path / "clip.mp4"
    outside.write_bytes(CLIP.read_bytes())
    with pytest.raises(ValueError, match=VIDEO_REFUSED):
        handlers.analyze_video(str(outside), clip(17, 0, 0, "psca", False))
    with pytest.raises(ValueError, match=VIDEO_REFUSED):
        handlers.analyze_video({"path": "/etc/passwd"}, clip(17, 0, 0, "psca", False))
    cut = uploaded(CLIP.read_bytes()[:4000], "cut.mp4")
    with pytest.raises(ValueError, match="not a video PyAV can read|damaged"):
        handlers.analyze_video(cut, clip(17, 0, 0, "psca", False))
    text = uploaded(b"just some words, no pictures" * 10, "words.webm")
    with pytest.raises(ValueError, match="not a video PyAV can read"):
        handlers.analyze_video(text, clip(17, 0, 0, "psca", False))
    picture = tmp_path / "picture.png"
    Image.new("RGB", (64, 64)).save(picture)
    still = uploaded(picture.read_bytes(), "picture.png")
    with pytest.raises(ValueError, match="is a still image"):
        handlers.analyze_video(still, clip(17, 0, 0, "psca", False))
    empty = uploaded(b"", "empty.mp4")
    with pytest.raises(ValueError, match="is empty"):
        handlers.analyze_video(empty, clip(17, 0, 0, "psca", False))
    with pytest.raises(ValueError, match="budget must be"):
        handlers.analyze_video(clip_upload, clip(0, 0, 0, "psca", False))
    with pytest.raises(ValueError, match="the message is empty"):
        next(handlers.chat_video("  ", [], clip_upload, clip(17, 0, 0, "psca", False)))
    # And the next request is served as usual.
    assert handlers.analyze_video(clip_upload, clip(17, 0, 0, "psca", False))[4]["visual_tokens"] == 136
    assert handlers.refresh_video(None, clip(17, 0, 0, "psca", False)) == (None, None, None, None, None, "")


def test_the_video_model_is_the_apps_own_when_it_takes_videos(monkeypatch):
    monkeypatch.delenv("PRUNESID_VIDEO_MODEL", raising=False)
    video_vlm = load_vlm("tiny-random-video-llava")
    assert choose_video_model(video_vlm)[0] is video_vlm
    chosen, note = choose_video_model(load_vlm("tiny-random"))
    assert chosen.name == "tiny-random-video-llava" and "random weights" in note
    with pytest.raises(ValueError, match="takes images only"):
        VideoHandlers(load_vlm("tiny-random"))
