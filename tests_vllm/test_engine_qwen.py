"""Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3-VL-MoE in the engine (one engine each, PruneSID N = 32, on the
tiny built-ins), a batch of two requests of different sizes (two images; an image and a
4-frame clip): each prompt vLLM runs is
the library's (text + N_eff per image, per temporal group of a clip), the engine keeps the
library's tokens, the M-RoPE positions vLLM feeds are the library's (``get_rope_index`` on the
unpruned ids, sliced at the tokens fed; Qwen2.5-VL spaces a clip's groups by its frame rate) and so
are the first token's log-probabilities; started without the pruning switch the engine stops,
naming ``--video-pruning-rate``."""

from __future__ import annotations

import gc
import json
import os

import numpy as np
import pytest
import torch

from conftest import ENGINE_ARGS, pattern
from prunesid.methods.registry import build_press
from prunesid.video import Video
from prunesid.vllm import ARCHITECTURES, engine_arguments, engine_overrides
from prunesid.families.llava.vllm_model import RECORD_ENV

BUDGET = 32  # N_eff = max(round(T x 32 / 576), 16): 22 and 16 merged tokens for the two images
QUESTION = "What differs between them?"
IMAGES = [pattern((640, 480), 1), pattern((300, 500), 2)]
CLIP_IMAGE = pattern((400, 300), 3)
FRAMES = [np.asarray(pattern((320, 240), seed)) for seed in range(4, 8)]
FPS = 2.0  # the clip's frame rate: Qwen2.5-VL spaces its groups by tokens_per_second x 2 / FPS
# Qwen2.5 engine runs: the switch on (its value is not used) and no prefix cache (see qwen_vl.py).
SWITCH = engine_arguments("qwen2_5_vl")
# float32 on both sides; what differs is the kernels (vLLM's CPU attention and GEMMs against
# transformers' SDPA), whose summation orders moved a top-20 log-probability by at most 4.8e-7
# here. The tiny random model's answers hardly depend on positions: with the kept tokens at
# the pruned sequence's positions they moved by 3.5e-5. The tolerance sits between the two
# (10x the noise), so that breakage fails this test too, not only the positions test.
# Qwen3.5 runs in bfloat16 (FAMILIES): vLLM's bfloat16 kernels against transformers' moved a
# top-20 log-probability by up to 2.0e-3 (Qwen3.5) and 3.8e-3 (Qwen3.5-MoE); its tolerance is
# 4x the larger. There the log-probabilities catch only gross errors; the positions test
# checks the positions exactly whatever the dtype.
LOGPROB_TOLERANCE = {"float32": 5e-6, "bfloat16": 1.5e-2}


FED: list[torch.Tensor] = []  # the positions of every language-model call of the engine


def watch_positions(model) -> None:
    """Run in the engine's worker, which is this process (conftest), so the hook appends to this
    module's FED. On the first decoder layer: vLLM's compiled-model wrapper calls the decoder's
    forward directly, past any hook on the decoder itself."""
    model.language_model.model.layers[0].register_forward_pre_hook(_keep_positions, with_kwargs=True)


def _keep_positions(module, args, kwargs) -> None:
    # The one integer tensor a decoder layer takes: Qwen2/3 layers take (positions,
    # hidden_states, residual), Qwen3.5's (hidden_states, residual, positions).
    FED.append(next(value for value in [*args, *kwargs.values()] if isinstance(value, torch.Tensor) and not value.is_floating_point()).clone())


# (plug-in family, built-in, dtype of both paths): one engine each. vLLM's CPU kernel of
# Qwen3.5's Gated DeltaNet layers takes bfloat16 only (gdn_attention.py: "CPU GDN attention
# requires BF16"), so Qwen3.5 runs in bfloat16 on both sides.
FAMILIES = [
    ("qwen2_vl", "tiny-random-qwen2-vl", "float32"),
    ("qwen2_5_vl", "tiny-random-qwen2.5-vl", "float32"),
    ("qwen3_vl", "tiny-random-qwen3-vl", "float32"),
    ("qwen3_vl_moe", "tiny-random-qwen3-vl-moe", "float32"),
    ("qwen3_5", "tiny-random-qwen3.5", "bfloat16"),
    ("qwen3_5_moe", "tiny-random-qwen3.5-moe", "bfloat16"),
]


