"""Offline Qwen-VL built-ins: tiny, randomly initialised, identical on every machine, written
in the layouts of ``Qwen/Qwen2-VL-7B-Instruct``, ``Qwen/Qwen2.5-VL-7B-Instruct``,
``Qwen/Qwen3-VL-8B-Instruct``, ``Qwen/Qwen3-VL-30B-A3B-Instruct``, ``Qwen/Qwen3.5-27B`` and
``Qwen/Qwen3.5-35B-A3B``.

Each keeps its family's real geometry and only shrinks the widths: the processor's dynamic
resolution (smart resize to multiples of patch x merge pixels, between min_pixels and
max_pixels), temporal patch 2, spatial merge 2, the patch merger into the LLM's width, M-RoPE
in the LLM. Qwen2-VL and Qwen2.5-VL use 14 px patches (28 px merged tokens); Qwen2.5-VL adds
window attention (112 px windows) with full-attention blocks; Qwen3-VL uses 16 px patches
(32 px merged tokens), a learned position grid, interleaved M-RoPE and deepstack features
added to the first LLM layers. Qwen3-VL-MoE is Qwen3-VL with mixture-of-experts LLM layers;
Qwen3.5 (and Qwen3.5-MoE) keeps Qwen3-VL's tower without deepstack and feeds a hybrid LLM:
gated linear-attention (Gated DeltaNet) layers and full-attention layers with partial,
interleaved M-RoPE. The tokenizer is byte-level with the Qwen special tokens and
the family's chat format; nothing is downloaded. Their answers are noise; their selections
and positions are real.
"""

from __future__ import annotations

import torch
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen2VLProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMoeConfig,
    Qwen3VLMoeForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3_5Config,
    Qwen3_5ForConditionalGeneration,
    Qwen3_5MoeConfig,
    Qwen3_5MoeForConditionalGeneration,
)

from prunesid.family_kit.hub import HubLayout
from prunesid.family_kit.tokenizers import byte_level_tokenizer
from prunesid.families.llava.builtins import printable_only
from prunesid.family_kit.builtin_registry import register_builtin
from prunesid.family_kit.processors import without_video_processor

SEED = 1234
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
# Pixel limits (min_pixels, max_pixels): the Qwen2-VL image processor's defaults, and those
# of the released Qwen3-VL checkpoints' preprocessor configs.
QWEN2_PIXELS = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280}
QWEN3_PIXELS = {"shortest_edge": 256 * 256, "longest_edge": 4096 * 4096}


def qwen_chat_template(default_system: str | None) -> str:
    """The ChatML format of the Qwen-VL instruct models: one <|vision_start|><|image_pad|>
    <|vision_end|> per image (or <|video_pad|> per video) inside the user's turn."""
    system = (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n" + default_system + "<|im_end|>\n{% endif %}"
        if default_system else ""
    )
    return (
        system
        + "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for part in message['content'] %}"
        "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
        "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
        "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
        "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


def build_qwen_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level tokens (any text round-trips) after the Qwen special tokens; no files."""
    return byte_level_tokenizer(QWEN_SPECIAL_TOKENS, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=32768)


def _token_ids(tokenizer) -> dict:
    ids = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
    }


def _text_config(tokenizer, mrope_section: list[int], **extra) -> dict:
    """A 2-layer LLM of width 64 (4 heads of 16, 2 KV heads) with the family's M-RoPE split."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope_section, **extra.pop("rope", {})},
        "bos_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        **extra,
    }


