"""A clip the browser cannot play (MPEG-4 Part 2) gets a VP8 WebM copy of the same frames, at
the same size and rate, so the analysis of the copy samples the same frames at the same
times; a clip browsers play, or one beyond the re-encode's bounds, is left as it is."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

import demo.playable as playable
from demo.playable import codec_of, playable_copy
from prunesid.video import load_video


def write_clip(path: Path, codec: str, frames: int = 24, size=(160, 120), rate: int = 12) -> str:
    with av.open(str(path), "w", format="mp4") as output:
        stream = output.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for index in range(frames):
            pixels = np.zeros((size[1], size[0], 3), np.uint8)
            pixels[:, : (index * 6) % size[0]] = (200, 80, 40)  # a bar that grows frame by frame
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return str(path)


def test_an_mpeg4_clip_gets_a_vp8_copy_of_the_same_frames(tmp_path):
    original = write_clip(tmp_path / "part2.mp4", "mpeg4")
    assert codec_of(original) == "mpeg4"
    copy = playable_copy(original, folder=str(tmp_path))
    assert copy is not None and copy.endswith(".webm") and codec_of(copy) == "vp8"
    before, after = (load_video(Path(path).read_bytes(), num_frames=8) for path in (original, copy))
    assert (after.total_frames, after.frames[0].size, after.indices) == (before.total_frames, before.frames[0].size, before.indices)
    assert before.total_frames == 24 and after.timestamps == pytest.approx(before.timestamps, abs=1e-3)
    assert after.duration == pytest.approx(before.duration, abs=1e-3)
    # The sampled frames are the same pictures (up to the lossy codecs).
    for old, new in zip(before.frames, after.frames):
        assert np.abs(np.asarray(old, dtype=int) - np.asarray(new, dtype=int)).mean() < 12


def test_a_clip_browsers_play_is_left_as_it_is(tmp_path):
    assert playable_copy(write_clip(tmp_path / "h264.mp4", "libx264")) is None


def test_a_clip_beyond_the_bounds_is_left_as_it_is_and_leaves_no_file(tmp_path, monkeypatch):
    original = write_clip(tmp_path / "part2.mp4", "mpeg4")
    monkeypatch.setattr(playable, "MAX_TRANSCODE_PIXELS", 24 * 160 * 120 - 1)
    assert playable_copy(original, folder=str(tmp_path)) is None
    monkeypatch.setattr(playable, "MAX_TRANSCODE_PIXELS", 10**9)
    monkeypatch.setattr(playable, "DECODE_SECONDS", -1)  # out of time at the first frame
    assert playable_copy(original, folder=str(tmp_path)) is None
    assert not list(tmp_path.glob("*.webm"))
