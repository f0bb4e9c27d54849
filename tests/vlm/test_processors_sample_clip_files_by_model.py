"""The processors the library loads without torchvision sample a clip file by their model's own
rule: InternVL takes frame centres, Video-LLaVA frames from the first one (the pixels the
processor returns are the image processor's on exactly those frames)."""

from __future__ import annotations

import pytest
import torch

from prunesid.family_kit import builtin_directory
from prunesid.family_kit.processors import FramewiseVideoProcessor, load_processor
from tests.conftest import scene_clip

COUNT = 4  # of the clip's 12 frames: centred 1, 4, 7, 10; from the first 0, 3, 6, 9


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return scene_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 12, 6, (224, 168))


@pytest.mark.parametrize(("builtin", "model_type", "rule"), [("tiny-random-internvl", "internvl", "centred"), ("tiny-random-video-llava", "video_llava", "uniform")])
def test_a_clip_file_is_sampled_by_the_model_s_rule(clip, builtin, model_type, rule):
    processor = load_processor(str(builtin_directory(builtin)), model_type)
    got = processor.video_processor(videos=[clip], do_sample_frames=True, num_frames=COUNT)["pixel_values_videos"]
    frames = FramewiseVideoProcessor(None, rule).decoded(clip, COUNT)
    expected = processor.image_processor(images=list(frames), return_tensors="pt")
    expected = expected.get("pixel_values", expected.get("pixel_values_images"))
    assert got.shape[:2] == (1, COUNT)
    torch.testing.assert_close(got[0], expected, rtol=0, atol=0)
    other = FramewiseVideoProcessor(None, "uniform" if rule == "centred" else "centred").decoded(clip, COUNT)
    assert not torch.equal(torch.as_tensor(frames), torch.as_tensor(other))  # the two rules differ on this clip


def test_one_clip_file_given_alone_is_one_clip(clip):
    processor = FramewiseVideoProcessor(load_processor(str(builtin_directory("tiny-random-internvl")), "internvl").image_processor, "centred")
    alone = processor(videos=clip, do_sample_frames=True, num_frames=COUNT)["pixel_values_videos"]
    torch.testing.assert_close(alone, processor(videos=[clip], do_sample_frames=True, num_frames=COUNT)["pixel_values_videos"], rtol=0, atol=0)
