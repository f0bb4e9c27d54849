"""LLaVA-NeXT in the engine: views x N image tokens per image (base view and each anyres
tile, no newline token), and per view the tokens the library keeps on the same checkpoint."""

from __future__ import annotations

import gc
import json
import os

import pytest

from conftest import ENGINE_ARGS, pattern
from prunesid.methods.registry import build_press
from prunesid.vllm import engine_overrides
from prunesid.families.llava.vllm_model import RECORD_ENV

BUDGET = 16
IMAGES = [pattern((640, 480), 1), pattern((300, 500), 2)]
PROMPT = "USER: <image>\n<image>\nCompare them. ASSISTANT:"


@pytest.fixture(scope="module")
def next_checkpoint() -> str:
    from prunesid.vllm.checkpoint import engine_checkpoint

    return str(engine_checkpoint("tiny-random-next"))


@pytest.fixture(scope="module")
def library(next_checkpoint):
    from prunesid import load_vlm

    vlm = load_vlm(next_checkpoint, dtype="float32")
    return vlm, [vlm.encode(image) for image in IMAGES]


@pytest.mark.parametrize("method", ["prunesid", "divprune"])
def test_next_feeds_views_times_n_and_keeps_what_the_library_keeps(next_checkpoint, library, method, tmp_path):
    from vllm import LLM, SamplingParams

    vlm, encoded = library
    press = build_press(method, {"budget": BUDGET})
    views = [item.num_views for item in encoded]
    assert views == [5, 3]  # 640 x 480: base + 2 x 2 tiles; 300 x 500: base + 1 x 2 tiles
    llm = LLM(model=next_checkpoint, hf_overrides=engine_overrides("llava_next", method, BUDGET), **ENGINE_ARGS)
    try:
        tokenizer = llm.get_tokenizer()
        record = tmp_path / "kept.jsonl"
        os.environ[RECORD_ENV] = str(record)
        [output] = llm.generate({"prompt": PROMPT, "multi_modal_data": {"image": IMAGES}}, SamplingParams(max_tokens=2, temperature=0.0))
    finally:
        os.environ.pop(RECORD_ENV, None)
        del llm
        gc.collect()
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    ids = output.prompt_token_ids
    assert sum(token == image_token for token in ids) == sum(views) * BUDGET
    assert len(ids) == len(tokenizer.encode(PROMPT)) - 2 + sum(views) * BUDGET
    assert sum(vlm.fed_tokens(image.size, press) for image in IMAGES) == sum(views) * BUDGET
    kept = [json.loads(line)["indices"] for line in record.read_text().splitlines()]
    expected = [[index.tolist() for index in result.indices] for result in (vlm.compress([item], press)[0] for item in encoded)]
    assert sorted(kept) == sorted(expected)