@pytest.fixture(scope="module", params=FAMILIES, ids=[family for family, *_ in FAMILIES])
def family(request) -> tuple[str, str, str]:
    from prunesid.vllm.checkpoint import engine_checkpoint

    name, builtin, dtype = request.param
    return name, str(engine_checkpoint(builtin)), dtype


def request_media() -> list[list]:
    """Per request of the batch, its media: two images; an image and a clip."""
    return [IMAGES, [CLIP_IMAGE, Video.from_frames(FRAMES, fps=FPS)]]


@pytest.fixture(scope="module")
def qwen_checkpoint(family) -> str:
    return family[1]


@pytest.fixture(scope="module")
def library(family, qwen_checkpoint):
    """The transformers path on the same checkpoint, per request: (prepared inputs, the
    first token's log-probabilities)."""
    from prunesid import load_vlm

    vlm = load_vlm(qwen_checkpoint, dtype=family[2])
    press = build_press("prunesid", {"budget": BUDGET})
    requests = []
    for media in request_media():
        prepared = vlm.prepare(media, QUESTION, press)
        with torch.inference_mode():
            logits = vlm.model(
                input_ids=prepared.input_ids, attention_mask=torch.ones_like(prepared.input_ids), **prepared.model_inputs
            ).logits[0, -1]
        requests.append((prepared, torch.log_softmax(logits.float(), dim=-1)))
    return vlm, press, requests


def chat_prompt(vlm, modalities: list[str]) -> str:
    content = [{"type": modality} for modality in modalities] + [{"type": "text", "text": QUESTION}]
    return vlm.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)


@pytest.fixture(scope="module")
def engine(family, qwen_checkpoint, library, tmp_path_factory):
    """One engine run of both requests in one batch: the outputs, the positions its language
    model was fed per call, and what the press kept (recorded by the engine)."""
    from vllm import LLM, SamplingParams

    vlm, *_ = library
    clip = (np.stack(FRAMES), {"total_num_frames": len(FRAMES), "fps": FPS, "frames_indices": list(range(len(FRAMES))), "do_sample_frames": False})
    second = {"prompt": chat_prompt(vlm, ["image", "video"]), "multi_modal_data": {"image": CLIP_IMAGE, "video": clip}}
    requests = [
        {"prompt": chat_prompt(vlm, ["image", "image"]), "multi_modal_data": {"image": IMAGES}},
        second,
    ]
    args = {**ENGINE_ARGS, "limit_mm_per_prompt": {"image": 2, "video": 1}, "dtype": family[2]}
    llm = LLM(model=qwen_checkpoint, hf_overrides=engine_overrides(family[0], "prunesid", BUDGET), **SWITCH, **args)
    FED.clear()
    record = tmp_path_factory.mktemp("qwen") / "kept.jsonl"
    try:
        llm.apply_model(watch_positions)
        os.environ[RECORD_ENV] = str(record)
        outputs = llm.generate(requests, SamplingParams(max_tokens=3, temperature=0.0, logprobs=20))
    finally:
        os.environ.pop(RECORD_ENV, None)
        del llm
        gc.collect()
    return outputs, list(FED), [json.loads(line) for line in record.read_text().splitlines()]


def test_the_prompts_are_text_plus_the_library_s_fed_counts(family, library, engine):
    """Catches a front end that sizes a run otherwise than the layout (e.g. vLLM's EVS count
    for a clip, or the full grid)."""
    vlm, press, requests = library
    outputs, _, kept = engine
    counts = [[vlm.fed_tokens(image.size, press) for image in IMAGES], [vlm.fed_tokens(CLIP_IMAGE.size, press)]]
    per_group = vlm.encode(Video.from_frames(FRAMES, fps=FPS)).features.shape[1]  # merged tokens of one group
    group_count = min(per_group, max(round(per_group * BUDGET / 576), 16))  # SPEC section 9, written out
    counts[1].append(2 * group_count)  # 4 frames: 2 groups
    video_token = vlm.model.config.video_token_id
    assert sum(token == video_token for token in outputs[1].prompt_token_ids) == 2 * group_count
    for output, (prepared, _), fed in zip(outputs, requests, counts):
        assert prepared.visual_tokens == fed
        assert output.prompt_token_ids == prepared.input_ids[0].tolist()
    assert all(16 <= count < 400 for count in counts[0]) and counts[0][0] != counts[0][1]
    assert sorted(item["fed"] for item in kept) == sorted(counts[0] + counts[1])


