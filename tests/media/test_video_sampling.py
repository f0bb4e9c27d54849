"""Sampling a clip at a frame rate (``FrameRate``, ``load_vlm(..., fps=2.0)`` on Qwen-VL), as
Qwen-VL's processors do: the count follows the clip's length within [min, max] frames, in
pairs; ``second_per_grid_ts`` comes from the rate actually sampled; every limit of fixed-count
sampling still holds, and keeping every token is still the unmodified model."""

from __future__ import annotations

import math
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from prunesid import load_vlm
from prunesid.limits import MAX_DURATION_S, MAX_SAMPLED_FRAMES
from prunesid.video import FrameRate, load_video


def qwen_count(total: int, rate: float, fps: float = 2.0, low: int = 4, high: int = 32) -> int:
    """Qwen-VL's rule (qwen-vl-utils' smart_nframes, transformers' sample_frames), written out
    here on its own: seconds x fps within [low, high] and the clip, floored to an even count."""
    low, high = math.ceil(low / 2) * 2, math.floor(min(high, total) / 2) * 2
    return max(math.floor(min(max(total / rate * fps, low), high, total) / 2) * 2, 2)


def write_clip(path, frames: int, fps: float, size=(64, 48)) -> str:
    """A clip whose frame i is a grey level of 2 * i (mod 256)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"g": "12", "crf": "10", "threads": "1"}
        for i in range(frames):
            pixels = np.full((size[1], size[0], 3), (2 * i) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


@pytest.mark.parametrize("total, rate, fps, expected", [
    (72, 12, 2.0, 12),  # 6 s at 2 fps
    (12, 6, 2.0, 4),  # 2 s: 4 frames, the minimum
    (21, 10, 2.0, 4),  # 2.1 s: 4.2 -> 4
    (30, 10, 2.0, 6),
    (3, 30, 2.0, 2),  # shorter than the minimum: the clip's own frames, even
    (1, 30, 2.0, 2),  # one frame: a pair (the frame twice)
    (36000, 60, 2.0, 32),  # 10 minutes: the maximum
    (100, 25, 2.0, 8),
    (72, 12, 1.0, 6),
    (72, 12, 0.5, 4),
    (90, 30, 7.0, 20),  # 3 s x 7 = 21 -> an even 20
])
def test_frame_counts_follow_the_qwen_processors_rule(total, rate, fps, expected):
    assert FrameRate(fps=fps).count(total, rate) == expected == qwen_count(total, rate, fps)


def test_unknown_rate_uses_the_duration_then_the_minimum():
    assert FrameRate().count(100, None, duration=5.0) == 10
    assert FrameRate().count(100, None) == 4


@pytest.mark.parametrize("options, message", [
    ({"fps": 0}, "fps must be a number of frames per second in (0, 60], got 0"),
    ({"fps": -2.0}, "fps must be a number"),
    ({"fps": 61}, "fps must be a number"),
    ({"fps": True}, "fps must be a number"),
    ({"fps": "2"}, "fps must be a number"),
    ({"max_frames": MAX_SAMPLED_FRAMES + 1}, f"max_frames must be an integer in [1, {MAX_SAMPLED_FRAMES}]"),
    ({"min_frames": 0}, "min_frames must be an integer"),
    ({"min_frames": 8, "max_frames": 6}, "min_frames (8) must not exceed max_frames (6)"),
    ({"min_frames": 1, "max_frames": 1}, "max_frames (1) must hold at least one group of 2 frames"),
])
def test_bad_sampling_settings_are_refused_by_name(options, message):
    with pytest.raises(ValueError) as error:
        FrameRate(**options)
    assert message in str(error.value)


@pytest.mark.parametrize("frames, rate", [(30, 10), (45, 15), (25, 25), (200, 10), (7, 5)])
def test_clip_files_are_sampled_at_the_rate(tmp_path, frames, rate):
    clip = load_video(write_clip(tmp_path / "clip.mp4", frames, rate), num_frames=FrameRate())
    count = qwen_count(frames, rate)
    assert clip.num_frames == count and clip.total_frames == frames and clip.fps == pytest.approx(rate)
    assert list(clip.indices) == np.linspace(0, frames - 1, count).round().astype(int).tolist()
    assert list(clip.timestamps) == pytest.approx([index / rate for index in clip.indices])
    grey = [int(np.asarray(frame)[..., 0].mean().round()) for frame in clip.frames]
    assert grey == pytest.approx([(2 * index) % 256 for index in clip.indices], abs=3)  # the frames at those indices


def test_a_long_clip_decodes_at_most_max_frames_and_a_too_long_one_is_refused(tmp_path):
    """fps sampling asks for seconds x fps frames; the count stops at max_frames (the decode
    budget and the kept frames stay those of a fixed count), and the duration limit holds."""
    long = write_clip(tmp_path / "long.mp4", frames=300, fps=Fraction(1, 2), size=(32, 32))  # 600 s: 1200 frames at 2 fps
    clip = load_video(long, num_frames=FrameRate())
    assert clip.num_frames == 32 and clip.indices[-1] == 299
    too_long = write_clip(tmp_path / "too_long.mp4", frames=310, fps=Fraction(1, 2), size=(32, 32))  # 620 s
    with pytest.raises(ValueError, match=f"the longest accepted is {MAX_DURATION_S:.0f} s"):
        load_video(too_long, num_frames=FrameRate())


def test_fps_is_refused_where_it_does_not_apply():
    with pytest.raises(ValueError, match="fps applies only to Qwen-VL clips, not to 'llava' models"):
        load_vlm("tiny-random", fps=2.0)
    with pytest.raises(ValueError, match="fps must be a number"):
        load_vlm("tiny-random-qwen2.5-vl", fps=0.0)


@pytest.fixture(scope="module")
def qwen_at_2fps():
    return load_vlm("tiny-random-qwen2.5-vl", fps=2.0)


@pytest.mark.parametrize("frames, rate", [(30, 10), (25, 25), (200, 10)])
def test_second_per_grid_ts_is_read_from_the_sampled_rate(tmp_path, qwen_at_2fps, frames, rate):
    """Qwen2.5-VL's second_per_grid_ts = 2 / (sampled frames / clip frames x clip rate), as
    its processor computes it from the frames qwen-vl-utils sampled."""
    path = write_clip(tmp_path / "clip.mp4", frames, rate, size=(112, 84))
    encoded = qwen_at_2fps.encode(path)
    count = qwen_count(frames, rate)
    assert encoded.num_views == count // 2 and encoded.video.num_frames == count
    assert qwen_at_2fps.family.seconds_per_group(encoded) == pytest.approx(2 / (count / frames * rate))


def test_keeping_everything_at_2_fps_is_the_unmodified_model(tmp_path, qwen_at_2fps):
    from tests.vlm.test_qwen_video import KEEP_ALL, QUESTION, reference_inputs

    path = write_clip(tmp_path / "clip.mp4", 45, 15, size=(112, 84))
    clip = load_video(path, num_frames=qwen_at_2fps.family.num_frames)
    assert clip.num_frames == 6
    reference = reference_inputs(qwen_at_2fps, [clip])
    assert float(reference["second_per_grid_ts"][0]) == pytest.approx(1.0)
    with torch.inference_mode():
        expected = qwen_at_2fps.model(**reference).logits
        prepared = qwen_at_2fps.prepare(path, QUESTION, KEEP_ALL)
        logits = qwen_at_2fps.model(input_ids=prepared.input_ids, attention_mask=torch.ones_like(prepared.input_ids), **prepared.model_inputs).logits
    assert torch.equal(prepared.input_ids, reference["input_ids"])
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
