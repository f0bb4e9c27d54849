"""A tower without CLS (SigLIP, as in llava-interleave): importance falls back to the PSCA
score, no CLS is passed through, and keeping everything still equals the unmodified model."""

from __future__ import annotations

import pytest
import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor, SiglipImageProcessorPil, SiglipVisionConfig

from prunesid import PruneSID
from prunesid.vlm import wrap

from prunesid.families.llava.builtins import CHAT_TEMPLATE, LlamaConfig, build_tokenizer
from tests.conftest import scene


@pytest.fixture(scope="module")
def siglip_vlm():
    tokenizer = build_tokenizer()
    vision = SiglipVisionConfig(image_size=224, patch_size=14, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2)
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1, vision_feature_select_strategy="full", image_seq_length=256,
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    processor = LlavaProcessor(
        image_processor=SiglipImageProcessorPil(size={"height": 224, "width": 224}),
        tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="full", chat_template=CHAT_TEMPLATE,
    )
    return wrap(model, processor, name="tiny-siglip")


def test_siglip_tower_uses_the_psca_score_and_no_cls(siglip_vlm):
    image = scene(400, 300)
    encoded = siglip_vlm.encode(image)
    assert encoded.cls is None and encoded.importance is None and encoded.features.shape[1] == 256
    assert encoded.grids[0].box == (0.0, 0.0, 400.0, 300.0)  # squashed, nothing cropped
    reply = siglip_vlm.chat(image, "What is this?", press=PruneSID(budget=32), max_new_tokens=2)
    assert reply.visual_tokens == [32] and reply.selections[0].reserved == 0


def test_siglip_keep_all_equals_unmodified(siglip_vlm):
    image = scene(400, 300)
    text = siglip_vlm.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}], add_generation_prompt=True
    )
    inputs = siglip_vlm.processor(images=image, text=text, return_tensors="pt")
    expected = siglip_vlm.model.generate(**inputs, max_new_tokens=8, do_sample=False)
    expected_text = siglip_vlm.processor.tokenizer.decode(expected[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    press = PruneSID(budget=4096, keep_cls=False, order="spatial")
    assert siglip_vlm.chat(image, "What is this?", press=press, max_new_tokens=8).text == expected_text
