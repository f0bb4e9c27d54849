"""Video loading: uniform sampling of the right frames, only what is needed decoded, and a
clear error for every kind of bad file."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import prunesid.video as video_module
from prunesid.video import Video, is_video, load_video

CLIP = Path(__file__).resolve().parents[2] / "assets" / "clip.mp4"


def _write_clip(path: Path, frames: int, fps: int = 10, gop: int = 10, size=(96, 64), bframes: int = 0) -> Path:
    """A clip whose frame i shows its own number: a grey level of 3 * i and a bar at x = i."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"g": str(gop), "bf": str(bframes), "crf": "10", "threads": "1"}
        for i in range(frames):
            pixels = np.full((size[1], size[0], 3), (3 * i) % 256, dtype=np.uint8)
            pixels[:, i % size[0]] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _every_frame(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


# --- sampling -------------------------------------------------------------------------


@pytest.mark.parametrize("bframes", [0, 3])
def test_sampled_frames_are_the_uniformly_spaced_frames_of_the_clip(tmp_path, bframes):
    path = _write_clip(tmp_path / "count.mp4", frames=95, gop=12, bframes=bframes)
    every = _every_frame(path)
    clip = load_video(path, num_frames=8)
    expected = np.linspace(0, 94, 8).round().astype(int).tolist()
    assert list(clip.indices) == expected == [0, 13, 27, 40, 54, 67, 81, 94]
    assert clip.total_frames == 95 and clip.num_frames == 8 and clip.size == (96, 64)
    for index, frame in zip(clip.indices, clip.frames):
        assert np.array_equal(np.asarray(frame), every[index]), f"frame {index} is not the clip's frame {index}"
    assert clip.timestamps == pytest.approx([i / 10 for i in expected], abs=1e-6)
    assert clip.fps == pytest.approx(10) and clip.duration == pytest.approx(9.5, abs=0.11)


def test_the_example_clip_loads_with_the_models_frame_count():
    clip = load_video(CLIP)
    assert clip.num_frames == 8 and clip.total_frames == 72 and clip.size == (320, 240)
    assert clip.indices[0] == 0 and clip.indices[-1] == 71
    assert all(frame.mode == "RGB" for frame in clip.frames)
    assert load_video(CLIP.read_bytes()).key == clip.key  # a file and its bytes are one clip


def test_a_clip_shorter_than_the_frame_count_repeats_frames(tmp_path):
    path = _write_clip(tmp_path / "three.mp4", frames=3)
    clip = load_video(path, num_frames=8)
    assert list(clip.indices) == [0, 0, 1, 1, 1, 1, 2, 2]
    assert np.array_equal(np.asarray(clip.frames[0]), np.asarray(clip.frames[1]))


class _CountingContainer:
    """av.open's container, counting the frames its decoders produce."""

    def __init__(self, container, counter):
        self._container, self._counter = container, counter

    def __getattr__(self, name):
        return getattr(self._container, name)

    def decode(self, *args, **kwargs):
        for frame in self._container.decode(*args, **kwargs):
            self._counter.append(frame.pts)
            yield frame


def test_only_the_frames_up_to_each_sample_from_its_keyframe_are_decoded(tmp_path, monkeypatch):
    """300 frames, a keyframe every 10: sampling 8 decodes at most 8 x 10 frames, not 300."""
    path = _write_clip(tmp_path / "long.mp4", frames=300, fps=25, gop=10)
    every = _every_frame(path)
    decoded: list = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *args, **kwargs: _CountingContainer(real_open(*args, **kwargs), decoded))
    clip = load_video(path, num_frames=8)
    assert clip.total_frames == 300
    assert 8 <= len(decoded) <= 8 * 10, f"{len(decoded)} frames decoded to sample 8 of 300"
    assert all(np.array_equal(np.asarray(f), every[i]) for i, f in zip(clip.indices, clip.frames))


def test_frames_from_memory_make_a_video():
    frames = [Image.new("RGB", (64, 48), (10 * i, 0, 0)) for i in range(4)]
    clip = Video.from_frames(frames, fps=2)
    assert clip.num_frames == 4 and clip.timestamps == (0.0, 0.5, 1.0, 1.5) and clip.key.startswith("frames:")
    assert Video.from_frames(frames, fps=2).key == clip.key != Video.from_frames(frames[::-1]).key
    with pytest.raises(ValueError, match="one size"):
        Video.from_frames([Image.new("RGB", (64, 48)), Image.new("RGB", (48, 64))])
    with pytest.raises(ValueError, match="has no frames"):
        Video.from_frames([])


