"""Offline InternVL built-in ``tiny-random-internvl``: tiny, randomly initialised, identical on
every machine, written in the layout of ``OpenGVLab/InternVL3-1B-hf``.

It keeps InternVL3's real geometry: 448 px tiles of 14 px patches (32 x 32 patches + CLS),
feature layer -1 without the CLS, the 2 x 2 pixel shuffle to 16 x 16 = 256 tokens per tile,
the GotOcr2 tiling (1 to 12 tiles by the closest aspect ratio, plus a thumbnail), a Qwen2
LLM and the InternVL chat format and special tokens (``<img>``, ``</img>``, ``<IMG_CONTEXT>``,
``<video>``); only the widths shrink (tower 32, LLM 64, 2 layers each). Its answers are
noise; its tiles, importance and selections are real.
"""

from __future__ import annotations

import torch
from transformers import (
    GotOcr2ImageProcessorPil,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    PreTrainedTokenizerFast,
)

from prunesid.family_kit.hub import HubLayout
from prunesid.family_kit.tokenizers import byte_level_tokenizer
from prunesid.families.llava.builtins import printable_only
from prunesid.family_kit.builtin_registry import register_builtin
from prunesid.family_kit.processors import without_video_processor

SEED = 1234
TILE, PATCH = 448, 14
# Qwen2's special tokens, then those InternVL3's tokenizer adds.
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>", "<video>",
]
# The names the InternVL processor reads its tokens by.
IMAGE_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
# ImageNet mean and std, as InternVL3's preprocessor_config.json.
IMAGE_MEAN, IMAGE_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

# InternVL3's ChatML format: an image is "<IMG_CONTEXT>\n" (the processor wraps and widens
# it), a video "<video>\n" (the processor writes one run per frame).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
    "{% elif part['type'] == 'video' %}{{ '<video>\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# What OpenGVLab/InternVL3-1B-hf holds: one model.safetensors (assumed from its size), nested
# configs, the fast GotOcr2 image processor's name, Qwen2 tokenizer files; since the InternVL3-hf
# repositories' "Update processor" revision, processor_config.json with image_seq_length only and
# the template as chat_template.jinja. Whether it holds a video_preprocessor_config.json is not
# settled (an earlier tree page showed one; OpenGVLab/InternVL issue #1222 says it has none): the
# built-in writes one with the image processor's settings, and a copy without it loads the same,
# its video settings then read from preprocessor_config.json as transformers does.
INTERNVL3_LAYOUT = HubLayout(
    repo="OpenGVLab/InternVL3-1B-hf", image_processor_type="GotOcr2ImageProcessorFast", processor_class="InternVLProcessor",
    processor_config=("image_seq_length",), chat_template_file="chat_template.jinja",
    video_processor_type="InternVLVideoProcessor", tokenizer_files=("vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json"),
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level tokens (any text round-trips) after the special tokens; no files."""
    return byte_level_tokenizer(
        SPECIAL_TOKENS, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=8192, extra_special_tokens=dict(IMAGE_TOKENS),
    )


@register_builtin("tiny-random-internvl", INTERNVL3_LAYOUT)
def build_tiny_internvl():
    """InternVL3 geometry: 448 px tiles, 1,024 patches + CLS, 256 tokens per tile after the shuffle."""
    tokenizer = build_tokenizer()
    config = InternVLConfig(
        vision_config={
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "image_size": TILE, "patch_size": PATCH, "attention_bias": True, "norm_type": "layer_norm",
        },
        text_config={
            "model_type": "qwen2", "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 8192,
            "bos_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=(TILE // PATCH // 2) ** 2,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = InternVLForConditionalGeneration(config).eval()
        # transformers zero-initialises the CLS and position embeddings; give them values so
        # the CLS attends unevenly, as a trained tower's does.
        embeddings = model.model.vision_tower.embeddings
        embeddings.cls_token.data.normal_(std=1.0)
        embeddings.position_embeddings.data.normal_(std=0.5)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    printable_only(model, tokenizer)
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": TILE, "width": TILE}, image_mean=IMAGE_MEAN, image_std=IMAGE_STD,
        crop_to_patches=False, min_patches=1, max_patches=12,  # the processor turns tiling on
    )
    processor = without_video_processor(InternVLProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=config.image_seq_length, chat_template=CHAT_TEMPLATE,
    )
    return model, processor
