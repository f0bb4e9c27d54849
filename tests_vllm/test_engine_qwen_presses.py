"""Every fixed-budget press of the registry in the Qwen2.5-VL engine (N = 32, the tiny built-in):
one request with an image and a 4-frame clip runs exactly the library's prompt ids and keeps
exactly the tokens the library keeps, per image and per clip. PruneSID itself, with
positions and log-probabilities, is test_engine_qwen.py's; positions do not depend on the
press (the kept tokens' own grid positions are placed), so each press here checks what it
changes: the count and the choice. One engine per press: vLLM reads the press from the
model's config at start, so it cannot change per request. VisionZip needs a CLS token, which
Qwen-VL's tower has not: the engine refuses it at start with the library's message."""

from __future__ import annotations

import gc
import json
import os

import numpy as np
import pytest

from conftest import ENGINE_ARGS, pattern
from prunesid.methods.registry import build_press, presses
from prunesid.video import Video
from prunesid.vllm import engine_arguments, engine_overrides
from prunesid.families.llava.vllm_model import RECORD_ENV

BUDGET = 32
FAMILY, BUILTIN = "qwen2_5_vl", "tiny-random-qwen2.5-vl"
QUESTION = "What is in them?"
IMAGE = pattern((640, 480), 1)
FRAMES = [np.asarray(pattern((320, 240), seed)) for seed in range(4, 8)]
FPS = 2.0
FIXED = [name for name, cls in presses().items() if cls().budget_is_fixed]
CLS_PRESSES = ["visionzip"]  # choose by the CLS token's attention: refused on Qwen-VL
RUN = [name for name in FIXED if name not in CLS_PRESSES and name != "prunesid"]  # prunesid: test_engine_qwen.py


@pytest.fixture(scope="module")
def checkpoint() -> str:
    from prunesid.vllm.checkpoint import engine_checkpoint

    return str(engine_checkpoint(BUILTIN))


@pytest.fixture(scope="module")
def vlm(checkpoint):
    from prunesid import load_vlm

    return load_vlm(checkpoint, dtype="float32")


def test_the_presses_run_here_are_the_registry_s():
    """Catches a fixed-budget press added to the registry and left out of these tests."""
    assert set(RUN) | set(CLS_PRESSES) | {"prunesid"} == set(FIXED)
    assert len(RUN) >= 3


@pytest.mark.parametrize("method", RUN)
def test_the_engine_feeds_and_keeps_what_the_library_does(checkpoint, vlm, method, tmp_path):
    """Catches a count other than the layout's (every press) and a press choosing over other
    features than the library's (DivPrune: the tower's tokens read in another order fail it;
    Random and Uniform choose without features, so they check the count and the press the
    settings build)."""
    from vllm import LLM, SamplingParams

    press = build_press(method, {"budget": BUDGET})
    prepared = vlm.prepare([IMAGE, Video.from_frames(FRAMES, fps=FPS)], QUESTION, press)
    content = [{"type": "image"}, {"type": "video"}, {"type": "text", "text": QUESTION}]
    prompt = vlm.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    clip = (np.stack(FRAMES), {"total_num_frames": len(FRAMES), "fps": FPS, "frames_indices": list(range(len(FRAMES))), "do_sample_frames": False})
    args = {**ENGINE_ARGS, "limit_mm_per_prompt": {"image": 1, "video": 1}}
    llm = LLM(model=checkpoint, hf_overrides=engine_overrides(FAMILY, method, BUDGET), **engine_arguments(FAMILY), **args)
    record = tmp_path / "kept.jsonl"
    try:
        os.environ[RECORD_ENV] = str(record)
        output = llm.generate([{"prompt": prompt, "multi_modal_data": {"image": IMAGE, "video": clip}}], SamplingParams(max_tokens=1, temperature=0.0))[0]
    finally:
        os.environ.pop(RECORD_ENV, None)
        del llm
        gc.collect()
    assert output.prompt_token_ids == prepared.input_ids[0].tolist()
    kept = sorted(json.loads(line)["indices"] for line in record.read_text().splitlines())
    library = sorted([index.tolist() for index in compression.indices] for compression in prepared.compressions)
    assert kept == library
    assert all(len(indices[0]) < 400 for indices in kept)  # pressed, not the full grid


@pytest.mark.parametrize("method", CLS_PRESSES)
def test_a_press_that_needs_a_cls_token_stops_the_engine_at_start(checkpoint, vlm, method):
    from vllm import LLM

    with pytest.raises(ValueError) as library_error:
        vlm.prepare([IMAGE], QUESTION, build_press(method, {"budget": BUDGET}))
    with pytest.raises(Exception) as raised:
        LLM(model=checkpoint, hf_overrides=engine_overrides(FAMILY, method, BUDGET), **engine_arguments(FAMILY), **ENGINE_ARGS)
    chain, error = [], raised.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("CLS" in message for message in chain), chain
    assert "CLS" in str(library_error.value)
