"""A clip file handed to a frame-wise video processor (lmms-eval's InternVL class does that):
decoded with PyAV and sampled by the model's own rule, or refused, named, when it cannot be."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import GotOcr2ImageProcessorPil

from prunesid.family_kit import load_families
from prunesid.family_kit.processors import VIDEO_STAND_INS, FramewiseVideoProcessor
from tests.conftest import scene_clip

TOTAL = 12


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return scene_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", TOTAL, 6, (224, 168))


@pytest.fixture(scope="module")
def every_frame(clip):
    return FramewiseVideoProcessor(None).decoded(clip)


def frame_numbers(frames, every_frame) -> list[int]:
    """Which frames of the clip ``frames`` are (each compared with every decoded frame)."""
    return [int(np.argmin([np.abs(frame.astype(int) - other.astype(int)).mean() for other in every_frame])) for frame in frames]


def test_without_sampling_a_file_gives_every_frame(every_frame):
    assert every_frame.shape[0] == TOTAL and every_frame.dtype == np.uint8
    assert frame_numbers(every_frame, every_frame) == list(range(TOTAL))


@pytest.mark.parametrize("count", [1, 5, 8, 12])
def test_internvl_samples_frame_centres(clip, every_frame, count):
    """InternVL's video processor: frame indices total/n/2 + i total/n, rounded down."""
    load_families()  # the adapters register their stand-ins
    assert VIDEO_STAND_INS["InternVLProcessor"]("unused", GotOcr2ImageProcessorPil()).sampling == "centred"
    frames = FramewiseVideoProcessor(None, "centred").decoded(clip, count)
    step = TOTAL / count
    assert frame_numbers(frames, every_frame) == [int(step / 2 + i * step) for i in range(count)]


def test_video_llava_samples_from_the_first_frame(clip, every_frame):
    frames = FramewiseVideoProcessor(None, "uniform").decoded(clip, 8)
    assert frame_numbers(frames, every_frame) == [i * TOTAL // 8 for i in range(8)]


def test_a_frame_rate_sets_the_count(clip, every_frame):
    frames = FramewiseVideoProcessor(None, "uniform").decoded(clip, fps=3.0)  # 12 frames at 6 fps: 2 s
    assert len(frames) == 6


@pytest.mark.parametrize("count", [0, TOTAL + 1])
def test_a_count_the_clip_cannot_give_is_refused(clip, count):
    with pytest.raises(ValueError, match=f"cannot sample {count} frames from {TOTAL}"):
        FramewiseVideoProcessor(None).decoded(clip, count)


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="sampling must be 'uniform' or 'centred'"):
        FramewiseVideoProcessor(None, "random")


def test_clips_of_different_lengths_in_one_call_are_refused_by_name(clip):
    from prunesid.family_kit import builtin_directory
    from prunesid.family_kit.processors import load_processor

    processor = load_processor(str(builtin_directory("tiny-random-internvl")), "internvl").video_processor
    with pytest.raises(ValueError, match=r"the clips of one call must have one frame count, got \[4, 3\]"):
        processor([processor.decoded(clip, 4), processor.decoded(clip, 3)])
