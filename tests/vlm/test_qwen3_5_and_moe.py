"""Qwen3.5, Qwen3.5-MoE and Qwen3-VL-MoE (the offline built-ins) in the Qwen-VL family.

They share Qwen3-VL's processor, tower geometry and ``get_rope_index``; what differs is the
language model (a hybrid of Gated DeltaNet linear-attention and full-attention layers in
Qwen3.5, mixture-of-experts layers in both MoE models) and the deepstack features (Qwen3-VL-MoE
has them, Qwen3.5 does not). So the Qwen-VL image and clip tests run here unchanged on these
three built-ins (imported, with this module's ``qwen`` fixture): keeping everything equals the
unmodified model fed by its processor (logits and greedy text), at N = 64 the LLM receives
N_eff per image / temporal group at the unpruned 3-D positions, deepstack rows follow the kept
tokens. This module adds what is particular to them: the geometry and layer types each
built-in carries, and the Hub-layout directory loading back to the same weights.
"""

from __future__ import annotations

import json

import pytest
import torch

from prunesid import PruneSID, load_vlm
from prunesid.family_kit import builtin_directory, builtin_models
from prunesid.family_kit.base import FAMILIES
from prunesid.families.qwen_vl.adapter import QwenVL
from tests.conftest import scene
from tests.vlm.test_qwen_video import (  # noqa: F401  (collected here, on this module's built-ins)
    make_clip,
    test_an_image_and_a_clip_in_one_prompt_equal_the_unmodified_model,
    test_budget_64_keeps_n_eff_per_group_at_the_unpruned_positions,
    test_group_grids_and_labels,
    test_keeping_every_token_of_a_clip_equals_the_unmodified_model,
    test_press_applied_takes_the_processor_s_clip,
)
from tests.vlm.test_vlm_qwen import (  # noqa: F401
    QUESTION,
    reference_inputs,
    test_a_merged_token_sits_at_its_image_s_last_position_without_deepstack,
    test_budget_64_feeds_exactly_n_eff_merged_tokens,
    test_keeping_every_token_equals_the_unmodified_model,
    test_kept_tokens_keep_their_unpruned_positions_and_decoding_their_rope_deltas,
    test_the_grid_is_the_merged_token_grid_over_the_whole_image,
    test_two_images_of_different_sizes_get_their_own_n_eff_in_one_call,
)

# built-in -> (model type, model class, deepstack layers of its tower, its LLM's layer types)
MODELS = {
    "tiny-random-qwen3.5": ("qwen3_5", "Qwen3_5ForConditionalGeneration", 0, ["linear_attention", "full_attention"]),
    "tiny-random-qwen3.5-moe": ("qwen3_5_moe", "Qwen3_5MoeForConditionalGeneration", 0, ["linear_attention", "full_attention"]),
    "tiny-random-qwen3-vl-moe": ("qwen3_vl_moe", "Qwen3VLMoeForConditionalGeneration", 2, None),
}


@pytest.fixture(scope="module", params=list(MODELS))
def qwen(request):
    return load_vlm(request.param)


def test_each_built_in_has_its_family_s_geometry_and_language_model(qwen):
    model_type, model_class, deepstack_layers, layer_types = MODELS[qwen.name]
    config = qwen.model.config
    assert (config.model_type, type(qwen.model).__name__) == (model_type, model_class)
    assert isinstance(qwen.family, QwenVL) and FAMILIES[model_type].model_class == model_class
    vision = config.vision_config
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (16, 2, 2)
    assert qwen.family.token_pixels == 32 and qwen.family.timestamps  # Qwen3-VL's processor: a run per group
    assert len(getattr(vision, "deepstack_visual_indexes", None) or []) == deepstack_layers
    text = config.text_config
    assert getattr(text, "layer_types", None) == layer_types  # Qwen3.5: one linear-, one full-attention layer
    if "moe" in model_type:
        assert (text.num_experts, text.num_experts_per_tok) == (4, 2)
    encoded = qwen.encode(scene(448, 336, seed=2))
    assert encoded.features.shape == (1, 14 * 10, text.hidden_size)  # 448 x 336 px: 14 x 10 merged tokens of 32 px
    assert len(encoded.deepstack or []) == deepstack_layers


def test_the_hub_layout_directory_loads_back_to_the_same_model(qwen):
    """What the built-in registry writes (nested configs, Qwen3-VL's processor files, sharded
    weights) is loaded by load_vlm as a download would be: the same weights and answers as
    the model built in memory."""
    directory = builtin_directory(qwen.name)
    layout = builtin_models()[qwen.name].layout
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == MODELS[qwen.name][0] and "text_config" in config
    assert json.loads((directory / "preprocessor_config.json").read_text())["processor_class"] == "Qwen3VLProcessor"
    assert json.loads((directory / "video_preprocessor_config.json").read_text())["video_processor_type"] == "Qwen3VLVideoProcessor"
    assert len(list(directory.glob("*.safetensors"))) == layout.shards > 1

    loaded = load_vlm(str(directory))
    built, _ = builtin_models()[qwen.name].build()
    weights = built.state_dict()
    assert set(loaded.model.state_dict()) == set(weights)
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, weights[name]), name
    image = scene(400, 300, seed=1)
    got = loaded.chat(image, QUESTION, press=PruneSID(budget=64), max_new_tokens=4)
    want = qwen.chat(image, QUESTION, press=PruneSID(budget=64), max_new_tokens=4)
    assert (got.visual_tokens, got.text) == (want.visual_tokens, want.text)


def test_a_clip_is_sized_before_encoding_as_it_is_fed(qwen):
    """fed_tokens (no pixels encoded) matches what a 16-frame clip feeds: 8 groups x N_eff."""
    clip = make_clip(16, size=(320, 240), seed=70)
    reply = qwen.chat(clip, "What happens?", press=PruneSID(budget=64), max_new_tokens=1)
    assert reply.selections[0].num_views == 8
    assert reply.visual_tokens == [qwen.fed_tokens(clip.size, PruneSID(budget=64), modality="video")]
    assert qwen.fed_tokens(clip.size, None, modality="video") == 8 * 10 * 8  # 320 x 240 -> 10 x 8 merged tokens of 32 px


def test_the_hybrid_language_model_in_the_quick_tier():
    """The tests above are in the slow tier (by built-in name); this one keeps Qwen3.5's
    hybrid LLM in the quick tier: keeping everything is the unmodified model, N = 64 feeds
    N_eff at the unpruned positions."""
    vlm = load_vlm("tiny-random-qwen3.5")
    test_keeping_every_token_equals_the_unmodified_model(vlm, [(448, 336)])
    test_kept_tokens_keep_their_unpruned_positions_and_decoding_their_rope_deltas(vlm)
