"""Hostile media against the library: every decoded frame is checked, decoding is bounded
whatever the keyframe layout, and every picture drawn has a bounded size whatever the
input's shape. The corpus is made by tests/hostile_media.py."""

from __future__ import annotations

import math

import pytest
from PIL import Image

import prunesid.video as video_module
from prunesid.images import DECODED_PIXELS, load_image, reduction_factor
from prunesid.limits import FRAME_LONG_SIDE, MAX_DECODED_FRAMES
from prunesid.video import load_video
from tests import hostile_media as corpus
from viz.canvas import MAX_CANVAS_SIDE, drawing_scale
from viz.frames import TILE_MAX_HEIGHT, TILE_WIDTH, _fit_tile


def test_narrow_and_wide_clips_are_refused_by_their_aspect(tmp_path):
    for width, height in ((16, 2000), (2000, 16), (16, 60000)):
        clip = corpus.ffv1_clip(tmp_path / f"{width}x{height}.mkv", width, height)
        with pytest.raises(ValueError, match=f"frames are {width} x {height}; aspect ratios beyond 20:1 are not accepted"):
            load_video(clip)


def test_a_header_that_lies_about_later_oversized_frames_does_not_get_them_decoded(tmp_path):
    # Header and first frame 64 x 64, the 7 others 5000 x 5000 (25 MP): the decoder itself
    # refuses them (FFmpeg's max_pixels), before any full-size buffer exists.
    clip = corpus.mjpeg_with_sizes(tmp_path / "lying.avi", [(64, 64)] + [(5000, 5000)] * 7)
    with pytest.raises(ValueError, match=r"could not be decoded: it is damaged or holds a frame over the 8.3 MP accepted"):
        load_video(clip)


def test_a_header_that_lies_about_later_narrow_frames_is_caught_frame_by_frame(tmp_path):
    clip = corpus.mjpeg_with_sizes(tmp_path / "lying-narrow.avi", [(64, 64)] * 3 + [(16, 400)] * 5)
    with pytest.raises(ValueError, match="frames are 16 x 400; aspect ratios beyond 20:1"):
        load_video(clip)
    # The same clip with later frames of a fine shape loads (resized to the first's size).
    fine = load_video(corpus.mjpeg_with_sizes(tmp_path / "changing.avi", [(64, 64)] * 3 + [(96, 48)] * 5))
    assert fine.size == (64, 64) and fine.num_frames == 8


def test_a_single_keyframe_clip_is_refused_past_the_decode_budget(tmp_path, monkeypatch):
    long = corpus.single_keyframe_clip(tmp_path / "long.mp4", MAX_DECODED_FRAMES + 600)
    assert corpus.keyframe_count(long) == 1
    with pytest.raises(ValueError, match=f"would need more than {MAX_DECODED_FRAMES} frames decoded to reach the 8 sampled ones"):
        load_video(long)
    # The budget is exact: the last sampled frame of a 40-frame clip is the 40th decoded.
    short = corpus.single_keyframe_clip(tmp_path / "short.mp4", 40)
    monkeypatch.setattr(video_module, "MAX_DECODED_FRAMES", 40)
    assert load_video(short).indices[-1] == 39
    monkeypatch.setattr(video_module, "MAX_DECODED_FRAMES", 39)
    with pytest.raises(ValueError, match="would need more than 39 frames decoded"):
        load_video(short)


def test_decoding_has_a_wall_clock_budget(tmp_path, monkeypatch):
    clip = corpus.single_keyframe_clip(tmp_path / "clip.mp4", 20)
    monkeypatch.setattr(video_module, "DECODE_SECONDS", -1.0)
    with pytest.raises(ValueError, match=r"took more than -1 s to decode; please trim or re-encode it"):
        load_video(clip)


