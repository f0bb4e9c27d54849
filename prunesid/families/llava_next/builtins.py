"""The offline LLaVA-NeXT built-in ``tiny-random-next``, written in the layout of
``llava-hf/llava-v1.6-mistral-7b-hf``: LLaVA-1.5's tiny recipe with anyres tiling."""

from __future__ import annotations

from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil, LlavaNextProcessor

from prunesid.family_kit.builtin_registry import register_builtin
from prunesid.family_kit.hub import HubLayout
from prunesid.families.llava.builtins import GRID_PINPOINTS, build_llava, image_processor_kwargs

LLAVA_NEXT_LAYOUT = HubLayout(
    repo="llava-hf/llava-v1.6-mistral-7b-hf", image_processor_type="LlavaNextImageProcessor", processor_class="LlavaNextProcessor",
    shards=4, clip_towers=("vision_tower.",), token_index_keys=True, processor_config=True,
)


@register_builtin("tiny-random-next", LLAVA_NEXT_LAYOUT)
def build_tiny_llava_next() -> tuple[LlavaNextForConditionalGeneration, LlavaNextProcessor]:
    """LLaVA-NeXT geometry: a 336 x 336 base view plus up to 4 anyres tiles of 336 x 336."""
    return build_llava(
        LlavaNextForConditionalGeneration, LlavaNextConfig, LlavaNextProcessor,
        LlavaNextImageProcessorPil(image_grid_pinpoints=GRID_PINPOINTS, **image_processor_kwargs()),
        image_grid_pinpoints=GRID_PINPOINTS,
    )
