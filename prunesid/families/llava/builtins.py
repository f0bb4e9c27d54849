"""The offline LLaVA-1.5 built-in ``tiny-random``: tiny, randomly initialised, identical on
every machine, written in the layout of ``llava-hf/llava-1.5-7b-hf`` (LLaVA-NeXT's
``tiny-random-next`` shares its recipe).

They keep the real geometry (336 px images, 14 px patches, 24 x 24 patches + CLS, feature
layer -2, LLaVA-NeXT's anyres tiling) with tiny widths, so every code path of the real 7B
models runs here without a download. Their answers are noise; their selections are real.
"""

from __future__ import annotations

import string

import torch
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from prunesid.family_kit.hub import HubLayout
from prunesid.family_kit.tokenizers import byte_level_tokenizer
from prunesid.family_kit.builtin_registry import register_builtin

SEED = 1234
IMAGE_SIZE, PATCH_SIZE = 336, 14
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
GRID_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]

# The LLaVA-1.5 conversation format: "USER: <image>\n{text} ASSISTANT: {answer}</s>".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% elif message['role'] == 'assistant' %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}<image>\n{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}</s>{% else %} {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level tokens (any text round-trips) after the LLaMA special tokens; no files."""
    tokenizer = byte_level_tokenizer(SPECIAL_TOKENS, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>", model_max_length=4096)
    tokenizer.add_bos_token = True
    return tokenizer


def _configs(tokenizer: PreTrainedTokenizerFast) -> tuple[CLIPVisionConfig, LlamaConfig]:
    vision = CLIPVisionConfig(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        projection_dim=64,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return vision, text


def image_processor_kwargs() -> dict:
    return {
        "size": {"shortest_edge": IMAGE_SIZE},
        "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    }


def build_llava(model_class, config_class, processor_class, image_processor, **geometry):
    """The shared recipe: byte tokenizer, tiny configs, seeded weights, LLaVA-1.5 chat format."""
    tokenizer = build_tokenizer()
    vision, text = _configs(tokenizer)
    config = config_class(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        **geometry,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = model_class(config).eval()
    printable_only(model, tokenizer)
    processor = processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor


# What the llava-hf repositories hold: 3 (LLaVA-1.5) or 4 (LLaVA-NeXT) weight shards, CLIP
# weights under vision_tower.vision_model, image_token_index, processor_config.json.
LLAVA_LAYOUT = HubLayout(
    repo="llava-hf/llava-1.5-7b-hf", image_processor_type="CLIPImageProcessor", processor_class="LlavaProcessor",
    shards=3, clip_towers=("vision_tower.",), token_index_keys=True, processor_config=True,
)


@register_builtin("tiny-random", LLAVA_LAYOUT)
def build_tiny_llava() -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """LLaVA-1.5 geometry: one 336 x 336 center crop, 576 patches + CLS."""
    return build_llava(
        LlavaForConditionalGeneration, LlavaConfig, LlavaProcessor,
        CLIPImageProcessorPil(**image_processor_kwargs()),
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
    )


def printable_only(model, tokenizer) -> None:
    """Random weights pick any byte; most bytes alone are not valid UTF-8 and would show as
    replacement characters. Suppress all but printable ASCII (and end-of-sequence), so the
    meaningless answers at least look like text."""
    printable = set(string.ascii_letters + string.digits + string.punctuation + " ")
    model.generation_config.suppress_tokens = [
        token_id
        for token_id in range(len(tokenizer))
        if token_id != tokenizer.eos_token_id and tokenizer.decode([token_id]) not in printable
    ]
