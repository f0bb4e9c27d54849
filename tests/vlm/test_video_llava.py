"""Video-LLaVA plumbing on the offline tiny-random-video-llava (real geometry: 8 frames of
224 px, 256 patches + CLS per frame): keeping everything reproduces the unmodified model,
and at N = 17 per frame the LLM receives exactly 8 x 17 video tokens, CLS then kept patches
of each frame, in clip order, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prunesid import PruneSID, load_vlm
from prunesid.video import load_video
from tests.conftest import scene
from tests.conftest import fed_to_language_model as _fed_to_language_model

CLIP = Path(__file__).resolve().parents[2] / "assets" / "clip.mp4"
QUESTION = "What happens in the clip?"
FRAMES, PATCHES = 8, 256
# Keeping every token: the video path feeds each frame's CLS, so the press passes it through;
# the image path strips it, so the press does not.
KEEP_ALL_VIDEO = PruneSID(budget=4096, keep_cls=True, order="spatial")
KEEP_ALL_IMAGE = PruneSID(budget=4096, keep_cls=False, order="spatial")


@pytest.fixture(scope="module")
def vlm():
    return load_vlm("tiny-random-video-llava")


@pytest.fixture(scope="module")
def clip():
    return load_video(CLIP)


def _reference_ids(vlm, content, counts: dict[str, int]) -> torch.Tensor:
    """The prompt as the unmodified model takes it: each placeholder repeated to the model's
    own count (2,056 per video, 256 per image), counted here independently of the library."""
    text = vlm.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    ids = torch.tensor(vlm.processor.tokenizer(text)["input_ids"])
    config = vlm.model.config
    repeats = torch.ones_like(ids)
    repeats[ids == config.video_token_id] = counts.get("video", 1)
    repeats[ids == config.image_token_id] = counts.get("image", 1)
    return torch.repeat_interleave(ids, repeats)[None]


def _text_after(vlm, generated, prompt_length) -> str:
    return vlm.processor.tokenizer.decode(generated[0, prompt_length:], skip_special_tokens=True)


def test_the_model_geometry_is_video_llavas(vlm, clip):
    encoded = vlm.encode(clip)
    assert vlm.family.num_frames == FRAMES and encoded.modality == "video"
    assert tuple(encoded.features.shape[:2]) == (FRAMES, PATCHES) and encoded.cls.shape[0] == FRAMES
    assert encoded.pixel_inputs["pixel_values_videos"].shape == (1, FRAMES, 3, 224, 224)
    assert [grid.label for grid in encoded.grids] == [f"frame {i}" for i in range(1, 9)]
    assert all((grid.rows, grid.cols) == (16, 16) for grid in encoded.grids)
    assert vlm.unmodified_visual_tokens(encoded) == FRAMES * (PATCHES + 1) == 2056


def test_keeping_every_token_of_a_video_equals_the_unmodified_model(vlm, clip):
    reference_ids = _reference_ids(vlm, [{"type": "video"}, {"type": "text", "text": QUESTION}], {"video": 2056})
    pixels = vlm.family.preprocess_video(list(clip.frames))["pixel_values_videos"]
    with torch.inference_mode():
        expected = vlm.model(input_ids=reference_ids, pixel_values_videos=pixels).logits
    for press in (KEEP_ALL_VIDEO, None):
        prepared = vlm.prepare(clip, QUESTION, press)
        assert torch.equal(prepared.input_ids, reference_ids)
        assert prepared.visual_tokens == [2056]
        with torch.inference_mode():
            logits = vlm.model(input_ids=prepared.input_ids, **prepared.model_inputs).logits
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)

    generated = vlm.model.generate(input_ids=reference_ids, pixel_values_videos=pixels, max_new_tokens=12, do_sample=False)
    expected_text = _text_after(vlm, generated, reference_ids.shape[1])
    assert vlm.chat(CLIP, QUESTION, press=KEEP_ALL_VIDEO, max_new_tokens=12).text == expected_text


def test_keeping_every_token_of_an_image_equals_the_unmodified_model(vlm):
    image = scene(640, 480, seed=3)
    reference_ids = _reference_ids(vlm, [{"type": "image"}, {"type": "text", "text": QUESTION}], {"image": 256})
    pixels = vlm.family.preprocess(image)["pixel_values"]
    with torch.inference_mode():
        expected = vlm.model(input_ids=reference_ids, pixel_values=pixels).logits
    for press in (KEEP_ALL_IMAGE, None):
        prepared = vlm.prepare(image, QUESTION, press)
        assert torch.equal(prepared.input_ids, reference_ids) and prepared.visual_tokens == [256]
        with torch.inference_mode():
            logits = vlm.model(input_ids=prepared.input_ids, **prepared.model_inputs).logits
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
    generated = vlm.model.generate(input_ids=reference_ids, pixel_values=pixels, max_new_tokens=10, do_sample=False)
    assert vlm.chat(image, QUESTION, press=KEEP_ALL_IMAGE, max_new_tokens=10).text == _text_after(vlm, generated, reference_ids.shape[1])


def test_an_image_and_a_video_each_reach_their_own_placeholders(vlm, clip):
    """The prompt names the image first, the inputs list the clip first: each modality's
    k-th placeholder takes that modality's k-th input, as the model scatters them."""
    image = scene(500, 400, seed=4)
    content = [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "Compare them."}]
    reference_ids = _reference_ids(vlm, content, {"image": 256, "video": 2056})
    pixels = vlm.family.preprocess(image)["pixel_values"]
    video_pixels = vlm.family.preprocess_video(list(clip.frames))["pixel_values_videos"]
    with torch.inference_mode():
        expected = vlm.model(input_ids=reference_ids, pixel_values=pixels, pixel_values_videos=video_pixels).logits
    messages = [{"role": "user", "content": content}]
    prepared = vlm.prepare([clip, image], messages, None)
    assert torch.equal(prepared.input_ids, reference_ids)
    assert prepared.visual_tokens == [2056, 256]
    with torch.inference_mode():
        logits = vlm.model(input_ids=prepared.input_ids, **prepared.model_inputs).logits
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
    # Compressed, each keeps its own count: 8 x 17 for the clip, 17 for the image.
    compressed = vlm.prepare([clip, image], messages, PruneSID(budget=17))
    assert compressed.visual_tokens == [136, 17]
    ids = compressed.input_ids[0]
    assert int((ids == vlm.model.config.video_token_id).sum()) == 136
    assert int((ids == vlm.model.config.image_token_id).sum()) == 17