def test_videos_are_told_from_images_by_name_or_by_signature(tmp_path):
    assert is_video(CLIP) and is_video(str(CLIP)) and is_video(CLIP.read_bytes())
    renamed = tmp_path / "clip.bin"
    renamed.write_bytes(CLIP.read_bytes())
    assert is_video(renamed)  # the MP4 signature, whatever the name
    png = tmp_path / "picture.png"
    Image.new("RGB", (32, 32)).save(png)
    assert not is_video(png) and not is_video(png.read_bytes())
    assert not is_video(b"\x00\x00\x00\x1cftypavif" + bytes(64))  # an AVIF still image
    assert is_video(tmp_path / "not-there-yet.webm")  # by its name: loading says it is missing
    assert is_video(Video.from_frames([Image.new("RGB", (32, 32))]))


# --- bad input: each with its own clear message ------------------------------------------------


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_video(tmp_path / "nothing.mp4")


def test_an_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        load_video(path)
    with pytest.raises(ValueError, match="is empty"):
        load_video(b"")


def test_a_file_that_is_not_a_video_is_refused(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not moving pictures\n" * 20)
    with pytest.raises(ValueError, match="is not a video PyAV can read"):
        load_video(path)


def test_a_still_image_is_not_a_video(tmp_path):
    path = tmp_path / "picture.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(path)
    with pytest.raises(ValueError, match="is a still image"):
        load_video(path)


def test_a_truncated_clip_is_reported_as_damaged(tmp_path):
    data = CLIP.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])  # the index (moov) sits at the end: gone
    with pytest.raises(ValueError, match="not a video PyAV can read.*damaged|damaged"):
        load_video(path)


def test_a_file_without_a_video_stream_says_what_it_holds(tmp_path):
    path = tmp_path / "sound.wav"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(ValueError, match="has no video stream \\(it holds audio\\)"):
        load_video(path)


@pytest.mark.parametrize("suffix, message", [("avi", "has no video frames \\(an empty clip\\)"), ("mp4", "holds no streams at all \\(an empty clip\\)")])
def test_a_clip_without_frames_is_empty(tmp_path, suffix, message):
    path = tmp_path / f"no-frames.{suffix}"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    with pytest.raises(ValueError, match=message):
        load_video(path)


def test_clips_beyond_the_limits_are_refused(tmp_path, monkeypatch):
    assert video_module.MAX_DURATION_S == 600 and video_module.MAX_FILE_BYTES == 256 * 2**20
    monkeypatch.setattr(video_module, "MAX_DURATION_S", 4.0)
    with pytest.raises(ValueError, match="lasts 6 s; the longest accepted is 4 s"):
        load_video(CLIP)
    monkeypatch.setattr(video_module, "MAX_DURATION_S", 600.0)
    monkeypatch.setattr(video_module, "MAX_FILE_BYTES", 10_000)
    with pytest.raises(ValueError, match="the largest accepted is 0 MB|larger than"):
        load_video(CLIP)
    monkeypatch.setattr(video_module, "MAX_FILE_BYTES", 256 * 2**20)
    monkeypatch.setattr(video_module, "MAX_CLIP_FRAMES", 50)
    with pytest.raises(ValueError, match="more than 50 frames"):
        load_video(CLIP)
    monkeypatch.setattr(video_module, "MAX_CLIP_FRAMES", 36_000)
    monkeypatch.setattr(video_module, "MAX_FRAME_PIXELS", 200 * 200)
    with pytest.raises(ValueError, match="frames are 320 x 240; the largest accepted"):
        load_video(CLIP)


def test_a_clip_with_tiny_frames_is_refused(tmp_path):
    path = _write_clip(tmp_path / "tiny.mp4", frames=4, size=(32, 8))
    with pytest.raises(ValueError, match="32 x 8 pixels; each side must be at least 16"):
        load_video(path)


@pytest.mark.parametrize("count", [0, -1, 65, 2.5, True])
def test_a_bad_frame_count_is_refused(count):
    with pytest.raises(ValueError, match="num_frames must be an integer"):
        load_video(CLIP, num_frames=count)


def test_without_timestamps_one_pass_converts_just_the_sampled_frames(tmp_path):
    """The fallback for streams whose packets carry no timestamps to seek by."""
    path = _write_clip(tmp_path / "plain.mp4", frames=20, bframes=2)
    every = _every_frame(path)
    with av.open(str(path)) as container:
        found = video_module._decode_in_order(container, container.streams.video[0], {0, 7, 19})
    assert sorted(found) == [0, 7, 19]
    assert all(np.array_equal(np.asarray(found[i]), every[i]) for i in found)