def test_the_engine_keeps_what_the_library_keeps(library, engine):
    """Catches a tower output that differs from transformers' (e.g. a clip's pixels normalised
    twice, which vLLM's in-model normalisation and the torchvision-free processor did)."""
    _, _, requests = library
    _, _, kept = engine
    library_kept = [[index.tolist() for index in compression.indices] for prepared, _ in requests for compression in prepared.compressions]
    assert sorted(item["indices"] for item in kept) == sorted(library_kept)


def test_the_positions_fed_are_the_library_s(library, engine):
    """The prefill's M-RoPE rows equal the library's (get_rope_index on the unpruned ids at
    the tokens fed), for both requests of the batch, and the first decode step continues
    from each unpruned sequence. Catches kept tokens placed anywhere else (the pruned
    sequence's grid; the text after a tall image continuing from its width, vLLM's EVS rule)."""
    _, _, requests = library
    _, fed, _ = engine
    wanted = [prepared.model_inputs["position_ids"][1:, 0] for prepared, _ in requests]
    lengths = [int(rows.shape[-1]) for rows in wanted]
    prefill, decode = fed[0].cpu(), fed[1].cpu()
    assert prefill.shape == (3, sum(lengths)), "both prompts are prefilled in the first step"
    for rows, part in zip(wanted, prefill.split(lengths, dim=-1)):
        assert torch.equal(part, rows)
    assert decode.shape == (3, 2)
    assert decode.T.tolist() == [[int(rows.max()) + 1] * 3 for rows in wanted]


def test_the_first_token_log_probs_are_the_library_s(family, library, engine):
    """The top-20 log-probabilities of each request's first token equal the transformers
    path's within LOGPROB_TOLERANCE (see there). Catches, besides misplaced tokens, Qwen3-VL's
    deepstack rows not cut with the kept tokens (zeros instead: 2.3e-2) and Qwen3-VL-MoE's
    experts weighted otherwise than transformers' router (the engine checkpoint written with
    norm_topk_prob false: 1.6e-2)."""
    _, _, requests = library
    outputs, _, _ = engine
    for output, (_, expected) in zip(outputs, requests):
        first = output.outputs[0].logprobs[0]
        ids = torch.tensor(list(first))
        theirs = torch.tensor([first[token].logprob for token in ids.tolist()])
        assert int(ids[theirs.argmax()]) == int(expected.argmax())
        torch.testing.assert_close(theirs, expected[ids], rtol=0, atol=LOGPROB_TOLERANCE[family[2]])


@pytest.mark.parametrize(
    ("switch", "named"),
    [
        ({"enable_prefix_caching": False}, "--video-pruning-rate"),
        ({"video_pruning_rate": 0.5, "enable_prefix_caching": True}, "--no-enable-prefix-caching"),
    ],
)
def test_without_the_switch_the_engine_stops_at_start_named(switch, named):
    from vllm import LLM

    from prunesid.vllm.checkpoint import engine_checkpoint

    checkpoint = str(engine_checkpoint("tiny-random-qwen2.5-vl"))
    with pytest.raises(Exception) as raised:
        LLM(model=checkpoint, hf_overrides=engine_overrides("qwen2_5_vl", "prunesid", BUDGET), **switch, **ENGINE_ARGS)
    chain, error = [], raised.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any(named in message for message in chain), chain


def test_engine_arguments_name_the_qwen_switch():
    """What LLM(...) and `vllm serve` need besides hf_overrides, per family."""
    assert engine_arguments("qwen2_5_vl") == {"video_pruning_rate": 0.5, "enable_prefix_caching": False}
    qwen = [family for family in ARCHITECTURES if family.startswith("qwen")]
    assert {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"} <= set(qwen)
    assert all(engine_arguments(family) == engine_arguments("qwen2_5_vl") for family in qwen)
    assert engine_arguments("llava") == {}
    with pytest.raises(ValueError, match="family must be one of"):
        engine_arguments("qwen9")
