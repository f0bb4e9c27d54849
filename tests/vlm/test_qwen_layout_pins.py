"""Qwen-VL's clip layout in the units it mixes: frames vs temporal groups, a clip's resize per
frame vs per group, the fixed frame count vs the most a rate can sample, one clip vs another.

Each test names the one-line bug it was written against; each was run with that bug in
place and failed.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from prunesid import load_vlm
from prunesid.families.qwen_vl.adapter import QwenLayout


@pytest.fixture(scope="module")
def qwen25():
    return load_vlm("tiny-random-qwen2.5-vl")


@pytest.fixture(scope="module")
def qwen3():
    return load_vlm("tiny-random-qwen3-vl")


@pytest.mark.parametrize(("frames", "groups"), [(1, 1), (2, 1), (5, 3), (7, 4), (16, 8)])
def test_an_odd_frame_count_is_padded_to_a_whole_group(qwen25, frames, groups):
    """Bug caught: temporal groups floored (``frames // 2``): the last frame's group lost
    in the layout (5 frames: 2 groups where the processor makes 3)."""
    layout = qwen25.family.layout
    sized = QwenLayout(
        layout.token_pixels, layout.min_pixels, layout.max_pixels, video_pixels=layout.video_pixels,
        whole_clip=layout.whole_clip, temporal_patch_size=layout.temporal_patch_size, frames=frames,
    )
    assert sized.groups() == groups
    assert len(sized.selectable_tokens((320, 240), "video")) == groups
    assert len(sized.grids((320, 240), "video")) == groups
    frame = Image.new("RGB", (320, 240), (10, 120, 200))
    grid = qwen25.family.preprocess_video([frame] * frames)["video_grid_thw"][0]
    assert int(grid[0]) == groups  # what the processor makes of the same frames


def test_qwen3_resizes_a_clip_for_all_its_frames(qwen3):
    """Bug caught: Qwen3-VL's whole-clip resize given the number of groups instead of frames
    (16 frames of 1280 x 960 exceed the clip's pixel limit and shrink; 8 would not)."""
    layout = qwen3.family.layout
    frame = Image.new("RGB", (1280, 960), (10, 120, 200))
    _, height, width = (int(v) for v in qwen3.family.preprocess_video([frame] * 16)["video_grid_thw"][0])
    merge = qwen3.model.config.vision_config.spatial_merge_size
    assert layout.grid_shape((1280, 960), "video", frames=16) == (height // merge, width // merge)
    assert layout.grid_shape((1280, 960), "video", frames=16) != layout.grid_shape((1280, 960), "video", frames=8)
    assert layout.selectable_tokens((1280, 960), "video") == [height * width // merge**2] * 8


def test_at_a_rate_the_layout_is_sized_by_the_most_frames_a_clip_can_get():
    """Bug caught: at an fps the layout sized by ``min_frames`` (4) instead of ``max_frames``
    (32): the pre-sized count of a clip covered 2 groups, not the 16 a long clip gets."""
    vlm = load_vlm("tiny-random-qwen2.5-vl", fps=2.0)
    assert vlm.family.num_frames.max_frames == 32
    tokens = vlm.family.layout.selectable_tokens((320, 240), "video")
    assert len(tokens) == 16
    assert vlm.fed_tokens((320, 240), None, modality="video") == 16 * tokens[0]


def test_each_clip_of_a_call_keeps_its_own_seconds_per_group(qwen25):
    """Bug caught: every clip of one processor call given the first clip's
    ``second_per_grid_ts`` (a 1 fps clip read at the other clip's 4 fps: wrong positions)."""
    grid = torch.tensor([[2, 4, 4], [1, 4, 6], [3, 2, 2]])
    counts = grid.prod(dim=-1)
    inputs = {
        "pixel_values_videos": torch.randn(int(counts.sum()), 8),
        "video_grid_thw": grid,
        "second_per_grid_ts": torch.tensor([0.5, 2.0, 1.0]),
    }
    items = qwen25.family.split_inputs(inputs)
    assert [modality for modality, _, _ in items] == ["video"] * 3
    assert [float(item["second_per_grid_ts"]) for _, item, _ in items] == [0.5, 2.0, 1.0]
    assert [item["pixel_values_videos"].shape[0] for _, item, _ in items] == counts.tolist()
    assert all(torch.equal(item["video_grid_thw"][0], grid[row]) for row, (_, item, _) in enumerate(items))