def test_large_frames_are_converted_reduced(tmp_path):
    clip = load_video(corpus.ffv1_clip(tmp_path / "big.mkv", 2000, 1200, frames=2))
    assert clip.size == (FRAME_LONG_SIDE, round(1200 * FRAME_LONG_SIDE / 2000))
    small = load_video(corpus.ffv1_clip(tmp_path / "small.mkv", FRAME_LONG_SIDE, 640, frames=2))
    assert small.size == (FRAME_LONG_SIDE, 640)  # at the limit: untouched


def test_a_clip_with_a_hundred_streams_reads_the_first_video_stream(tmp_path):
    clip = load_video(corpus.ffv1_clip(tmp_path / "streams.mkv", 64, 48, frames=4, streams=100))
    assert clip.total_frames == 4 and clip.size == (64, 48)


@pytest.mark.parametrize("size", [(16, 2000), (2000, 16)])
def test_narrow_and_wide_images_are_refused(tmp_path, size):
    with pytest.raises(ValueError, match=f"is {size[0]} x {size[1]}; aspect ratios beyond 20:1 are not accepted"):
        load_image(corpus.png(tmp_path / "strip.png", *size))


def test_image_headers_that_lie_are_refused_without_decoding_their_claim(tmp_path):
    with pytest.raises(ValueError, match="is 900.0 MP; the largest accepted is 179.0 MP"):
        load_image(corpus.png_claiming(tmp_path / "bomb.png", 30000, 30000))
    # A JPEG claiming 144 MP over 1 KB of data: decoded straight at 1/4 scale (the DCT's
    # draft mode), never at the size it claims.
    claimed = load_image(corpus.jpeg_claiming(tmp_path / "short.jpg", 12000, 12000))
    assert claimed.size == (3000, 3000) and claimed.width * claimed.height <= DECODED_PIXELS


def test_an_8001_square_image_decodes_within_the_pixel_limit():
    # ceil(8001 / 2) ** 2 = 16_008_001 > DECODED_PIXELS: the factor must be 3, not 2.
    assert reduction_factor(8001, 8001) == 3
    loaded = load_image(Image.new("L", (8001, 8001), 120))
    assert loaded.size == (2667, 2667) and loaded.width * loaded.height <= DECODED_PIXELS


@pytest.mark.parametrize("size", [(16, 320), (320, 16), (16, 60000), (60000, 16), (20, 20), (8000, 8000)])
def test_no_drawing_is_longer_than_the_canvas_limit_whatever_the_shape(size):
    scale = drawing_scale(size)
    assert max(size) * scale <= MAX_CANVAS_SIDE + 1e-6
    if max(size) * math.ceil(240 / min(size)) <= MAX_CANVAS_SIDE:  # room to enlarge: the short side reaches 240
        assert min(size) * scale >= 240 - 1e-6


@pytest.mark.parametrize("size", [(77, 1536), (1536, 77), (320, 240), (100, 100)])
def test_every_tile_of_a_frame_strip_fits_its_cell(size):
    tile = _fit_tile(Image.new("RGB", size))
    assert tile.width <= TILE_WIDTH and tile.height <= TILE_MAX_HEIGHT
    assert tile.width == TILE_WIDTH or tile.height == TILE_MAX_HEIGHT  # as large as the cell allows


def test_a_canvas_with_padding_far_past_a_narrow_image_stays_within_the_limit():
    from prunesid.geometry import PatchGrid
    from viz.canvas import build_canvas

    # A 16 x 320 strip letterboxed into a mosaic three tiles wide (LLaVA-NeXT pads, it does
    # not crop): the boxes reach 472 px either side of the image, three times its long side.
    grid = PatchGrid(24, 72, (-472.0, 0.0, 488.0, 320.0), "tiles")
    canvas = build_canvas(Image.new("RGB", (16, 320)), [grid], [0])
    assert max(canvas.pixels.shape[:2]) <= MAX_CANVAS_SIDE
    assert canvas.on_image.any() and (canvas.view >= 0).all()
