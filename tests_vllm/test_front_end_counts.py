"""The placeholder counts the plug-in's front ends give vLLM (no engine here): LLaVA-OneVision's
per image (views x N plus one newline per fed row, the image's width and height as given) and
per clip (frames x N plus the clip's newline); InternVL's per image under the tiling a request
asks for. And the settings each family's start refuses, named."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

BUDGET = 16


def _config(checkpoint: str, settings=None, **changes):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(checkpoint)
    config.prunesid = settings if settings is not None else {"method": "prunesid", "budget": BUDGET}
    for name, value in changes.items():
        target = config.vision_config if name.startswith("vision_config.") else config
        setattr(target, name.removeprefix("vision_config."), value)
    return config


def _info(cls, config, **attributes):
    """The front end's info object without the engine's context: its config (and context) given."""
    info = object.__new__(cls)
    info.get_hf_config = lambda: config
    for name, value in attributes.items():
        setattr(info, name, value)
    return info


@pytest.fixture(scope="module")
def onevision_checkpoint() -> str:
    from prunesid.vllm.checkpoint import engine_checkpoint

    return str(engine_checkpoint("tiny-random-llava-onevision"))


@pytest.fixture(scope="module")
def internvl_checkpoint() -> str:
    from prunesid.vllm.checkpoint import engine_checkpoint

    return str(engine_checkpoint("tiny-random-internvl"))


# --- LLaVA-OneVision ------------------------------------------------------------------------------


def test_onevision_image_counts_read_width_then_height(onevision_checkpoint):
    from prunesid.families.llava_onevision.vllm_model import PressedOnevisionInfo

    info = _info(PressedOnevisionInfo, _config(onevision_checkpoint))
    # 300 x 500 (tall): base view + 1 x 2 tiles, 46 fed rows; 500 x 300 (wide): 2 x 1 tiles, 27 rows.
    assert info.get_num_image_tokens(image_width=300, image_height=500) == 3 * BUDGET + 46
    assert info.get_num_image_tokens(image_width=500, image_height=300) == 3 * BUDGET + 27


@pytest.mark.parametrize(("budget", "frames", "expected"), [(BUDGET, 4, 4 * BUDGET + 1), (BUDGET, 9, 9 * BUDGET + 1), (500, 3, 3 * 196 + 1)])
def test_onevision_clip_counts_are_n_per_frame_plus_one(onevision_checkpoint, budget, frames, expected):
    """Each frame pooled to 14 x 14 = 196 tokens, N of them fed (all when N exceeds it), then the clip's newline."""
    from prunesid.families.llava_onevision.vllm_model import PressedOnevisionInfo

    info = _info(PressedOnevisionInfo, _config(onevision_checkpoint, {"method": "prunesid", "budget": budget}))
    assert info.get_num_video_tokens(image_width=320, image_height=240, num_frames=frames) == expected


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"vision_feature_select_strategy": "default"}, "vision_feature_select_strategy 'full' only"),
        ({"vision_feature_layer": [-2, -1]}, "one vision feature layer is supported, this model has [-2, -1]"),
        ({"vision_config.model_type": "clip_vision_model"}, "supports LLaVA-OneVision with a SigLIP tower, this model's is 'clip_vision_model'"),
        ({"vision_aspect_ratio": "anyres"}, "prunesid: vision_aspect_ratio must be 'anyres_max_<n>'"),
    ],
)
def test_onevision_model_settings_the_layout_cannot_serve_are_refused(onevision_checkpoint, changes, message):
    from prunesid.families.llava_onevision.vllm_model import engine_press

    with pytest.raises(ValueError, match=re.escape(message)):
        engine_press(_config(onevision_checkpoint, **changes))


# --- InternVL ---------------------------------------------------------------------------------------


def test_internvl_image_counts_follow_the_request_s_tiling(internvl_checkpoint):
    from prunesid.families.internvl.vllm_model import PressedInternVLInfo, _library_processor

    processor = _library_processor(internvl_checkpoint)
    merged = []
    context = SimpleNamespace(get_merged_mm_kwargs=lambda kwargs: merged.append(dict(kwargs)) or dict(kwargs))
    info = _info(PressedInternVLInfo, _config(internvl_checkpoint), ctx=context)
    # 640 x 480: 4 x 3 tiles + thumbnail by default; at most 6 tiles: 3 x 2 + thumbnail; at most 1: one view.
    assert info.get_num_image_tokens(image_width=640, image_height=480, processor=processor, mm_kwargs={}) == 13 * BUDGET
    assert info.get_num_image_tokens(image_width=640, image_height=480, processor=processor, mm_kwargs={"max_patches": 6}) == 7 * BUDGET
    assert info.get_num_image_tokens(image_width=640, image_height=480, processor=processor, mm_kwargs={"max_patches": 1}) == BUDGET
    assert merged == [{}, {"max_patches": 6}, {"max_patches": 1}]  # the request's kwargs merged with the model's


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model_type": "llava"}, "supports InternVL (model_type 'internvl'), this model is 'llava'"),
        ({"vision_feature_layer": 0}, "one vision feature layer after the embeddings is supported, this model has 0"),
        ({"vision_config.image_size": [448, 224]}, "InternVL tiles are square, this model's are [448, 224]"),
    ],
)
def test_internvl_model_settings_the_layout_cannot_serve_are_refused(internvl_checkpoint, changes, message):
    from prunesid.families.internvl.vllm_model import engine_press

    with pytest.raises(ValueError, match=re.escape(message)):
        engine_press(_config(internvl_checkpoint, **changes))


def test_internvl_the_layer_before_the_first_is_the_embeddings_too(internvl_checkpoint):
    from prunesid.families.internvl.vllm_model import engine_press

    config = _config(internvl_checkpoint)
    layers = config.vision_config.num_hidden_layers
    with pytest.raises(ValueError, match=f"this model has {-(layers + 1)}"):
        engine_press(_config(internvl_checkpoint, vision_feature_layer=-(layers + 1)))
    assert engine_press(_config(internvl_checkpoint, vision_feature_layer=-layers)).fed_tokens((448, 448)) == BUDGET
