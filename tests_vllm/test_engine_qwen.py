"""Qwen2.5-VL in the engine (one engine, PruneSID N = 16, on the tiny built-in): the prompt
vLLM runs is the library's (text + N_eff per image), the engine keeps the library's tokens, the
M-RoPE positions vLLM feeds are the library's (``get_rope_index`` on the unpruned ids, sliced
at the tokens fed) and so are the first token's log-probabilities; started without the
pruning switch the engine stops, naming ``--video-pruning-rate``."""

from __future__ import annotations

import gc
import json
import os

import pytest
import torch

from conftest import ENGINE_ARGS, pattern
from prunesid.methods.registry import build_press
from prunesid.vllm import engine_overrides
from prunesid.vllm.llava import RECORD_ENV

BUDGET = 16
QUESTION = "What differs between them?"
IMAGES = [pattern((640, 480), 1), pattern((300, 500), 2)]
# Qwen2.5 engine runs: the switch on (its value is not used) and no prefix cache (see qwen_vl.py).
SWITCH = dict(video_pruning_rate=0.5, enable_prefix_caching=False)
# float32 on both sides; what differs is the kernels (vLLM's CPU attention and GEMMs against
# transformers' eager SDPA), whose different summation orders move a log-probability by ~1e-5
# on this model. A token fed at a wrong position moves them by far more (see the docstring of
# test_positions_and_first_token_log_probs_are_the_library_s).
LOGPROB_TOLERANCE = 2e-4


FED: list[torch.Tensor] = []  # the positions of every language-model call of the engine


def watch_positions(model) -> None:
    """Run in the engine's worker, which is this process (conftest), so the hook appends to this
    module's FED. On the first decoder layer: vLLM's compiled-model wrapper calls the decoder's
    forward directly, past any hook on the decoder itself."""
    model.language_model.model.layers[0].register_forward_pre_hook(_keep_positions)


def _keep_positions(module, args) -> None:
    FED.append(args[0].clone())  # Qwen2DecoderLayer(positions, hidden_states, residual)


@pytest.fixture(scope="module")
def qwen_checkpoint() -> str:
    from prunesid.vllm.checkpoint import engine_checkpoint

    return str(engine_checkpoint("tiny-random-qwen2.5-vl"))


@pytest.fixture(scope="module")
def library(qwen_checkpoint):
    from prunesid import load_vlm

    vlm = load_vlm(qwen_checkpoint, dtype="float32")
    press = build_press("prunesid", {"budget": BUDGET})
    prepared = vlm.prepare(IMAGES, QUESTION, press)
    with torch.inference_mode():
        logits = vlm.model(
            input_ids=prepared.input_ids, attention_mask=torch.ones_like(prepared.input_ids), **prepared.model_inputs
        ).logits[0, -1]
    return vlm, press, prepared, torch.log_softmax(logits.float(), dim=-1)


@pytest.fixture(scope="module")
def engine(qwen_checkpoint, library, tmp_path_factory):
    """One engine run of the two-image prompt: its output, the positions its language model
    was fed, and what the press kept (recorded by the engine)."""
    from vllm import LLM, SamplingParams

    vlm, *_ = library
    content = [{"type": "image"} for _ in IMAGES] + [{"type": "text", "text": QUESTION}]
    prompt = vlm.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    llm = LLM(model=qwen_checkpoint, hf_overrides=engine_overrides("qwen2_5_vl", "prunesid", BUDGET), **SWITCH, **ENGINE_ARGS)
    FED.clear()
    record = tmp_path_factory.mktemp("qwen") / "kept.jsonl"
    try:
        llm.apply_model(watch_positions)
        os.environ[RECORD_ENV] = str(record)
        [output] = llm.generate(
            {"prompt": prompt, "multi_modal_data": {"image": IMAGES}},
            SamplingParams(max_tokens=3, temperature=0.0, logprobs=20),
        )
    finally:
        os.environ.pop(RECORD_ENV, None)
        del llm
        gc.collect()
    return output, list(FED), [json.loads(line) for line in record.read_text().splitlines()]


def test_the_prompt_is_text_plus_the_library_s_fed_count_per_image(library, engine):
    vlm, press, prepared, _ = library
    output, _, kept = engine
    fed = [vlm.fed_tokens(image.size, press) for image in IMAGES]
    assert prepared.visual_tokens == fed and all(16 <= count < 400 for count in fed)
    assert output.prompt_token_ids == prepared.input_ids[0].tolist()
    assert sum(token == vlm.placeholder_token_id for token in output.prompt_token_ids) == sum(fed)
    assert [item["fed"] for item in kept] == fed


def test_the_engine_keeps_what_the_library_keeps(library, engine):
    _, _, prepared, _ = library
    _, _, kept = engine
    assert [item["indices"] for item in kept] == [[index.tolist() for index in compression.indices] for compression in prepared.compressions]


def test_positions_and_first_token_log_probs_are_the_library_s(library, engine):
    """The prefill's M-RoPE rows equal the library's (get_rope_index on the unpruned ids at
    the tokens fed), and the decode step continues from the unpruned sequence. Catches the
    kept tokens placed anywhere else: with the positions of the pruned sequence (vLLM's own
    grid of the fed count) both the positions and the log-probabilities differ."""
    _, _, prepared, expected = library
    output, fed, _ = engine
    length = prepared.input_ids.shape[1]
    prefill = torch.cat([step for step in fed if step.shape[-1] > 1], dim=-1)
    assert prefill.shape == (3, length)
    wanted = prepared.model_inputs["position_ids"][1:, 0]
    assert torch.equal(prefill.cpu(), wanted)
    # The first decoding step: the next position after the unpruned sequence (max + 1).
    assert fed[-2].shape[-1] == 1 or fed[-1].shape[-1] == 1
    decode = [step for step in fed if step.shape[-1] == 1][0]
    assert decode.flatten().tolist() == [int(wanted.max()) + 1] * 3

    first = output.outputs[0].logprobs[0]
    ids = torch.tensor(list(first))
    theirs = torch.tensor([first[token].logprob for token in ids.tolist()])
    assert int(ids[theirs.argmax()]) == int(expected.argmax())
    torch.testing.assert_close(theirs, expected[ids], rtol=0, atol=LOGPROB_TOLERANCE)


@pytest.mark.parametrize(
    ("switch", "named"),
    [
        ({"enable_prefix_caching": False}, "--video-pruning-rate"),
        ({"video_pruning_rate": 0.5, "enable_prefix_caching": True}, "--no-enable-prefix-caching"),
    ],
)
def test_without_the_switch_the_engine_stops_at_start_named(qwen_checkpoint, switch, named):
    from vllm import LLM

    with pytest.raises(Exception) as raised:
        LLM(model=qwen_checkpoint, hf_overrides=engine_overrides("qwen2_5_vl", "prunesid", BUDGET), **switch, **ENGINE_ARGS)
    chain, error = [], raised.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any(named in message for message in chain), chain