def test_budget_17_feeds_exactly_8_x_17_video_tokens_cls_then_kept_patches_per_frame(vlm, clip):
    press = PruneSID(budget=17)
    embeds, reply = _fed_to_language_model(vlm, lambda: vlm.chat(clip, QUESTION, press=press, max_new_tokens=2))
    assert reply.visual_tokens == [FRAMES * 17] == [136]
    prepared = vlm.prepare(clip, QUESTION, press)
    ids = prepared.input_ids[0]
    video_positions = (ids == vlm.model.config.video_token_id).nonzero().flatten()
    # One contiguous run of 136 and the prompt's text around it untouched: the packing adds
    # no separator, newline or other token of its own.
    assert video_positions.numel() == 136 and bool((video_positions.diff() == 1).all())
    reference_ids = _reference_ids(vlm, [{"type": "video"}, {"type": "text", "text": QUESTION}], {"video": 1})
    assert torch.equal(torch.cat([ids[:video_positions[0]], ids[video_positions[0] + 135:]]), reference_ids[0])

    selection = reply.selections[0]
    encoded = vlm.encode(clip)
    assert selection.num_views == FRAMES and selection.reserved == 1
    assert [index.numel() for index in selection.indices] == [16] * FRAMES
    assert selection.budget.tolist() == [17] * FRAMES
    # Each frame's importance is its own CLS attention.
    torch.testing.assert_close(selection.scores, encoded.importance.float())
    projector = vlm.model.model.multi_modal_projector
    with torch.inference_mode():
        wanted = torch.cat([
            projector(torch.cat([encoded.cls[f:f + 1], encoded.features[f, selection.indices[f]]])[None])[0]
            for f in range(FRAMES)
        ])
    torch.testing.assert_close(embeds[0, video_positions], wanted, rtol=1e-5, atol=1e-6)


