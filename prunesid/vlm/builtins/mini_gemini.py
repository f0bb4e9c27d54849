"""Offline built-ins ``tiny-random-mgm`` and ``tiny-random-mgm-hd``: Mini-Gemini's real
geometry with tiny widths, written in the original MGM checkpoint format.

``tiny-random-mgm`` mirrors YanweiLi/MGM-7B (``model_type`` ``mini_gemini``, the first
releases' name): 336 px low-res views (24 x 24 tokens, CLIP feature layer -2), aux size 768
(a 192 x 192 map, an 8 x 8 window per token). ``tiny-random-mgm-hd`` mirrors MGM-7B-HD under
the renamed ``mgm`` type: aux 1536, ``image_grid`` 2, ``image_global``: 5 views of 576.
Both: a 4-layer CLIP tower, a 4-stage ConvNeXt trunk (8/16/24/32 channels, 80 in all), a
2-layer Llama and the byte-level tokenizer of the other built-ins. The towers are described
by ``mm_vision_config`` / ``mm_vision_aux_config`` in config.json, as the released
checkpoints' names (``openai/clip-vit-large-patch14-336``, ``convnext-large-d-320``) are not.
"""

from __future__ import annotations

import torch

from prunesid.vlm.builtins.hub import HubLayout
from prunesid.vlm.builtins.llava import SEED, _configs, build_tokenizer, printable_only
from prunesid.vlm.builtins.registry import register_builtin

AUX_TOWER = {"hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1]}

# The original repositories: sharded safetensors + index, the tokenizer files; the image
# processor and chat template are written too, as the other built-ins'.
MGM_LAYOUT = HubLayout(repo="YanweiLi/MGM-7B", image_processor_type="CLIPImageProcessor", processor_class="CLIPProcessor", shards=2)
MGM_HD_LAYOUT = HubLayout(repo="YanweiLi/MGM-7B-HD", image_processor_type="CLIPImageProcessor", processor_class="CLIPProcessor", shards=2)


def _build(model_type: str, image_size_aux: int, image_grid: int, image_global: bool):
    from transformers import CLIPImageProcessorPil

    from prunesid.vlm.mini_gemini import CHAT_TEMPLATES, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, MiniGeminiProcessor
    from prunesid.vlm.mini_gemini_checkpoint import MiniGeminiConfig, build_model

    tokenizer = build_tokenizer()
    vision, text = _configs(tokenizer)
    raw = text.to_dict()
    raw.update(
        model_type=model_type, architectures=["MiniGeminiLlamaForCausalLM" if model_type == "mini_gemini" else "MGMLlamaForCausalLM"],
        mm_vision_tower="tiny-clip-336", mm_vision_tower_aux="tiny-convnext-d-320",
        mm_vision_config={key: getattr(vision, key) for key in (
            "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size",
            "hidden_act", "layer_norm_eps", "projection_dim")},
        mm_vision_aux_config=AUX_TOWER, mm_hidden_size=vision.hidden_size, mm_hidden_size_aux=sum(AUX_TOWER["hidden_sizes"]),
        mm_projector_type="mlp2x_gelu", mm_vision_select_layer=-2, mm_vision_select_feature="patch",
        image_size_aux=image_size_aux, image_grid=image_grid, image_global=image_global, image_aspect_ratio="pad",
    )
    config = MiniGeminiConfig(raw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = build_model(config).eval()
        # LayerNorm / layer-scale defaults would make mining a no-op-like average; random
        # values make every weight matter (a wrong name map changes the output).
        for name, parameter in model.named_parameters():
            if not name.startswith("language_model") and parameter.dim() == 1:
                parameter.data.normal_(0.0, 0.5).add_(1.0 if name.endswith("weight") else 0.0)
    config.image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    printable_only(model.language_model, tokenizer)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size_aux}, crop_size={"height": image_size_aux, "width": image_size_aux},
        image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD,
    )
    return model, MiniGeminiProcessor(tokenizer, image_processor, CHAT_TEMPLATES["llama"])


@register_builtin("tiny-random-mgm", MGM_LAYOUT)
def build_tiny_mgm():
    """MGM geometry: one 336 px view of 576 tokens mining a 768 px ConvNeXt map."""
    return _build("mini_gemini", 768, 1, False)


@register_builtin("tiny-random-mgm-hd", MGM_HD_LAYOUT)
def build_tiny_mgm_hd():
    """MGM-HD geometry: global + 2 x 2 crops of 336 px (5 x 576 tokens) mining a 1536 px map."""
    return _build("mgm", 1536, 2, True)
