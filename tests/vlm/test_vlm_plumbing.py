"""What the VLM hands to the press and to the language model, checked value by value:
the importance is the CLS attention, each image's placeholder run carries its own features,
views share one dynamic phi_ref, the CLS follows vision_feature_select_strategy, and the
compression ratio is measured against what the unmodified model feeds."""

from __future__ import annotations

import pytest
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from prunesid import PruneSID, select
from prunesid.vlm import wrap
from prunesid.families.llava.builtins import build_tiny_llava
from tests.conftest import scene

QUESTION = "What is in the picture?"


def _prompt(vlm, images: int = 1) -> str:
    content = [{"type": "image"}] * images + [{"type": "text", "text": QUESTION}]
    return vlm.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)


def test_the_press_gets_the_cls_attention_as_importance(tiny_vlm, picture):
    encoded = tiny_vlm.encode(picture)
    assert encoded.importance is not None
    selection = tiny_vlm.compress(encoded, PruneSID(budget=48))[0]
    torch.testing.assert_close(selection.scores, encoded.importance, rtol=0, atol=0)
    expected = select(encoded.features, 48, importance=encoded.importance, reserved=1)
    assert torch.equal(selection.indices[0], expected.indices[0])


def test_each_image_of_a_batch_gets_its_own_run_of_features(tiny_vlm):
    first, second = scene(640, 480, seed=11), scene(480, 640, seed=12)
    press = PruneSID(budget=64, dynamic=True)
    prepared = tiny_vlm.prepare([first, second], "Compare them.", press)
    counts = prepared.visual_tokens
    assert counts[0] != counts[1], "the dynamic budget should split the two images unequally"
    captured = []
    hook = tiny_vlm.model.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: captured.append(kwargs["inputs_embeds"].detach().clone()), with_kwargs=True
    )
    try:
        with torch.inference_mode():
            tiny_vlm.model(input_ids=prepared.input_ids, attention_mask=torch.ones_like(prepared.input_ids), **prepared.model_inputs)
    finally:
        hook.remove()
    # The runs as the tokenised prompt holds them: maximal blocks of consecutive placeholders.
    positions = (prepared.input_ids[0] == tiny_vlm.placeholder_token_id).nonzero().flatten()
    breaks = ((positions[1:] - positions[:-1]) > 1).nonzero().flatten() + 1
    runs = torch.tensor_split(positions, breaks)
    assert len(runs) == 2
    for run, image, selection in zip(runs, (first, second), prepared.compressions):
        assert run.numel() == int(selection.budget[0])
        wanted = tiny_vlm.visual_features(tiny_vlm.encode(image), selection)
        torch.testing.assert_close(captured[0][0, run], wanted, rtol=1e-5, atol=1e-6)


def test_next_views_share_one_dynamic_phi_ref(tiny_next_vlm):
    encoded = tiny_next_vlm.encode(scene(700, 300, seed=3))  # letterboxed tiles: views differ in valid counts
    assert len({int(v.sum()) for v in encoded.valid}) > 1
    selection = tiny_next_vlm.compress(encoded, PruneSID(budget=32, dynamic=True))[0]
    phis = encoded.information()
    assert selection.phi_ref == pytest.approx(sum(phis) / len(phis), rel=1e-5)
    budgets = selection.requested_budget.tolist()
    expected = [round(32 * phi / selection.phi_ref) for phi in phis]
    assert all(abs(b - e) <= 1 for b, e in zip(budgets, expected))
    assert sum(budgets) == 32 * encoded.num_views
    assert [index.numel() for index in selection.indices] == budgets


@pytest.mark.parametrize("fixture, size", [("tiny_vlm", (640, 480)), ("tiny_next_vlm", (640, 480)), ("tiny_next_vlm", (300, 700))])
def test_compression_is_measured_against_what_the_unmodified_model_feeds(request, fixture, size):
    vlm = request.getfixturevalue(fixture)
    image = scene(*size)
    inputs = vlm.processor(images=image, text=_prompt(vlm), return_tensors="pt")
    fed_by_model = int((inputs["input_ids"] == vlm.placeholder_token_id).sum())
    assert vlm.unmodified_visual_tokens(vlm.encode(image)) == fed_by_model
    if fixture == "tiny_next_vlm" and size == (640, 480):
        assert fed_by_model == 2340  # 576 base + 2 x 2 tiles unpadded to 36 x 48, + 36 newlines


@pytest.fixture(scope="module")
def full_strategy_vlm():
    """A CLIP-tower LLaVA configured with vision_feature_select_strategy="full": the unmodified
    model feeds the CLS with the patches (577 tokens)."""
    model, processor = build_tiny_llava()
    model.config.vision_feature_select_strategy = "full"
    processor.vision_feature_select_strategy = "full"
    return wrap(model, processor, name="tiny-random-full")


def test_full_strategy_feeds_the_cls_like_the_unmodified_model(full_strategy_vlm):
    vlm = full_strategy_vlm
    image = scene(640, 480)
    reference = vlm.processor(images=image, text=_prompt(vlm), return_tensors="pt")
    assert int((reference["input_ids"] == vlm.placeholder_token_id).sum()) == 577
    with torch.inference_mode():
        expected = vlm.model(**reference).logits
    keep_all = PruneSID(budget=4096, keep_cls=True, order="spatial")
    for press in (None, keep_all):
        prepared = vlm.prepare(image, QUESTION, press)
        assert prepared.visual_tokens == [577]
        assert torch.equal(prepared.input_ids, reference["input_ids"])
        with torch.inference_mode():
            logits = vlm.model(input_ids=prepared.input_ids, attention_mask=torch.ones_like(prepared.input_ids), **prepared.model_inputs).logits
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
    run = vlm.visual_run(vlm.encode(image), None)
    assert torch.equal(run.origin, torch.arange(577))
    # A press that drops the CLS under "full" feeds only patches.
    assert vlm.prepare(image, QUESTION, PruneSID(budget=64, keep_cls=False)).visual_tokens == [64]


def test_default_strategy_feeds_no_cls_without_a_press(tiny_vlm, picture):
    run = tiny_vlm.visual_run(tiny_vlm.encode(picture), None)
    assert run.embeds.shape[0] == 576 and torch.equal(run.origin, torch.arange(576))


@pytest.mark.parametrize("fixture", ["tiny_vlm", "tiny_next_vlm"])
def test_origins_of_kept_tokens_point_at_the_same_embeddings_in_the_unmodified_run(request, fixture):
    vlm = request.getfixturevalue(fixture)
    encoded = vlm.encode(scene(500, 400, seed=4))
    full = vlm.visual_run(encoded, None)
    pruned = vlm.visual_run(encoded, vlm.compress(encoded, PruneSID(budget=40, keep_cls=False))[0])
    assert (pruned.origin >= 0).all() and pruned.origin.unique().numel() == pruned.origin.numel()
    torch.testing.assert_close(pruned.embeds, full.embeds[pruned.origin], rtol=1e-5, atol=1e-6)
