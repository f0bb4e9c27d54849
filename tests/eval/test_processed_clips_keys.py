"""A clip the evaluation takes from the processor's output is keyed by its pixels, whatever
their dtype: bfloat16 pixels (a bfloat16 model's inputs) are encoded, and two different clips
of the same shape get two keys and two encodings."""

from __future__ import annotations

import pytest
import torch

from prunesid import load_vlm
from prunesid.eval.pressing import processed_clips
from tests.conftest import scene


@pytest.fixture(scope="module")
def vlm():
    return load_vlm("tiny-random-internvl", dtype="bfloat16")


def _inputs(vlm, frames):
    content = [{"type": "video"}, {"type": "text", "text": "What happens?"}]
    text = vlm.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    inputs = dict(vlm.processor(text=[text], videos=[frames], return_tensors="pt"))
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)  # as lmms-eval moves them to the model's dtype
    return inputs


def test_bfloat16_clips_are_encoded_each_under_its_own_key(vlm):
    first = [scene(320, 240, seed=frame) for frame in range(2)]
    second = [scene(320, 240, seed=10 + frame) for frame in range(2)]
    [one] = processed_clips(vlm, _inputs(vlm, first), [first])
    [other] = processed_clips(vlm, _inputs(vlm, second), [second])
    assert one.modality == other.modality == "video" and one.num_views == other.num_views == 2
    assert one.key.startswith("processed:") and one.key != other.key
    assert not torch.equal(one.features, other.features)
    [again] = processed_clips(vlm, _inputs(vlm, first), [first])
    assert again.key == one.key and torch.equal(again.features, one.features)
