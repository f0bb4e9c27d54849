"""Offline built-in ``tiny-random-video-llava``: Video-LLaVA's real geometry with tiny widths.

224 px frames and images, 14 px patches (16 x 16 = 256 patches + CLS per frame), 8 frames
(``video_seq_length`` 2,056 = 8 x 257), feature layer -2, strategy "default" for images;
a CLIP video tower and a CLIP image tower, a 2-layer Llama, the byte-level tokenizer of the
other built-ins plus ``<video>``. Random, seeded weights: the answers are noise, the
selections and the plumbing are real. Written in the layout of ``LanguageBind/Video-LLaVA-7B-hf``.
"""

from __future__ import annotations

from transformers import VideoLlavaConfig, VideoLlavaForConditionalGeneration, VideoLlavaImageProcessor, VideoLlavaProcessor

from prunesid.family_kit.hub import HubLayout
from prunesid.families.llava.builtins import PATCH_SIZE, SEED, _configs, build_tokenizer, printable_only
from prunesid.family_kit.builtin_registry import register_builtin
from prunesid.family_kit.processors import without_video_processor

FRAME_SIZE, FRAMES = 224, 8
TOKENS_PER_FRAME = (FRAME_SIZE // PATCH_SIZE) ** 2 + 1  # 257: CLS + 16 x 16 patches

# What LanguageBind/Video-LLaVA-7B-hf holds: 3 weight shards, both CLIP towers under
# *.vision_model, image_token_index / video_token_index, one preprocessor_config.json for
# images and videos, no processor_config.json.
VIDEO_LLAVA_LAYOUT = HubLayout(
    repo="LanguageBind/Video-LLaVA-7B-hf", image_processor_type="VideoLlavaImageProcessor", processor_class="VideoLlavaProcessor",
    shards=3, clip_towers=("image_tower.", "video_tower."), token_index_keys=True,
)


@register_builtin("tiny-random-video-llava", VIDEO_LLAVA_LAYOUT)
def build_tiny_video_llava():
    """Video-LLaVA geometry: 8 frames of 224 x 224 (256 patches + CLS each) and 224 px images."""
    import torch

    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<video>"]})
    vision, text = _configs(tokenizer)
    vision.image_size = FRAME_SIZE
    text.vocab_size = len(tokenizer)
    config = VideoLlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=TOKENS_PER_FRAME - 1,
        video_seq_length=FRAMES * TOKENS_PER_FRAME,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = VideoLlavaForConditionalGeneration(config).eval()
    printable_only(model, tokenizer)
    image_processor = VideoLlavaImageProcessor(
        size={"shortest_edge": FRAME_SIZE}, crop_size={"height": FRAME_SIZE, "width": FRAME_SIZE}
    )
    processor = without_video_processor(VideoLlavaProcessor)(image_processor=image_processor, tokenizer=tokenizer)  # the release ships no template: the family supplies it
    return model, processor
