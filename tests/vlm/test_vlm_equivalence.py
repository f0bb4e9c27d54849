"""The plumbing is right: keeping every token reproduces the unmodified model exactly, and a
press changes exactly what the language model is fed."""

from __future__ import annotations

import pytest
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from prunesid import PruneSID
from prunesid.vlm import wrap
from tests.conftest import scene
from tests.conftest import fed_to_language_model as _fed_to_language_model

KEEP_ALL = PruneSID(budget=4096, keep_cls=False, order="spatial")
QUESTION = "What is in the picture?"


def _reference_inputs(vlm, image):
    text = vlm.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}], add_generation_prompt=True
    )
    return vlm.processor(images=image, text=text, return_tensors="pt")


def _model_packing(vlm):
    """The VLM itself, or for LLaVA-NeXT the same model with newlines="rows": the layout
    whose compressed runs keep the model's newline after every row (the default "authors"
    layout feeds none, so keeping every patch there is not the unmodified input)."""
    if vlm.model.config.model_type != "llava_next":
        return vlm
    return wrap(vlm.model, vlm.processor, name=vlm.name, newlines="rows")


def _logits_with(vlm, image, press):
    prepared = vlm.prepare(image, QUESTION, press)
    with torch.inference_mode():
        return prepared, vlm.model(
            input_ids=prepared.input_ids,
            attention_mask=torch.ones_like(prepared.input_ids),
            mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=[run.embeds for run in prepared.runs])},
        ).logits


@pytest.mark.parametrize("fixture", ["tiny_vlm", "tiny_next_vlm"])
@pytest.mark.parametrize("size", [(640, 480), (300, 700)])
def test_keeping_every_patch_equals_the_unmodified_model(request, fixture, size):
    vlm = request.getfixturevalue(fixture)
    image = scene(*size)
    reference = _reference_inputs(vlm, image)
    with torch.inference_mode():
        expected = vlm.model(**reference).logits
    for press in (KEEP_ALL, None):
        prepared, logits = _logits_with(_model_packing(vlm) if press is not None else vlm, image, press)
        assert torch.equal(prepared.input_ids, reference["input_ids"])
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)

    generated = vlm.model.generate(**reference, max_new_tokens=12, do_sample=False)
    expected_text = vlm.processor.tokenizer.decode(generated[0, reference["input_ids"].shape[1]:], skip_special_tokens=True)
    assert _model_packing(vlm).chat(image, QUESTION, press=KEEP_ALL, max_new_tokens=12).text == expected_text




def test_budget_64_feeds_exactly_64_visual_tokens(tiny_vlm, picture):
    press = PruneSID(budget=64)
    embeds, reply = _fed_to_language_model(tiny_vlm, lambda: tiny_vlm.chat(picture, QUESTION, press=press, max_new_tokens=2))
    prepared = tiny_vlm.prepare(picture, QUESTION, press)
    image_positions = prepared.input_ids[0] == tiny_vlm.placeholder_token_id
    assert int(image_positions.sum()) == 64 and reply.visual_tokens == [64]
    encoded = tiny_vlm.encode(picture)
    selection = reply.selections[0]
    projector = tiny_vlm.model.model.multi_modal_projector
    with torch.inference_mode():
        # CLS first, then the selected patches in reference order: exactly what the LLM got.
        wanted = projector(torch.cat([encoded.cls[:1], encoded.features[0, selection.indices[0]]])[None])[0]
    torch.testing.assert_close(embeds[0, image_positions], wanted, rtol=1e-5, atol=1e-6)
    assert selection.indices[0].numel() == 63 and selection.reserved == 1


def test_next_tiles_use_the_per_view_budget_and_both_newline_layouts(tiny_next_vlm):
    image = scene(640, 480)
    press = PruneSID(budget=32)
    reply = tiny_next_vlm.chat(image, QUESTION, press=press, max_new_tokens=1)
    selection = reply.selections[0]
    encoded = tiny_next_vlm.encode(image)
    assert selection.num_views == encoded.num_views == 5
    assert [index.numel() for index in selection.indices] == [32] * 5
    # Rebuild the packing independently: the kept tiles on the big grid, unpadded.
    from transformers.models.llava_next.modeling_llava_next import unpad_image

    mask = torch.zeros(2 * 24, 2 * 24, dtype=torch.bool)
    for tile, index in enumerate(selection.indices[1:]):
        tile_mask = torch.zeros(576, dtype=torch.bool)
        tile_mask[index] = True
        row, col = divmod(tile, 2)
        mask[row * 24:(row + 1) * 24, col * 24:(col + 1) * 24] = tile_mask.view(24, 24)
    visible = unpad_image(mask[None], [480, 640])[0]
    # "authors" (the default): no newline at all, exactly views x N.
    assert reply.visual_tokens == [5 * 32] == [32 + int(visible.sum())]
    # "rows": one newline after every row of the unpadded grid, kept tokens or not, each
    # right after its row's kept tokens.
    rows = _model_packing(tiny_next_vlm)
    run = rows.visual_run(encoded, selection)
    newline = rows.model.model.image_newline
    is_newline = (run.embeds == newline).all(dim=1)
    assert run.embeds.shape[0] == 5 * 32 + visible.shape[0] == rows.fed_tokens(image.size, press)
    assert int(is_newline.sum()) == visible.shape[0] and not bool(visible.all(dim=1).any())
    per_row = visible.sum(dim=1)
    tile_part = is_newline[32:]
    newline_at = tile_part.nonzero().flatten()
    assert torch.equal(newline_at, per_row.cumsum(0) + torch.arange(visible.shape[0]))
    # Selection ran among the unpadded patches only: no kept token is lost to the padding,
    # and the padded patches took no part (group -1).
    assert int(visible.sum()) == 4 * 32
    padded = ~encoded.valid
    assert padded[1:].any() and (selection.groups[padded] == -1).all() and (selection.groups[~padded] >= 0).all()


