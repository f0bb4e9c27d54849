"""Offline built-in ``tiny-random-llava-onevision``: LLaVA-OneVision's real geometry with tiny
widths, written in the layout of ``llava-hf/llava-onevision-qwen2-0.5b-ov-hf``.

A SigLIP tower at 384 px with 14 px patches (27 x 27 = 729 tokens per view, no CLS, feature
layer -1, strategy "full"), the anyres_max_9 pinpoints (1 x 1 to 6 x 6 tiles of 384 px), the
2-layer projector into the LLM's width, ``image_newline``, frames pooled to 14 x 14; a
2-layer SigLIP of width 32 and a 2-layer Qwen2 of width 64; the byte-level Qwen tokenizer of
the other built-ins plus ``<image>`` and ``<video>``, in the checkpoint's chat format. Random,
seeded weights: the answers are noise, the selections and the plumbing are real.
"""

from __future__ import annotations

import torch
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessorPil,
    LlavaOnevisionProcessor,
    Qwen2Config,
    SiglipVisionConfig,
)

from prunesid.family_kit.hub import HubLayout
from prunesid.families.llava.builtins import printable_only
from prunesid.families.qwen_vl.builtins import build_qwen_tokenizer
from prunesid.family_kit.builtin_registry import register_builtin
from prunesid.family_kit.processors import without_video_processor

SEED = 1234
IMAGE_SIZE, PATCH_SIZE = 384, 14
TOKENS_PER_VIEW = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 729
SIGLIP_MEAN = SIGLIP_STD = [0.5, 0.5, 0.5]

# The llava-hf OneVision format (ChatML): the images of a turn first, then its videos, then its text.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}<image>\n{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'video' %}<video>\n{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# What llava-hf/llava-onevision-qwen2-0.5b-ov-hf (and -7b-ov-hf) holds: one model.safetensors,
# nested configs with image_token_index / video_token_index, preprocessor and processor configs
# (num_image_tokens, vision_feature_select_strategy, vision_aspect_ratio), the video processor's
# settings in a video_processor/ sub-folder (preprocessor_config.json naming
# LlavaOnevisionVideoProcessor; no root video_preprocessor_config.json), the SigLIP weights under
# vision_tower.vision_model, the Qwen tokenizer files.
ONEVISION_LAYOUT = HubLayout(
    repo="llava-hf/llava-onevision-qwen2-0.5b-ov-hf", image_processor_type="LlavaOnevisionImageProcessor",
    processor_class="LlavaOnevisionProcessor", clip_towers=("vision_tower.",), processor_config=True,
    video_processor_type="LlavaOnevisionVideoProcessor", video_processor_file="video_processor/preprocessor_config.json",
    tokenizer_files=("vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json"),
)


@register_builtin("tiny-random-llava-onevision", ONEVISION_LAYOUT)
def build_tiny_llava_onevision():
    """LLaVA-OneVision geometry: 729 tokens per 384 px view, anyres_max_9 tiles, 196 per frame."""
    tokenizer = build_qwen_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>", "<video>"]})
    vision = SiglipVisionConfig(
        image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=2, vision_use_head=False,
    )
    text = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
        bos_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlavaOnevisionForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    printable_only(model, tokenizer)
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=SIGLIP_MEAN, image_std=SIGLIP_STD,
        image_grid_pinpoints=config.image_grid_pinpoints,
    )
    processor = without_video_processor(LlavaOnevisionProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, num_image_tokens=TOKENS_PER_VIEW,
        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9", chat_template=CHAT_TEMPLATE,
    )
    return model, processor