# What the Qwen repositories hold: Qwen2-VL and Qwen2.5-VL a flat config.json (the LLM's keys
# at top level, rope_scaling "mrope") and min_pixels / max_pixels in preprocessor_config.json;
# Qwen3-VL nested configs, a size dict, "Qwen2VLImageProcessorFast" and a video preprocessor
# config. Tokenizers: tokenizer.json, vocab.json and merges.txt.
QWEN_TOKENIZER_FILES = ("vocab.json", "merges.txt")
QWEN2_VL_LAYOUT = HubLayout(
    repo="Qwen/Qwen2-VL-7B-Instruct", image_processor_type="Qwen2VLImageProcessor", processor_class="Qwen2VLProcessor",
    shards=5, flat_text_config=True, pixel_limits_top_level=True, tokenizer_files=QWEN_TOKENIZER_FILES,
)
QWEN2_5_VL_LAYOUT = HubLayout(
    repo="Qwen/Qwen2.5-VL-7B-Instruct", image_processor_type="Qwen2VLImageProcessor", processor_class="Qwen2_5_VLProcessor",
    shards=5, flat_text_config=True, pixel_limits_top_level=True, tokenizer_files=QWEN_TOKENIZER_FILES,
)
QWEN3_VL_LAYOUT = HubLayout(
    repo="Qwen/Qwen3-VL-8B-Instruct", image_processor_type="Qwen2VLImageProcessorFast", processor_class="Qwen3VLProcessor",
    shards=4, video_processor_type="Qwen3VLVideoProcessor", tokenizer_files=QWEN_TOKENIZER_FILES,
)
# Qwen3-VL-MoE and Qwen3.5 (dense and MoE) keep Qwen3-VL's files: nested configs and its
# processor, image and video processor classes.
# Qwen3-VL-MoE's release stores each layer's experts fused and transposed against transformers
# 5's modules (gate_up_proj [E, hidden, 2I], down_proj [E, I, hidden]; transformers transposes
# them on load); its index (QwenLM/Qwen3-VL issue #1588) names 13 model-000NN-of-00013 shards.
QWEN3_VL_MOE_LAYOUT = HubLayout(
    repo="Qwen/Qwen3-VL-30B-A3B-Instruct", image_processor_type="Qwen2VLImageProcessorFast", processor_class="Qwen3VLProcessor",
    shards=13, video_processor_type="Qwen3VLVideoProcessor", tokenizer_files=QWEN_TOKENIZER_FILES, experts="fused_transposed",
)


def mtp_weights(config: dict) -> dict[str, torch.Tensor]:
    """Qwen3.5's multi-token-prediction head as the releases carry it beside the model: ``mtp.fc``,
    its norms and one decoder layer (norms, attention, MLP). The dense MLP is
    ``mlp.{gate,up,down}_proj``; the MoE one (Qwen3.5-35B-A3B) a router ``mlp.gate``, every expert
    in tensors of its own (``mlp.experts.{e}.{gate,up,down}_proj``, unlike the main layers' fused
    experts), ``mlp.shared_expert.*`` and ``mlp.shared_expert_gate``. transformers 5 skips
    ``mtp.*`` on load, so a directory with them must load to the same model."""
    text = config["text_config"]
    width, heads, kv_heads, head_dim = text["hidden_size"], text["num_attention_heads"], text["num_key_value_heads"], text["head_dim"]
    shapes = {
        "mtp.fc.weight": (width, 2 * width), "mtp.pre_fc_norm_embedding.weight": (width,), "mtp.pre_fc_norm_hidden.weight": (width,),
        "mtp.norm.weight": (width,), "mtp.layers.0.input_layernorm.weight": (width,), "mtp.layers.0.post_attention_layernorm.weight": (width,),
        "mtp.layers.0.self_attn.q_proj.weight": (2 * heads * head_dim, width),  # query and output gate
        "mtp.layers.0.self_attn.k_proj.weight": (kv_heads * head_dim, width), "mtp.layers.0.self_attn.v_proj.weight": (kv_heads * head_dim, width),
        "mtp.layers.0.self_attn.o_proj.weight": (width, heads * head_dim),
        "mtp.layers.0.self_attn.q_norm.weight": (head_dim,), "mtp.layers.0.self_attn.k_norm.weight": (head_dim,),
    }
    if "num_experts" in text:
        inner, shared = text["moe_intermediate_size"], text["shared_expert_intermediate_size"]
        shapes["mtp.layers.0.mlp.gate.weight"] = (text["num_experts"], width)
        for expert in range(text["num_experts"]):
            shapes.update(_mlp_shapes(f"mtp.layers.0.mlp.experts.{expert}", width, inner))
        shapes.update(_mlp_shapes("mtp.layers.0.mlp.shared_expert", width, shared))
        shapes["mtp.layers.0.mlp.shared_expert_gate.weight"] = (1, width)
    else:
        shapes.update(_mlp_shapes("mtp.layers.0.mlp", width, text["intermediate_size"]))
    generator = torch.Generator().manual_seed(SEED)
    return {name: torch.randn(shape, generator=generator).to(torch.bfloat16) for name, shape in shapes.items()}


