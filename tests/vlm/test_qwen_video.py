"""Clips on the Qwen-VL built-ins: every temporal group (a pair of frames) is a view.

Keeping everything gives the unmodified model fed by its own processor (transformers'
Qwen processors, whose ``videos=`` slot is filled here by the torchvision-free
QwenVideoProcessor); at N = 64 each group keeps N_eff of its merged tokens, at the M-RoPE
positions the unpruned run gives them, and decoding continues as the unmodified model's.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from prunesid import PruneSID, load_vlm, press_applied
from prunesid.methods.registry import method_choices
from prunesid.video import Video, load_video
from prunesid.families.qwen_vl.adapter import video_metadata
from tests.conftest import scene

MODELS = ["tiny-random-qwen2.5-vl", "tiny-random-qwen3-vl"]
KEEP_ALL = PruneSID(budget=100000, order="spatial")
QUESTION = "What happens in the clip?"


@pytest.fixture(scope="module", params=MODELS)
def qwen(request):
    return load_vlm(request.param)


def n_eff(tokens: int, budget: int) -> int:
    """SPEC section 9, written out independently of prunesid/presets.py."""
    return tokens if tokens <= 16 else max(round(tokens * budget / 576), 16)


def make_clip(frames: int, size=(224, 168), seed: int = 0, fps: float | None = 4.0) -> Video:
    return Video.from_frames([scene(*size, seed=seed + i) for i in range(frames)], fps=fps)


def reference_inputs(vlm, media, question=QUESTION):
    """The unmodified model's inputs, made by the model's processor as a user would."""
    content = [{"type": "video" if isinstance(item, Video) else "image"} for item in media] + [{"type": "text", "text": question}]
    text = vlm.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    clips = [item for item in media if isinstance(item, Video)]
    images = [item for item in media if not isinstance(item, Video)]
    inputs = vlm.processor(
        text=text, images=images or None, videos=[list(c.frames) for c in clips] or None,
        video_metadata=[video_metadata(c, 0) for c in clips] or None, return_tensors="pt",
    )
    inputs.pop("video_metadata", None)
    return inputs


def captured_language_model_calls(vlm, run):
    calls = []

    def keep(module, args, kwargs):
        calls.append({key: value.detach().clone() if torch.is_tensor(value) else value for key, value in kwargs.items()})

    hook = vlm.model.model.language_model.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        return run(), calls
    finally:
        hook.remove()


def no_eos(vlm) -> dict:
    suppressed = list(vlm.model.generation_config.suppress_tokens or [])
    return {"suppress_tokens": suppressed + [vlm.processor.tokenizer.eos_token_id]}


def group_tokens(reference) -> tuple[int, int]:
    """(groups, merged tokens per group) of the reference's one clip."""
    groups, rows, cols = (int(v) for v in reference["video_grid_thw"][0])
    return groups, rows * cols // 4