def test_next_newlines_option_is_checked(tiny_next_vlm, tiny_vlm):
    with pytest.raises(ValueError, match=r"newlines must be one of \['authors', 'rows'\].*got 'none'"):
        wrap(tiny_next_vlm.model, tiny_next_vlm.processor, name="next", newlines="none")
    with pytest.raises(ValueError, match="newlines applies only to LLaVA-NeXT models and LLaVA-OneVision models"):
        wrap(tiny_vlm.model, tiny_vlm.processor, name="llava", newlines="rows")


def test_dynamic_budget_splits_a_batch_of_images_unequally(tiny_vlm):
    first, second = scene(640, 480, seed=1), scene(640, 480, seed=2)
    reply = tiny_vlm.chat([first, second], "Compare the two pictures.", press=PruneSID(budget=64, dynamic=True), max_new_tokens=2)
    budgets = [int(selection.budget[0]) for selection in reply.selections]
    assert not any(bool(selection.budget_clamped[0]) for selection in reply.selections)
    assert sum(budgets) == 128 and budgets[0] != budgets[1]
    assert reply.visual_tokens == budgets
    phis = [float(selection.phi[0]) for selection in reply.selections]
    assert (budgets[0] > budgets[1]) == (phis[0] > phis[1])


def test_cls_attention_from_q_k_equals_eager_attention_weights(tiny_vlm, picture):
    encoded = tiny_vlm.encode(picture)
    tower = tiny_vlm.family.vision_tower
    previous = tower.config._attn_implementation
    tower.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            out = tower(encoded.pixel_inputs["pixel_values"], output_attentions=True, output_hidden_states=True)
    finally:
        tower.set_attn_implementation(previous)
    layer = tiny_vlm.family.feature_layer % len(out.hidden_states) - 1  # the layer whose output is the feature layer
    eager_row = out.attentions[layer][:, :, 0, 1:].sum(dim=1)
    torch.testing.assert_close(encoded.importance, eager_row, rtol=1e-5, atol=1e-6)
    assert tower.config._attn_implementation == previous


def test_follow_up_questions_reuse_the_encoded_image(tiny_vlm):
    image = scene(500, 400, seed=7)
    calls = []
    hook = tiny_vlm.family.vision_tower.register_forward_hook(lambda *args: calls.append(1))
    try:
        first = tiny_vlm.chat(image, "What is this?", press=PruneSID(budget=64), max_new_tokens=3)
        history = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": first.text}]},
            {"role": "user", "content": [{"type": "text", "text": "And the colours?"}]},
        ]
        second = tiny_vlm.chat(image, history, press=PruneSID(budget=64), max_new_tokens=3)
    finally:
        hook.remove()
    assert len(calls) == 1
    assert second.prompt_tokens > first.prompt_tokens
    assert second.selections[0] is first.selections[0]


def test_stream_yields_the_same_text_as_chat(tiny_vlm, picture):
    press = PruneSID(budget=32)
    stream = tiny_vlm.stream(picture, QUESTION, press=press, max_new_tokens=10)
    pieces = list(stream)
    assert "".join(pieces) == stream.reply.text == tiny_vlm.chat(picture, QUESTION, press=press, max_new_tokens=10).text
    assert set(stream.reply.timings) >= {"vision_ms", "select_ms", "prefill_ms", "decode_ms"}


def test_builtins_are_identical_on_every_load():
    from prunesid import load_vlm

    first, second = load_vlm("tiny-random"), load_vlm("tiny-random")
    for (name, a), (_, b) in zip(first.model.state_dict().items(), second.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_file_is_recognised_by_its_bytes_before_decoding(tiny_vlm, tmp_path, monkeypatch):
    path = tmp_path / "photo.png"
    scene(420, 300, seed=9).save(path)
    first = tiny_vlm.encode(str(path))
    import prunesid.vlm.model as model_module

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached file was decoded again")

    monkeypatch.setattr(model_module, "load_image", no_decoding)
    assert tiny_vlm.encode(str(path)) is first
    assert tiny_vlm.encode(path.read_bytes()) is first