def _mlp_shapes(prefix: str, width: int, inner: int) -> dict[str, tuple[int, int]]:
    return {f"{prefix}.gate_proj.weight": (inner, width), f"{prefix}.up_proj.weight": (inner, width), f"{prefix}.down_proj.weight": (width, inner)}


# Qwen3.5 (released for transformers 5; Qwen/Qwen3.5-27B @ fc05daec, Qwen/Qwen3.5-35B-A3B @ 59d61f3c):
# the shards named model.safetensors-000NN-of-000MM.safetensors, the chat template as
# chat_template.jinja, the MTP head's weights; the MoE release keeps each main layer's experts fused
# in transformers' layout (gate_up_proj [E, 2I, hidden], down_proj [E, hidden, I]).
QWEN3_5_SHARD_NAME = "model.safetensors-{index:05d}-of-{count:05d}.safetensors"
QWEN3_5_LAYOUT = HubLayout(
    repo="Qwen/Qwen3.5-27B", image_processor_type="Qwen2VLImageProcessorFast", processor_class="Qwen3VLProcessor",
    shards=11, shard_name=QWEN3_5_SHARD_NAME, video_processor_type="Qwen3VLVideoProcessor", tokenizer_files=QWEN_TOKENIZER_FILES,
    chat_template_file="chat_template.jinja", extra_weights=mtp_weights,
)
QWEN3_5_MOE_LAYOUT = HubLayout(
    repo="Qwen/Qwen3.5-35B-A3B", image_processor_type="Qwen2VLImageProcessorFast", processor_class="Qwen3VLProcessor",
    shards=14, shard_name=QWEN3_5_SHARD_NAME, video_processor_type="Qwen3VLVideoProcessor", tokenizer_files=QWEN_TOKENIZER_FILES,
    chat_template_file="chat_template.jinja", extra_weights=mtp_weights, experts="fused",
)


