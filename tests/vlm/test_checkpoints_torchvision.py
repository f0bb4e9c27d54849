"""Where torchvision is installed, a checkpoint's own processors are used (``AutoProcessor``,
with its video processor) and give the same inputs as the processor built without
torchvision: the same prompt ids, the same image grids, the same pixels within the two
resize backends' rounding, and for Video-LLaVA the same frames.

Skipped in this project's environment, which does not install torchvision (its only wheels
here are CUDA builds); it runs wherever torchvision is importable.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prunesid import load_vlm
from prunesid.vlm import wrap
from prunesid.family_kit import builtin_directory
from prunesid.family_kit.processors import _images_only_processor, _processor_class, torchvision_available
from prunesid.video import load_video
from tests.conftest import scene

pytestmark = pytest.mark.skipif(
    not torchvision_available(),
    reason="torchvision is not installed here (the project does not depend on it; transformers' video processors need it): "
    "nothing to compare the processors built without it against",
)

CLIP = Path(__file__).resolve().parents[2] / "assets" / "clip.mp4"
# Directories in the layouts of Qwen/Qwen2-VL-7B-Instruct, Qwen/Qwen2.5-VL-7B-Instruct,
# Qwen/Qwen3-VL-8B-Instruct and LanguageBind/Video-LLaVA-7B-hf.
MODELS = ["tiny-random-qwen2-vl", "tiny-random-qwen2.5-vl", "tiny-random-qwen3-vl", "tiny-random-video-llava"]
# PIL and torchvision resize with the same filter but round differently: a few levels of 255
# after normalisation (std ~0.27) at most.
PIXEL_TOLERANCE = 0.08


def _pair(name):
    """The built-in as load_vlm gives it here (its own processors) and the same model with
    the processor built as it is without torchvision."""
    own = load_vlm(name, device="cpu")
    directory = str(builtin_directory(name))
    model_type = own.model.config.model_type
    without = _images_only_processor(_processor_class(directory, model_type), directory)
    return own, wrap(own.model, without, name=name)


@pytest.mark.parametrize("name", MODELS)
def test_own_processors_give_the_same_inputs(name):
    own, without = _pair(name)
    assert getattr(own.processor, "video_processor", None) is not None  # the model's own, complete
    assert "video_processor" not in without.processor.get_attributes()  # at most FramewiseVideoProcessor (Video-LLaVA)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    assert own.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == without.processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )
    image = scene(640, 480, seed=2)
    got, want = own.family.preprocess(image), without.family.preprocess(image)
    assert got.keys() == want.keys()
    for key in got:
        if got[key].is_floating_point():
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=PIXEL_TOLERANCE)
        else:
            assert torch.equal(got[key], want[key]), key  # grids, image sizes


def test_video_llava_frames_are_the_same_through_its_video_processor():
    own, without = _pair("tiny-random-video-llava")
    frames = list(load_video(CLIP).frames)
    got, want = own.family.preprocess_video(frames), without.family.preprocess_video(frames)
    assert got["pixel_values_videos"].shape == want["pixel_values_videos"].shape == (1, 8, 3, 224, 224)
    torch.testing.assert_close(got["pixel_values_videos"], want["pixel_values_videos"], rtol=0, atol=PIXEL_TOLERANCE)
