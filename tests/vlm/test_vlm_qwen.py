"""PruneSID inside Qwen2-VL, Qwen2.5-VL and Qwen3-VL (the offline built-ins): keeping every
token reproduces the unmodified model; a press feeds each image its own N_eff merged tokens
at the M-RoPE positions they had before pruning; deepstack features follow the kept tokens."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from prunesid import Compression, Press, PruneSID, load_vlm
from tests.conftest import scene

MODELS = ["tiny-random-qwen2-vl", "tiny-random-qwen2.5-vl", "tiny-random-qwen3-vl"]
KEEP_ALL = PruneSID(budget=100000, order="spatial")
QUESTION = "What is in the picture?"


@pytest.fixture(scope="module", params=MODELS)
def qwen(request):
    return load_vlm(request.param)


def n_eff(tokens: int, budget: int) -> int:
    """SPEC section 9, written out independently of prunesid/presets.py."""
    return tokens if tokens <= 16 else max(round(tokens * budget / 576), 16)


def reference_inputs(vlm, images, question=QUESTION):
    """The unmodified model's inputs, made by the processor as a user would."""
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": question}]
    text = vlm.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    return vlm.processor(images=images, text=text, return_tensors="pt")


def captured_language_model_calls(vlm, run):
    """Run ``run()`` and return (its result, the keyword arguments of every LLM call)."""
    calls = []

    def keep(module, args, kwargs):
        calls.append({key: value.detach().clone() if torch.is_tensor(value) else value for key, value in kwargs.items()})

    hook = vlm.model.model.language_model.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        result = run()
    finally:
        hook.remove()
    return result, calls