def _build(model_class, config, processor_class, image_processor, tokenizer, chat_template):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = model_class(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    printable_only(model, tokenizer)
    processor = without_video_processor(processor_class)(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template)
    return model, processor


@register_builtin("tiny-random-qwen2-vl", QWEN2_VL_LAYOUT)
def build_tiny_qwen2_vl():
    """Qwen2-VL geometry: 14 px patches, 2 x 2 merge into the LLM width, full attention."""
    tokenizer = build_qwen_tokenizer()
    config = Qwen2VLConfig(
        vision_config={
            "depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
        },
        text_config=_text_config(tokenizer, [2, 3, 3]),
        **_token_ids(tokenizer),
    )
    image_processor = Qwen2VLImageProcessorPil(size=dict(QWEN2_PIXELS), patch_size=14, merge_size=2, temporal_patch_size=2)
    return _build(
        Qwen2VLForConditionalGeneration, config, Qwen2VLProcessor, image_processor, tokenizer,
        qwen_chat_template("You are a helpful assistant."),
    )


@register_builtin("tiny-random-qwen2.5-vl", QWEN2_5_VL_LAYOUT)
def build_tiny_qwen2_5_vl():
    """Qwen2.5-VL geometry: 14 px patches, 112 px attention windows, every second block full."""
    tokenizer = build_qwen_tokenizer()
    config = Qwen2_5_VLConfig(
        vision_config={
            "depth": 4, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
            "window_size": 112, "fullatt_block_indexes": [1, 3], "tokens_per_second": 2,
        },
        text_config=_text_config(tokenizer, [2, 3, 3]),
        **_token_ids(tokenizer),
    )
    image_processor = Qwen2VLImageProcessorPil(size=dict(QWEN2_PIXELS), patch_size=14, merge_size=2, temporal_patch_size=2)
    return _build(
        Qwen2_5_VLForConditionalGeneration, config, Qwen2_5_VLProcessor, image_processor, tokenizer,
        qwen_chat_template("You are a helpful assistant."),
    )


@register_builtin("tiny-random-qwen3-vl", QWEN3_VL_LAYOUT)
def build_tiny_qwen3_vl():
    """Qwen3-VL geometry: 16 px patches (32 px merged tokens), learned 48 x 48 position grid,
    deepstack features from two tower blocks added after the LLM's first two layers."""
    tokenizer = build_qwen_tokenizer()
    config = Qwen3VLConfig(
        vision_config={
            "depth": 4, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
            "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
            "num_position_embeddings": 2304, "deepstack_visual_indexes": [1, 2],
        },
        text_config=_text_config(tokenizer, [4, 2, 2], head_dim=16, rope={"mrope_interleaved": True}),
        **_token_ids(tokenizer),
    )
    image_processor = Qwen2VLImageProcessorPil(
        size=dict(QWEN3_PIXELS), patch_size=16, merge_size=2, temporal_patch_size=2,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    return _build(Qwen3VLForConditionalGeneration, config, Qwen3VLProcessor, image_processor, tokenizer, qwen_chat_template(None))


def _qwen3_image_processor() -> Qwen2VLImageProcessorPil:
    """Qwen3-VL's and Qwen3.5's processor settings: 16 px patches, 2 x 2 merge, mean and std 0.5."""
    return Qwen2VLImageProcessorPil(
        size=dict(QWEN3_PIXELS), patch_size=16, merge_size=2, temporal_patch_size=2,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )


def _qwen3_vision(deepstack: list[int] | None) -> dict:
    """Qwen3-VL's tower geometry (16 px patches, 48 x 48 learned positions), tiny widths."""
    vision = {
        "depth": 4, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
        "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 2304,
    }
    return vision if deepstack is None else {**vision, "deepstack_visual_indexes": deepstack}


@register_builtin("tiny-random-qwen3-vl-moe", QWEN3_VL_MOE_LAYOUT)
def build_tiny_qwen3_vl_moe():
    """Qwen3-VL-MoE: Qwen3-VL's tower with deepstack (two blocks), every LLM layer a sparse
    mixture of 4 tiny experts (48 wide), 2 routed per token."""
    tokenizer = build_qwen_tokenizer()
    text = _text_config(
        tokenizer, [4, 2, 2], head_dim=16, rope={"mrope_interleaved": True},
        # 48: the experts' two layouts differ in shape (2I = 96 vs hidden 64), so a transpose missed on load fails
        num_experts=4, num_experts_per_tok=2, moe_intermediate_size=48, decoder_sparse_step=1,
    )
    config = Qwen3VLMoeConfig(vision_config=_qwen3_vision([1, 2]), text_config=text, **_token_ids(tokenizer))
    return _build(
        Qwen3VLMoeForConditionalGeneration, config, Qwen3VLProcessor, _qwen3_image_processor(), tokenizer, qwen_chat_template(None),
    )


def _qwen3_5_text(tokenizer, **extra) -> dict:
    """A 2-layer hybrid LLM of width 64: a Gated DeltaNet (linear attention) layer, then a
    full-attention layer (Qwen3.5 has three of the first per one of the second); partial
    rotary (a quarter of each 32-wide head) with interleaved M-RoPE."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "layer_types": ["linear_attention", "full_attention"],
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "linear_conv_kernel_dim": 4,
        "linear_key_head_dim": 16,
        "linear_value_head_dim": 16,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 4,
        "max_position_embeddings": 32768,
        "rope_parameters": {
            "rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25,
            "mrope_section": [2, 1, 1], "mrope_interleaved": True,
        },
        "bos_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        **extra,
    }


@register_builtin("tiny-random-qwen3.5", QWEN3_5_LAYOUT)
def build_tiny_qwen3_5():
    """Qwen3.5: Qwen3-VL's tower without deepstack, a hybrid linear / full-attention LLM."""
    tokenizer = build_qwen_tokenizer()
    config = Qwen3_5Config(
        vision_config=_qwen3_vision(None), text_config=_qwen3_5_text(tokenizer, intermediate_size=128), **_token_ids(tokenizer),
    )
    return _build(Qwen3_5ForConditionalGeneration, config, Qwen3VLProcessor, _qwen3_image_processor(), tokenizer, qwen_chat_template(None))


@register_builtin("tiny-random-qwen3.5-moe", QWEN3_5_MOE_LAYOUT)
def build_tiny_qwen3_5_moe():
    """Qwen3.5-MoE: the hybrid LLM with a sparse mixture of 4 tiny experts (2 routed per
    token) plus a shared expert in every layer."""
    tokenizer = build_qwen_tokenizer()
    text = _qwen3_5_text(tokenizer, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32)
    config = Qwen3_5MoeConfig(vision_config=_qwen3_vision(None), text_config=text, **_token_ids(tokenizer))
    return _build(
        Qwen3_5MoeForConditionalGeneration, config, Qwen3VLProcessor, _qwen3_image_processor(), tokenizer, qwen_chat_template(None),
    )
