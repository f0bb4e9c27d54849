"""press_applied: a press on a transformers model object the user loaded themselves.

Inside the block the model's own ``generate`` / ``forward`` calls, fed by the processor's
output, give the language model N visual tokens (the same inputs as ``VLM.prepare``); after
the block, left normally or by an exception, the instance is exactly as before: nothing on
the class, nothing left on the instance, the same logits.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlavaForConditionalGeneration

from prunesid import PruneSID, load_vlm, press_applied
from tests.conftest import fed_to_language_model, scene

QUESTION = "What is in the picture?"
BUDGET = 64


@pytest.fixture(scope="module")
def llava():
    """A plain tiny LlavaForConditionalGeneration and its processor (the VLM only for comparison)."""
    vlm = load_vlm("tiny-random")
    assert type(vlm.model) is LlavaForConditionalGeneration
    return vlm


def _inputs(vlm, image):
    text = vlm.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}], add_generation_prompt=True
    )
    return vlm.processor(images=image, text=text, return_tensors="pt")


def _logits(model, inputs):
    with torch.inference_mode():
        return model(**inputs).logits


def _untouched(model) -> bool:
    return "generate" not in model.__dict__ and "forward" not in model.__dict__


def test_the_block_feeds_n_tokens_and_leaves_the_model_as_it_was(llava):
    model, processor = llava.model, llava.processor
    image = scene(640, 480, seed=21)
    inputs = _inputs(llava, image)
    before = _logits(model, inputs)
    press = PruneSID(budget=BUDGET)
    text_tokens = inputs["input_ids"].shape[1] - 576
    with press_applied(model, processor, press) as applied:
        embeds, logits = fed_to_language_model(llava, lambda: _logits(model, inputs))
        assert applied.visual_tokens == [BUDGET]
        assert embeds.shape[1] == logits.shape[1] == text_tokens + BUDGET
        # The same inputs as the library's own path.
        prepared = llava.prepare(image, QUESTION, press)
        with torch.inference_mode():
            expected = type(model).forward(model, input_ids=prepared.input_ids, **prepared.model_inputs).logits
        torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)
        generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        assert torch.equal(generated[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])  # the caller's prompt comes back
        answer = processor.tokenizer.decode(generated[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        assert answer == llava.chat(image, QUESTION, press=press, max_new_tokens=4).text
    assert _untouched(model)
    assert torch.equal(_logits(model, inputs), before)


def test_an_exception_inside_the_block_still_removes_the_press(llava):
    model, processor = llava.model, llava.processor
    inputs = _inputs(llava, scene(500, 400, seed=22))
    before = _logits(model, inputs)
    with pytest.raises(RuntimeError, match="inside the block"):
        with press_applied(model, processor, PruneSID(budget=16)):
            assert _logits(model, inputs).shape[1] == inputs["input_ids"].shape[1] - 576 + 16
            raise RuntimeError("inside the block")
    assert _untouched(model)
    assert torch.equal(_logits(model, inputs), before)


def test_only_the_instance_is_pressed(llava):
    """No class is patched: another instance of the same class runs unmodified meanwhile."""
    other = load_vlm("tiny-random")
    inputs = _inputs(llava, scene(320, 240, seed=23))
    expected = _logits(other.model, inputs)
    with press_applied(llava.model, llava.processor, PruneSID(budget=16)):
        assert torch.equal(_logits(other.model, inputs), expected)
        assert _untouched(other.model)
    assert LlavaForConditionalGeneration.generate is type(other.model).generate


def test_next_tiles_get_views_times_n(tiny_next_vlm):
    vlm = tiny_next_vlm
    image = scene(640, 480, seed=24)
    inputs = _inputs(vlm, image)
    full = int((inputs["input_ids"] == vlm.placeholder_token_id).sum())
    with press_applied(vlm.model, vlm.processor, PruneSID(budget=32)) as applied:
        logits = _logits(vlm.model, inputs)
    assert applied.visual_tokens == [5 * 32] == [vlm.fed_tokens(image.size, PruneSID(budget=32))]
    assert logits.shape[1] == inputs["input_ids"].shape[1] - full + 5 * 32
    assert _untouched(vlm.model)


@pytest.mark.parametrize("name", ["tiny-random-qwen2-vl", "tiny-random-qwen3-vl", "tiny-random-video-llava"])
def test_other_families_answer_as_the_library_does(name):
    vlm = load_vlm(name)
    image = scene(448, 336, seed=25)
    inputs = _inputs(vlm, image)
    before = _logits(vlm.model, inputs)
    press = PruneSID(budget=64)
    with press_applied(vlm.model, vlm.processor, press) as applied:
        generated = vlm.model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert applied.visual_tokens == [vlm.fed_tokens(image.size, press)]
    answer = vlm.processor.tokenizer.decode(generated[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert answer == vlm.chat(image, QUESTION, press=press, max_new_tokens=3).text
    assert _untouched(vlm.model) and torch.equal(_logits(vlm.model, inputs), before)


def test_mistakes_are_named(llava):
    with pytest.raises(TypeError, match="press must be a prunesid press"):
        with press_applied(llava.model, llava.processor, "prunesid"):
            pass
    with pytest.raises(ValueError, match="model type 'bert' is not supported by press_applied"):
        with press_applied(_Bert(), llava.processor, PruneSID(budget=16)):
            pass
    assert _untouched(llava.model)


class _Bert(torch.nn.Module):
    class config:  # noqa: N801  (stands in for a transformers config)
        model_type = "bert"


def test_the_examples_of_docs_models_run(capsys):
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "models.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "docs/models.md", "exec"), {})
    assert capsys.readouterr().out.split() == ["320", "2340", "[64]"]
