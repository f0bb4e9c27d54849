"""The torchvision-free Qwen video processor against independent references: the Qwen image
processor (which repeats one image over the temporal patch) and, where torchvision is
installed, transformers' own Qwen2-VL / Qwen3-VL video processors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prunesid import load_vlm
from prunesid.family_kit.processors import QwenVideoProcessor, torchvision_available
from tests.conftest import scene

MODELS = ["tiny-random-qwen2-vl", "tiny-random-qwen2.5-vl", "tiny-random-qwen3-vl"]


@pytest.fixture(scope="module", params=MODELS)
def processor(request):
    return load_vlm(request.param).processor


def image_patches(processor, image, size):
    """The image processor's patches of ``image`` resized to ``size`` (height, width): one
    temporal group holding that image twice."""
    out = processor.image_processor(images=image, size={"shortest_edge": size[0] * size[1], "longest_edge": size[0] * size[1]}, return_tensors="pt")
    return out["pixel_values"], out["image_grid_thw"][0]


def by_frame(patches, processor):
    """``[n, C, tp, p, p]``: the temporal slot of every patch apart."""
    video = processor.video_processor
    p, tp = video.patch_size, video.temporal_patch_size
    return patches.reshape(patches.shape[0], 3, tp, p, p)


def test_a_clip_of_one_repeated_frame_is_the_image_processor_s_image(processor):
    frame = scene(448, 336, seed=1)
    out = processor.video_processor(videos=[[frame, frame]], return_tensors="pt")
    grid = out["video_grid_thw"][0]
    size = (int(grid[1]) * processor.video_processor.patch_size, int(grid[2]) * processor.video_processor.patch_size)
    expected, image_grid = image_patches(processor, frame, size)
    assert grid.tolist() == image_grid.tolist()
    torch.testing.assert_close(out["pixel_values_videos"], expected, rtol=0, atol=1e-6)


def test_two_frames_fill_the_temporal_slots_in_order_and_an_odd_count_repeats_the_last(processor):
    frames = [scene(448, 336, seed=seed) for seed in (2, 3, 4)]
    out = processor.video_processor(videos=[frames], return_tensors="pt")
    groups, rows, cols = out["video_grid_thw"][0].tolist()
    assert groups == 2
    size = (rows * processor.video_processor.patch_size, cols * processor.video_processor.patch_size)
    per_group = rows * cols
    patches = by_frame(out["pixel_values_videos"], processor)
    for group, (first, second) in enumerate([(0, 1), (2, 2)]):  # frame 3 padded by itself
        rows_of_group = patches[group * per_group:(group + 1) * per_group]
        for slot, frame in enumerate((first, second)):
            expected = by_frame(image_patches(processor, frames[frame], size)[0], processor)[:, :, 0]
            torch.testing.assert_close(rows_of_group[:, :, slot], expected, rtol=0, atol=1e-6)


def test_the_processor_takes_lmms_eval_s_tensor_clips_and_expands_the_prompt(processor):
    frames = [scene(224, 168, seed=seed) for seed in range(4)]
    tensor = torch.from_numpy(np.stack([np.asarray(frame) for frame in frames])).permute(0, 3, 1, 2)  # [T, C, H, W]
    from_tensor = processor.video_processor(videos=[tensor], return_tensors="pt")
    from_frames = processor.video_processor(videos=[frames], return_tensors="pt")
    assert torch.equal(from_tensor["pixel_values_videos"], from_frames["pixel_values_videos"])
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What?"}]}], add_generation_prompt=True, tokenize=False)
    out = processor(text=text, videos=[frames], return_tensors="pt")
    groups, rows, cols = out["video_grid_thw"][0].tolist()
    assert int((out["input_ids"] == processor.video_token_id).sum()) == groups * rows * cols // 4


@pytest.mark.skipif(not torchvision_available(), reason="transformers' Qwen video processors need torchvision, which this project does not install")
@pytest.mark.parametrize("kind", ["qwen2", "qwen3"])
def test_the_same_as_transformers_video_processors(kind):
    from transformers import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    size = {"shortest_edge": 128 * 28 * 28, "longest_edge": 768 * 28 * 28}
    if kind == "qwen2":
        theirs = Qwen2VLVideoProcessor(size=size, do_sample_frames=False)
        image_processor = Qwen2VLImageProcessorPil(size=size, patch_size=14)
    else:
        size = {"shortest_edge": 128 * 32 * 32, "longest_edge": 16 * 768 * 32 * 32}
        theirs = Qwen3VLVideoProcessor(size=size, do_sample_frames=False)
        image_processor = Qwen2VLImageProcessorPil(size=size, patch_size=16, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    ours = QwenVideoProcessor(image_processor, "per-frame" if kind == "qwen2" else "whole-clip", {"size": size})
    frames = [np.asarray(scene(640, 480, seed=seed)) for seed in range(6)]
    expected = theirs(videos=[np.stack(frames)], return_tensors="pt", cap_pixels_per_frame=False)
    got = ours(videos=[frames], return_tensors="pt")
    assert got["video_grid_thw"].tolist() == expected["video_grid_thw"].tolist()
    # torchvision's and PIL's bicubic resizes differ by a few levels of 255.
    torch.testing.assert_close(got["pixel_values_videos"], expected["pixel_values_videos"], rtol=0, atol=0.15)
