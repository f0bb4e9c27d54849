"""The library's torchvision-free Qwen video processor (what vLLM's CPU build runs for the
Qwen-VL classes) reads a clip in the shapes vLLM hands it and honours the rescale / normalise
switches transformers' video processors take."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import pattern
from prunesid import load_vlm

FRAMES = np.stack([np.asarray(pattern((224, 168), seed)) for seed in range(4)])  # [T, H, W, 3]
META = {"total_num_frames": 4, "fps": 2.0, "frames_indices": [0, 1, 2, 3]}


@pytest.fixture(scope="module")
def video_processor():
    return load_vlm("tiny-random-qwen3-vl").processor.video_processor


def test_a_clip_as_vllm_s_qwen3_batch_is_the_same_clip(video_processor):
    """vLLM's Qwen3-VL front end sends one clip as [[array]] with [[metadata]]. Catches the
    nested batch read as one clip whose single frame is the whole array ("axes don't match
    array"), and metadata left nested."""
    flat = video_processor(videos=[FRAMES], return_tensors="pt")
    nested = video_processor(videos=[[FRAMES]], video_metadata=[[META]], return_metadata=True, return_tensors="pt")
    assert nested["video_grid_thw"].tolist() == flat["video_grid_thw"].tolist() == [[2, 10, 14]]
    assert torch.equal(nested["pixel_values_videos"], flat["pixel_values_videos"])
    assert [meta.frames_indices for meta in nested["video_metadata"]] == [[0, 1, 2, 3]]


def test_rescale_and_normalise_can_be_turned_off(video_processor):
    """Catches do_rescale / do_normalize ignored (pixels normalised when the caller
    normalises them itself, as vLLM's on-device normalisation does)."""
    on = video_processor(videos=[FRAMES])["pixel_values_videos"]
    raw = video_processor(videos=[FRAMES], do_rescale=False, do_normalize=False)["pixel_values_videos"]
    rescaled = video_processor(videos=[FRAMES], do_normalize=False)["pixel_values_videos"]
    assert raw.shape == on.shape and float(raw.max()) > 200 and float(raw.min()) >= 0
    torch.testing.assert_close(rescaled, raw / 255, rtol=0, atol=1e-6)
    mean, std = torch.tensor(video_processor.image_mean), torch.tensor(video_processor.image_std)
    channels = on.reshape(on.shape[0], 3, -1)  # the channel leads each patch row
    expected = (rescaled.reshape(on.shape[0], 3, -1) - mean[:, None]) / std[:, None]
    torch.testing.assert_close(channels, expected, rtol=0, atol=1e-5)


def test_a_clip_of_wrong_rank_is_refused_by_name(video_processor):
    with pytest.raises(ValueError, match="dimensions"):
        video_processor(videos=[FRAMES[0, 0]])