def expected_positions(vlm, reference, kept_per_image):
    """M-RoPE positions ``[3, L]`` the pruned sequence must carry: the model's own
    get_rope_index on the unpruned ids, at the text tokens and the kept visual tokens."""
    full_ids = reference["input_ids"]
    positions, deltas = vlm.model.model.get_rope_index(
        full_ids, mm_token_type_ids=reference["mm_token_type_ids"], image_grid_thw=reference["image_grid_thw"]
    )
    is_image = full_ids[0] == vlm.placeholder_token_id
    starts = [i for i in range(len(is_image)) if is_image[i] and (i == 0 or not is_image[i - 1])]
    lengths = (reference["image_grid_thw"].prod(-1) // 4).tolist()
    columns, cursor = [], 0
    for start, length, kept in zip(starts, lengths, kept_per_image):
        columns += list(range(cursor, start)) + [start + int(k) for k in kept]
        cursor = start + length
    columns += list(range(cursor, full_ids.shape[1]))
    return positions[:, 0, columns], int(deltas[0, 0]), full_ids.shape[1]


def no_eos(vlm) -> dict:
    """generate() keyword arguments that keep the answer going (the tiny models' own
    suppressed tokens plus end-of-sequence), so every decoding step is seen."""
    suppressed = list(vlm.model.generation_config.suppress_tokens or [])
    return {"suppress_tokens": suppressed + [vlm.processor.tokenizer.eos_token_id]}


def tower_output(vlm, reference):
    """Merged tokens (and Qwen3-VL's deepstack features) of each image, straight from the model."""
    with torch.inference_mode():
        output = vlm.model.model.get_image_features(reference["pixel_values"], reference["image_grid_thw"], return_dict=True)
    return output.pooler_output, getattr(output, "deepstack_features", None)


# --- keeping everything is the unmodified model ---------------------------------------------


@pytest.mark.parametrize("sizes", [[(448, 336)], [(420, 308), (280, 364)]], ids=["one image", "two images"])
def test_keeping_every_token_equals_the_unmodified_model(qwen, sizes):
    images = [scene(*size, seed=i) for i, size in enumerate(sizes)]
    reference = reference_inputs(qwen, images)
    with torch.inference_mode():
        expected = qwen.model(**reference).logits
    for press in (KEEP_ALL, None):
        prepared = qwen.prepare(images, QUESTION, press)
        assert torch.equal(prepared.input_ids, reference["input_ids"])
        with torch.inference_mode():
            logits = qwen.model(
                input_ids=prepared.input_ids, attention_mask=torch.ones_like(prepared.input_ids), **prepared.model_inputs
            ).logits
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)

    generated = qwen.model.generate(**reference, max_new_tokens=10, do_sample=False)
    expected_text = qwen.processor.tokenizer.decode(generated[0, reference["input_ids"].shape[1]:], skip_special_tokens=True)
    reply = qwen.chat(images, QUESTION, press=KEEP_ALL, max_new_tokens=10)
    assert reply.text == expected_text
    assert reply.visual_tokens == (reference["image_grid_thw"].prod(-1) // 4).tolist()


# --- a press: N_eff tokens, at their own positions --------------------------------------------


def test_budget_64_feeds_exactly_n_eff_merged_tokens(qwen):
    image = scene(512, 384, seed=3)
    reference = reference_inputs(qwen, [image])
    tokens = int(reference["image_grid_thw"][0].prod()) // 4
    reply, calls = captured_language_model_calls(qwen, lambda: qwen.chat(image, QUESTION, press=PruneSID(budget=64), max_new_tokens=2))
    selection = reply.selections[0]
    wanted = n_eff(tokens, 64)
    assert 16 < wanted < tokens
    assert reply.visual_tokens == [wanted] and selection.indices[0].numel() == wanted
    assert selection.to_dict()["budget_effective"] == wanted and selection.to_dict()["budget_requested"] == 64

    prefill = calls[0]
    fed_ids = qwen.prepare(image, QUESTION, PruneSID(budget=64)).input_ids[0]
    image_positions = fed_ids == qwen.placeholder_token_id
    assert int(image_positions.sum()) == wanted
    assert prefill["inputs_embeds"].shape[1] == fed_ids.numel() == reference["input_ids"].shape[1] - tokens + wanted
    merged, deepstack = tower_output(qwen, reference)
    kept = selection.indices[0]
    torch.testing.assert_close(prefill["inputs_embeds"][0, image_positions], merged[0][kept], rtol=1e-5, atol=1e-6)
    if deepstack is None:
        assert prefill.get("deepstack_visual_embeds") is None
    else:  # Qwen3-VL: every deepstack layer is cut with the same kept tokens
        assert torch.equal(prefill["visual_pos_masks"][0], image_positions)
        assert len(prefill["deepstack_visual_embeds"]) == len(deepstack) >= 1
        for fed, layer in zip(prefill["deepstack_visual_embeds"], deepstack):
            torch.testing.assert_close(fed, layer[0][kept], rtol=1e-5, atol=1e-6)


def _check_positions(vlm, reference, selections, calls, new_tokens):
    kept = [selection.indices[0] for selection in selections]
    wanted, delta, full_length = expected_positions(vlm, reference, kept)
    prefill = calls[0]["position_ids"]
    assert prefill.shape[0] == 4  # a plain text row, then the three M-RoPE rows
    assert torch.equal(prefill[1:, 0], wanted)
    assert torch.equal(prefill[0, 0], torch.arange(prefill.shape[-1]))
    # Decoding continues from the unpruned sequence: position = unpruned length + step + its rope delta.
    decode = [call["position_ids"][1:, 0, -1] for call in calls[1:]]
    assert len(decode) == new_tokens - 1
    for step, position in enumerate(decode):
        assert position.tolist() == [full_length + step + delta] * 3


def test_kept_tokens_keep_their_unpruned_positions_and_decoding_their_rope_deltas(qwen):
    image = scene(512, 384, seed=4)
    reference = reference_inputs(qwen, [image])
    new_tokens = 4
    reply, calls = captured_language_model_calls(
        qwen, lambda: qwen.chat(image, QUESTION, press=PruneSID(budget=64), max_new_tokens=new_tokens, **no_eos(qwen))
    )
    kept = reply.selections[0].indices[0]
    assert not torch.equal(kept, kept.sort().values)  # reference order: positions are not a running count
    _check_positions(qwen, reference, reply.selections, calls, new_tokens)

    # The same positions as the unmodified model gives those tokens while decoding.
    _, unmodified = captured_language_model_calls(
        qwen, lambda: qwen.model.generate(**reference, max_new_tokens=new_tokens, do_sample=False, **no_eos(qwen))
    )
    for ours, theirs in zip(calls[1:], unmodified[1:]):
        assert torch.equal(ours["position_ids"][1:], theirs["position_ids"][1:])


def test_two_images_of_different_sizes_get_their_own_n_eff_in_one_call(qwen):
    images = [scene(512, 384, seed=5), scene(320, 240, seed=6)]
    reference = reference_inputs(qwen, images, "Compare the two pictures.")
    tokens = (reference["image_grid_thw"].prod(-1) // 4).tolist()
    new_tokens = 3
    reply, calls = captured_language_model_calls(
        qwen, lambda: qwen.chat(images, "Compare the two pictures.", press=PruneSID(budget=64), max_new_tokens=new_tokens, **no_eos(qwen))
    )
    wanted = [n_eff(t, 64) for t in tokens]
    assert wanted[0] != wanted[1]
    assert reply.visual_tokens == wanted
    assert [selection.indices[0].numel() for selection in reply.selections] == wanted
    assert all(int(index.max()) < t for index, t in zip((s.indices[0] for s in reply.selections), tokens))
    assert reply.timings["new_tokens"] == new_tokens and len(reply.text) > 0
    _check_positions(qwen, reference, reply.selections, calls, new_tokens)


def test_follow_up_turn_reuses_the_encoded_image(qwen):
    image = scene(400, 300, seed=7)
    calls = []
    hook = qwen.model.model.visual.register_forward_hook(lambda *args: calls.append(1))
    try:
        first = qwen.chat(image, "What is this?", press=PruneSID(budget=64), max_new_tokens=3)
        history = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": first.text}]},
            {"role": "user", "content": [{"type": "text", "text": "And the colours?"}]},
        ]
        second = qwen.chat(image, history, press=PruneSID(budget=64), max_new_tokens=3)
    finally:
        hook.remove()
    assert len(calls) == 1
    assert second.prompt_tokens > first.prompt_tokens and second.visual_tokens == first.visual_tokens
    assert second.selections[0] is first.selections[0]


@dataclass(frozen=True)
class KeepFirstMergeRest(Press):
    """A toy merging press: keep the first ``budget - 1`` tokens, average the rest into one."""

    def compress(self, tokens):
        views, length, _ = tokens.features.shape
        kept = [torch.arange(self.budget - 1) for _ in range(views)]
        merged = [tokens.features[view, self.budget - 1:].mean(0, keepdim=True) for view in range(views)]
        merged_from = torch.full((views, length), -1)
        merged_from[:, self.budget - 1:] = 0
        return Compression(
            indices=kept, valid=torch.ones(views, length, dtype=torch.bool), budget=torch.full((views,), self.budget),
            reserved=0, method="keep-first-merge-rest", merged=merged, merged_from=merged_from,
        )


def test_a_merged_token_sits_at_its_image_s_last_position_without_deepstack(qwen):
    image = scene(448, 336, seed=10)
    reference = reference_inputs(qwen, [image])
    reply, calls = captured_language_model_calls(qwen, lambda: qwen.chat(image, QUESTION, press=KeepFirstMergeRest(8), max_new_tokens=2))
    assert reply.visual_tokens == [8]
    tokens = int(reference["image_grid_thw"][0].prod()) // 4
    kept_and_last = [list(range(7)) + [tokens - 1]]  # the merged token takes the image's last position
    wanted, _, _ = expected_positions(qwen, reference, kept_and_last)
    assert torch.equal(calls[0]["position_ids"][1:, 0], wanted)
    merged, deepstack = tower_output(qwen, reference)
    fed_ids = qwen.prepare(image, QUESTION, KeepFirstMergeRest(8)).input_ids[0]
    visual = calls[0]["inputs_embeds"][0, fed_ids == qwen.placeholder_token_id]
    torch.testing.assert_close(visual, torch.cat([merged[0][:7], merged[0][7:].mean(0, keepdim=True)]), rtol=1e-5, atol=1e-6)
    if deepstack is not None:
        assert int(calls[0]["visual_pos_masks"][0].sum()) == 8
        for fed, layer in zip(calls[0]["deepstack_visual_embeds"], deepstack):
            torch.testing.assert_close(fed[:7], layer[0][:7], rtol=1e-5, atol=1e-6)
            assert not fed[7].any()  # nothing is added to the merged token


# --- geometry ---------------------------------------------------------------------------------


def test_the_grid_is_the_merged_token_grid_over_the_whole_image(qwen):
    image = scene(500, 260, seed=8)
    encoded = qwen.encode(image)
    _, rows, cols = (int(v) for v in reference_inputs(qwen, [image])["image_grid_thw"][0])
    (grid,) = encoded.grids
    assert (grid.rows, grid.cols) == (rows // 2, cols // 2) and rows != cols
    assert grid.box == (0.0, 0.0, 500.0, 260.0)
    assert encoded.features.shape[:2] == (1, grid.rows * grid.cols)
    assert encoded.features.shape[2] == qwen.model.config.text_config.hidden_size  # after the merger: the LLM's width
    assert encoded.cls is None and encoded.importance is None


def test_pixel_limits_bound_the_dynamic_resolution():
    small = load_vlm("tiny-random-qwen2.5-vl", max_pixels=64 * 28 * 28)
    large = load_vlm("tiny-random-qwen2.5-vl", min_pixels=900 * 28 * 28, max_pixels=1200 * 28 * 28)
    image = scene(640, 480, seed=9)
    few, many = small.encode(image).features.shape[1], large.encode(image).features.shape[1]
    assert few <= 64 and 900 <= many <= 1200
    # What the processor itself makes with the same limits.
    processed = small.processor.image_processor(images=image, size={"shortest_edge": 56 * 56, "longest_edge": 64 * 28 * 28}, return_tensors="pt")
    assert few == int(processed["image_grid_thw"][0].prod()) // 4
    reply = small.chat(image, QUESTION, press=PruneSID(budget=64), max_new_tokens=1)
    assert reply.visual_tokens == [n_eff(few, 64)]


# --- video and bad input ------------------------------------------------------------------


def test_a_video_part_without_a_clip_fails_with_a_clear_message():
    # Clips are taken (tests/vlm/test_qwen_video.py); a video part with no clip is named.
    vlm = load_vlm("tiny-random-qwen2.5-vl")
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    with pytest.raises(ValueError, match="holds 1 video placeholders but 0 videos were given"):
        vlm.chat(None, messages, press=PruneSID(budget=64), max_new_tokens=2)
    with pytest.raises(ValueError, match="holds 1 video placeholders but 0 videos were given"):
        vlm.chat([scene(320, 240)], [{"role": "user", "content": [{"type": "image"}, *messages[0]["content"]]}], press=None)
    frames = torch.zeros(4, 64, 64, 3, dtype=torch.uint8).numpy()
    with pytest.raises(ValueError, match="array must be H x W"):
        vlm.chat(frames, "What happens?", press=PruneSID(budget=64))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"min_pixels": 0}, "min_pixels must be a positive integer"),
        ({"max_pixels": "many"}, "max_pixels must be a positive integer"),
        ({"max_pixels": 2.5e6}, "max_pixels must be a positive integer"),
        ({"max_pixels": 500}, "max_pixels must be at least 784"),
        ({"min_pixels": 600 * 28 * 28, "max_pixels": 300 * 28 * 28}, r"min_pixels \(470400\) must not exceed max_pixels \(235200\)"),
    ],
)
def test_bad_pixel_limits_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        load_vlm("tiny-random-qwen2-vl", **options)


def test_pixel_limits_are_refused_for_fixed_resolution_models():
    with pytest.raises(ValueError, match="min_pixels applies only to Qwen-VL models"):
        load_vlm("tiny-random", min_pixels=3136)


def test_bad_input_fails_early_and_clearly():
    vlm = load_vlm("tiny-random-qwen3-vl")
    image = scene(320, 240)
    with pytest.raises(ValueError, match="prompt is empty"):
        vlm.chat(image, "   ", press=PruneSID(budget=64))
    with pytest.raises(ValueError, match="each side must be at least 16"):
        vlm.chat(scene(320, 240).resize((12, 40)), QUESTION, press=PruneSID(budget=64))
    with pytest.raises(ValueError, match="beyond|aspect|20"):
        vlm.chat(scene(320, 240).resize((2000, 40)), QUESTION, press=PruneSID(budget=64))
    with pytest.raises(ValueError, match="2 image placeholders but 1 images"):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Two?"}]}]
        vlm.chat(image, messages, press=PruneSID(budget=64))
    with pytest.raises(ValueError, match="budget"):
        PruneSID(budget=0)
    with pytest.raises(TypeError, match="press must be a prunesid press"):
        vlm.chat(image, QUESTION, press=64)
