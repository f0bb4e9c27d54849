"""The plug-in inside vLLM's engine (LLM), one engine per fixed-budget press of the registry.

On the tiny LLaVA-1.5 checkpoint (engine_checkpoint): a batch of two requests of different
sizes, one with two images, gets exactly text + N image tokens per image; the tokens the
engine keeps are those the library keeps on the same checkpoint through transformers; bad
settings stop the engine at start with the setting's name.
"""

from __future__ import annotations

import gc
import json
import os

import pytest

from conftest import ENGINE_ARGS, pattern
from prunesid.methods.registry import build_press, presses
from prunesid.vllm import engine_overrides
from prunesid.families.llava.vllm_model import RECORD_ENV

BUDGET = 24
FIXED = [name for name, cls in presses().items() if cls().budget_is_fixed]
IMAGES = {"wide": pattern((640, 480), 1), "tall": pattern((300, 500), 2), "small": pattern((200, 200), 3)}
TWO = "USER: <image>\n<image>\nWhat differs between these two pictures? ASSISTANT:"
ONE = "USER: <image>\nWhat is this? ASSISTANT:"


@pytest.fixture(scope="module")
def library(checkpoint):
    """The library's transformers path on the same checkpoint."""
    from prunesid import load_vlm

    vlm = load_vlm(checkpoint, dtype="float32")
    return {name: vlm.encode(image) for name, image in IMAGES.items()}, vlm


def library_kept(library, method: str) -> list[list[int]]:
    encoded, vlm = library
    press = build_press(method, {"budget": BUDGET})
    return sorted(vlm.compress([item], press)[0].indices[0].tolist() for item in encoded.values())


@pytest.mark.parametrize("method", FIXED)
def test_engine_feeds_n_per_image_and_keeps_what_the_library_keeps(checkpoint, library, method, tmp_path):
    from vllm import LLM, SamplingParams

    llm = LLM(model=checkpoint, hf_overrides=engine_overrides("llava", method, BUDGET), **ENGINE_ARGS)
    try:
        tokenizer = llm.get_tokenizer()
        image_token = tokenizer.convert_tokens_to_ids("<image>")
        record = tmp_path / "kept.jsonl"
        os.environ[RECORD_ENV] = str(record)  # after start: the profiling run's images are not recorded
        requests = [
            {"prompt": TWO, "multi_modal_data": {"image": [IMAGES["wide"], IMAGES["tall"]]}},
            {"prompt": ONE, "multi_modal_data": {"image": IMAGES["small"]}},
        ]
        outputs = llm.generate(requests, SamplingParams(max_tokens=2, temperature=0.0))
    finally:
        os.environ.pop(RECORD_ENV, None)
        del llm
        gc.collect()
    for output, prompt, images in zip(outputs, (TWO, ONE), (2, 1)):
        text = len(tokenizer.encode(prompt)) - images  # the prompt's tokens less one placeholder per image
        ids = output.prompt_token_ids
        assert len(ids) == text + images * BUDGET
        assert sum(token == image_token for token in ids) == images * BUDGET
    records = [json.loads(line) for line in record.read_text().splitlines()]
    assert [item["fed"] for item in records] == [BUDGET] * 3
    assert sorted(item["indices"][0] for item in records) == library_kept(library, method)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"method": "nope", "budget": BUDGET}, "prunesid.method"),
        ({"method": "prunesid", "budget": 600}, "prunesid.budget 600"),
        ({"method": "prunesid", "budget": BUDGET, "dynamic": True}, "enable_mm_embeds"),
    ],
)
def test_bad_settings_stop_the_engine_at_start(checkpoint, settings, named):
    from vllm import LLM

    with pytest.raises(Exception) as raised:
        LLM(model=checkpoint, hf_overrides={"architectures": ["PruneSIDLlavaForConditionalGeneration"], "prunesid": settings}, **ENGINE_ARGS)
    chain, error = [], raised.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any(named in message for message in chain), chain