def test_each_fed_token_knows_its_place_in_the_unmodified_video_run(vlm, clip):
    """Frame v starts at v x (CLS + 256) in the unmodified run: what a position-aware layout
    reads (the origin of every token fed), for the full clip and for a compressed one."""
    encoded = vlm.encode(clip)
    assert torch.equal(vlm.visual_run(encoded, None).origin, torch.arange(FRAMES * (PATCHES + 1)))
    selection = vlm.compress(encoded, PruneSID(budget=17))[0]
    wanted = torch.cat([
        torch.cat([torch.tensor([frame * (PATCHES + 1)]), frame * (PATCHES + 1) + 1 + selection.indices[frame].cpu()])
        for frame in range(FRAMES)
    ])
    assert torch.equal(vlm.visual_run(encoded, selection).origin, wanted)


def test_video_importance_is_each_frames_cls_attention_in_the_video_tower(vlm, clip):
    encoded = vlm.encode(clip)
    tower = vlm.family.video_tower
    previous = tower.config._attn_implementation
    tower.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            out = tower(encoded.pixel_inputs["pixel_values_videos"][0], output_attentions=True, output_hidden_states=True)
    finally:
        tower.set_attn_implementation(previous)
    layer = vlm.family.feature_layer % len(out.hidden_states) - 1
    torch.testing.assert_close(encoded.importance, out.attentions[layer][:, :, 0, 1:].sum(dim=1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(encoded.cls, out.hidden_states[vlm.family.feature_layer][:, 0])


def test_dynamic_budget_spreads_8_x_17_over_the_frames_by_their_information(vlm, clip):
    reply = vlm.chat(clip, QUESTION, press=PruneSID(budget=17, dynamic=True), max_new_tokens=1)
    selection = reply.selections[0]
    budgets = selection.budget.tolist()
    assert sum(budgets) == 136 and reply.visual_tokens == [136]
    assert len(set(budgets)) > 1  # the clip's two scenes carry different information
    phi = selection.phi.double()
    assert (torch.tensor(budgets, dtype=torch.float64) - 136 * phi / phi.sum()).abs().max() < 1.0
    assert [selection.to_dict(f)["budget"] for f in range(FRAMES)] == budgets
    assert [index.numel() + 1 for index in selection.indices] == budgets


def test_a_clip_is_encoded_once_whether_given_as_file_bytes_or_loaded(vlm):
    calls = []
    hook = vlm.family.video_tower.register_forward_hook(lambda *args: calls.append(1))
    try:
        vlm._encoded.clear()
        first = vlm.encode(str(CLIP))
        assert vlm.encode(CLIP.read_bytes()) is first
        assert vlm.encode(load_video(CLIP)) is first
        vlm.chat(CLIP, QUESTION, press=PruneSID(budget=17), max_new_tokens=1)
    finally:
        hook.remove()
    assert len(calls) == 1


def test_video_mistakes_are_named(vlm, clip, tmp_path):
    images_only = load_vlm("tiny-random")
    with pytest.raises(ValueError, match="takes images only; a video needs a video model"):
        images_only.chat(clip, QUESTION, press=PruneSID(budget=17))
    with pytest.raises(ValueError, match="holds 0 video placeholders but 1 videos were given"):
        vlm.prepare(clip, [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}], None)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(CLIP.read_bytes()[:5000])
    with pytest.raises(ValueError, match="broken.mp4"):
        vlm.chat(broken, QUESTION, press=PruneSID(budget=17))