def expected_positions(vlm, reference, kept_per_group):
    """M-RoPE positions ``[3, L]`` the pruned sequence must carry: the model's own
    get_rope_index on the processor's (unpruned) ids, at the text and the kept tokens."""
    ids = reference["input_ids"]
    options = {key: reference[key] for key in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts") if key in reference}
    positions, deltas = vlm.model.model.get_rope_index(ids, mm_token_type_ids=reference["mm_token_type_ids"], **options)
    video = (ids[0] == vlm.family.video_token_id).nonzero().flatten().tolist()  # every video token, group after group
    per_group = len(video) // len(kept_per_group)
    firsts = {video[g * per_group]: g for g in range(len(kept_per_group))}
    columns = []
    for i in range(ids.shape[1]):
        if i in firsts:
            g = firsts[i]
            columns += [video[g * per_group + int(k)] for k in kept_per_group[g]]
        elif ids[0, i] != vlm.family.video_token_id:
            columns.append(i)
    return positions[:, 0, columns], int(deltas[0, 0]), ids.shape[1]


# --- keeping everything is the unmodified model ---------------------------------------------


@pytest.mark.parametrize("frames", [4, 5, 1], ids=["4 frames", "odd: 5 frames", "shorter than a group: 1 frame"])
def test_keeping_every_token_of_a_clip_equals_the_unmodified_model(qwen, frames):
    clip = make_clip(frames)
    reference = reference_inputs(qwen, [clip])
    groups, per_group = group_tokens(reference)
    assert groups == (frames + 1) // 2
    with torch.inference_mode():
        expected = qwen.model(**reference).logits
    for press in (KEEP_ALL, None):
        prepared = qwen.prepare(clip, QUESTION, press)
        assert torch.equal(prepared.input_ids, reference["input_ids"])  # Qwen3-VL: the timestamps too
        with torch.inference_mode():
            logits = qwen.model(input_ids=prepared.input_ids, attention_mask=torch.ones_like(prepared.input_ids), **prepared.model_inputs).logits
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
    qwen.model.model.rope_deltas = None
    generated = qwen.model.generate(**reference, max_new_tokens=8, do_sample=False)
    expected_text = qwen.processor.tokenizer.decode(generated[0, reference["input_ids"].shape[1]:], skip_special_tokens=True)
    reply = qwen.chat(clip, QUESTION, press=KEEP_ALL, max_new_tokens=8)
    assert reply.text == expected_text
    assert reply.visual_tokens == [groups * per_group]
    assert reply.selections[0].num_views == groups


def test_an_image_and_a_clip_in_one_prompt_equal_the_unmodified_model(qwen):
    clip, image = make_clip(4, seed=3), scene(280, 196, seed=9)
    media = [clip, image]  # the clip first: each modality takes its own placeholders in order
    reference = reference_inputs(qwen, media, "Does the picture appear in the clip?")
    with torch.inference_mode():
        expected = qwen.model(**reference).logits
    prepared = qwen.prepare(media, "Does the picture appear in the clip?", KEEP_ALL)
    assert torch.equal(prepared.input_ids, reference["input_ids"])
    with torch.inference_mode():
        logits = qwen.model(input_ids=prepared.input_ids, attention_mask=torch.ones_like(prepared.input_ids), **prepared.model_inputs).logits
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
    qwen.model.model.rope_deltas = None
    generated = qwen.model.generate(**reference, max_new_tokens=8, do_sample=False)
    expected_text = qwen.processor.tokenizer.decode(generated[0, reference["input_ids"].shape[1]:], skip_special_tokens=True)
    assert qwen.chat(media, "Does the picture appear in the clip?", press=KEEP_ALL, max_new_tokens=8).text == expected_text


def test_a_clip_file_keeps_its_frame_rate_in_the_positions():
    """A real clip: 16 frames sampled over 6 s at 12 fps; Qwen2.5-VL's second_per_grid_ts
    (and so the temporal positions) come from the sampled frame rate, as its processor's."""
    vlm = load_vlm("tiny-random-qwen2.5-vl")
    clip = load_video("assets/clip.mp4", num_frames=vlm.family.num_frames)
    reference = reference_inputs(vlm, [clip])
    assert float(reference["second_per_grid_ts"][0]) == pytest.approx(2 / (16 / 72 * 12))
    with torch.inference_mode():
        expected = vlm.model(**reference).logits
    prepared = vlm.prepare("assets/clip.mp4", QUESTION, KEEP_ALL)
    with torch.inference_mode():
        logits = vlm.model(input_ids=prepared.input_ids, attention_mask=torch.ones_like(prepared.input_ids), **prepared.model_inputs).logits
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
    assert len(set(prepared.model_inputs["position_ids"][1, 0].tolist())) > 8 + 1  # temporal rows spread out, not 0..7


# --- a press: N_eff per group, at its own positions -------------------------------------------


def test_budget_64_keeps_n_eff_per_group_at_the_unpruned_positions(qwen):
    clip = make_clip(4, size=(672, 504), seed=20)
    reference = reference_inputs(qwen, [clip])
    groups, per_group = group_tokens(reference)
    wanted = n_eff(per_group, 64)
    assert groups == 2 and 16 < wanted < per_group
    new_tokens = 3
    reply, calls = captured_language_model_calls(
        qwen, lambda: qwen.chat(clip, QUESTION, press=PruneSID(budget=64), max_new_tokens=new_tokens, **no_eos(qwen))
    )
    selection = reply.selections[0]
    assert reply.visual_tokens == [groups * wanted]
    assert [int(k.numel()) for k in selection.indices] == [wanted] * groups
    assert qwen.fed_tokens(clip.size, PruneSID(budget=64), modality="video") == qwen.family.layout.groups() * wanted

    # The tower's merged tokens of each group at its kept indices, and the same deepstack rows.
    prefill = calls[0]
    fed_ids = qwen.prepare(clip, QUESTION, PruneSID(budget=64)).input_ids[0]
    is_video = fed_ids == qwen.family.video_token_id
    assert int(is_video.sum()) == groups * wanted
    with torch.inference_mode():
        tower = qwen.model.model.get_video_features(reference["pixel_values_videos"], reference["video_grid_thw"], return_dict=True)
    merged = tower.pooler_output[0].reshape(groups, per_group, -1)
    kept = torch.cat([merged[g][selection.indices[g]] for g in range(groups)])
    torch.testing.assert_close(prefill["inputs_embeds"][0, is_video], kept, rtol=1e-5, atol=1e-6)
    deepstack = getattr(tower, "deepstack_features", None)
    if deepstack is not None:  # Qwen3-VL
        assert torch.equal(prefill["visual_pos_masks"][0], is_video)
        for fed, layer in zip(prefill["deepstack_visual_embeds"], deepstack):
            rows = layer[0].reshape(groups, per_group, -1)
            torch.testing.assert_close(fed, torch.cat([rows[g][selection.indices[g]] for g in range(groups)]), rtol=1e-5, atol=1e-6)

    # Positions: the unpruned run's, at the kept tokens (3-D); decoding from its rope deltas.
    positions, delta, full_length = expected_positions(qwen, reference, selection.indices)
    assert torch.equal(prefill["position_ids"][1:, 0], positions)
    assert not torch.equal(selection.indices[0], selection.indices[0].sort().values)  # not a running count
    decode = [call["position_ids"][1:, 0, -1] for call in calls[1:]]
    assert len(decode) == new_tokens - 1
    for step, position in enumerate(decode):
        assert position.tolist() == [full_length + step + delta] * 3


def test_the_dynamic_budget_shares_groups_x_n_between_groups_by_their_information(qwen):
    flat = Image.new("RGB", (672, 504), (120, 120, 120))
    busy = [scene(672, 504, seed=30 + i) for i in range(2)]
    clip = Video.from_frames([flat, flat, *busy], fps=2)
    press = PruneSID(budget=64, dynamic=True)
    reference = reference_inputs(qwen, [clip])
    groups, per_group = group_tokens(reference)
    reply, calls = captured_language_model_calls(qwen, lambda: qwen.chat(clip, QUESTION, press=press, max_new_tokens=1))
    selection = reply.selections[0]
    counts = [int(k.numel()) for k in selection.indices]
    assert counts[0] < counts[1]  # the flat group holds less information
    # N'_eff per group (N_eff x phi / mean phi, within [N_eff/2, 2 N_eff], in merged
    # tokens) sums to groups x N_eff, and each group keeps exactly its share.
    shares = [selection.to_dict(g)["budget_requested"] for g in range(groups)]
    base = n_eff(per_group, 64)
    assert sum(shares) == groups * base and shares[0] < base < shares[1]
    assert counts == shares
    assert reply.visual_tokens == [sum(counts)]
    positions, _, _ = expected_positions(qwen, reference, reply.selections[0].indices)
    assert torch.equal(calls[0]["position_ids"][1:, 0], positions)
    with pytest.raises(ValueError, match="cannot be known before encoding"):
        qwen.fed_tokens(clip.size, press, modality="video")


@pytest.mark.parametrize("choice", method_choices(), ids=lambda choice: choice.label)
def test_every_press_runs_on_a_clip_or_refuses_clearly(qwen, choice):
    clip = make_clip(4, size=(448, 336), seed=40)
    press = choice.press(64)
    try:
        expected = qwen.fed_tokens(clip.size, press, modality="video")
    except ValueError as error:
        if "dynamic" in str(error) or "before encoding" in str(error):
            expected = None
        else:  # a press needing CLS attention: the run refuses with the same message
            assert "cannot run on this model: it needs" in str(error)
            # The run refuses as on a Qwen image, with the same message.
            with pytest.raises(ValueError) as on_image:
                qwen.chat(scene(448, 336), QUESTION, press=press, max_new_tokens=1)
            with pytest.raises(ValueError, match="CLS token's attention") as on_clip:
                qwen.chat(clip, QUESTION, press=press, max_new_tokens=1)
            assert str(on_clip.value) == str(on_image.value)
            return
    reply = qwen.chat(clip, QUESTION, press=press, max_new_tokens=2)
    assert reply.selections[0].num_views == 2
    if expected is not None:
        # fed_tokens sizes the layout's 16-frame clip: per group, the same count as here.
        assert reply.visual_tokens[0] // 2 == expected // qwen.family.layout.groups()


def test_press_applied_takes_the_processor_s_clip(qwen):
    clip = make_clip(4, size=(448, 336), seed=50)
    reference = reference_inputs(qwen, [clip])
    groups, per_group = group_tokens(reference)
    with press_applied(qwen.model, qwen.processor, PruneSID(budget=64)) as applied:
        output = qwen.model.generate(**reference, max_new_tokens=6, do_sample=False)
    assert applied.visual_tokens == [groups * n_eff(per_group, 64)]
    text = qwen.processor.tokenizer.decode(output[0, reference["input_ids"].shape[1]:], skip_special_tokens=True)
    assert text == qwen.chat(clip, QUESTION, press=PruneSID(budget=64), max_new_tokens=6).text


def test_group_grids_and_labels(qwen):
    clip = make_clip(5, size=(448, 336), seed=60)
    encoded = qwen.encode(clip)
    reference = reference_inputs(qwen, [clip])
    _, rows, cols = (int(v) // 2 for v in reference["video_grid_thw"][0])
    assert [(g.rows, g.cols, g.label) for g in encoded.grids] == [(rows, cols, f"frames {2 * g + 1}-{2 * g + 2}") for g in range(3)]
