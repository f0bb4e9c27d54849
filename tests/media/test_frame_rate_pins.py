"""FrameRate at its bounds: an odd ``min_frames`` rounds up to whole groups, ``max_frames``
of exactly one group is accepted.

Each test names the one-line bug it was written against; each was run with that bug in
place and failed.
"""

from __future__ import annotations

import pytest

from prunesid.video import FrameRate


@pytest.mark.parametrize(("min_frames", "expected"), [(5, 6), (3, 4), (4, 4), (1, 2), (7, 8)])
def test_an_odd_min_frames_rounds_up_to_whole_groups(min_frames, expected):
    """Bug caught: the lower bound rounded down (5 asked, 4 sampled). A 1 s clip at 2 fps
    wants 2 frames; the minimum lifts it to whole pairs of at least ``min_frames``."""
    assert FrameRate(fps=2.0, min_frames=min_frames).count(30, 30.0) == expected
    assert FrameRate(fps=2.0, min_frames=min_frames).count(300, None) == expected  # rate and length unknown


def test_max_frames_of_one_group_is_accepted_and_caps_the_count():
    """Bug caught: ``max_frames <= multiple`` refused (a cap of exactly one group)."""
    rate = FrameRate(fps=2.0, min_frames=1, max_frames=2)
    assert rate.count(3000, 30.0) == 2
    with pytest.raises(ValueError, match="max_frames \\(1\\) must hold at least one group of 2 frames"):
        FrameRate(fps=2.0, min_frames=1, max_frames=1)


def test_max_frames_rounds_down_to_whole_groups():
    assert FrameRate(fps=2.0, min_frames=2, max_frames=7).count(3000, 30.0) == 6
