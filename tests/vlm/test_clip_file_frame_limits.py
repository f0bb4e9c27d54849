"""A clip file taken whole holds at most MAX_SAMPLED_FRAMES frames (that many still pass), and
a frame rate so low that the clip would give no frame gives one."""

from __future__ import annotations

import pytest

from prunesid.limits import MAX_SAMPLED_FRAMES
from prunesid.family_kit.processors import FramewiseVideoProcessor
from tests.conftest import scene_clip


def test_a_clip_of_the_most_frames_is_taken_whole_one_more_is_refused(tmp_path):
    most = scene_clip(tmp_path / "most.mp4", MAX_SAMPLED_FRAMES, 6, (96, 64))
    assert FramewiseVideoProcessor(None).decoded(most).shape[0] == MAX_SAMPLED_FRAMES
    beyond = scene_clip(tmp_path / "beyond.mp4", MAX_SAMPLED_FRAMES + 1, 6, (96, 64))
    with pytest.raises(ValueError, match=f"has {MAX_SAMPLED_FRAMES + 1} frames; at most {MAX_SAMPLED_FRAMES} are taken whole: sample it"):
        FramewiseVideoProcessor(None).decoded(beyond)


@pytest.mark.parametrize("rule", ["uniform", "centred"])
def test_a_frame_rate_below_one_frame_per_clip_gives_one_frame(tmp_path, rule):
    clip = scene_clip(tmp_path / "clip.mp4", 12, 6, (96, 64))  # 2 s
    assert FramewiseVideoProcessor(None, rule).decoded(clip, fps=0.1).shape[0] == 1
