"""One contract for every registered press on every built-in model (the kvpress habit): a
new method or a new family is covered by adding it, not by writing new tests.

- the language model receives exactly the tokens the budget says (per view: the reserved
  CLS, the kept tokens, the merged ones; LLaVA-NeXT adds no newline under its default
  "authors" layout, one per unpadded row under "rows");
- a press that keeps everything gives the unmodified model's logits;
- a batch of two images gives each image what it gets alone;
- bad settings fail when the press is built, naming the field;
- every press is a frozen, hashable dataclass whose docstring explains every field.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from prunesid import PRESSES, presets
from prunesid.vlm import BUILTIN_MODELS, wrap
from tests.conftest import scene

QUESTION = "What is in the picture?"
BUDGET = 32
# Presses that choose by the CLS token's attention (as they declare): on towers without one they must refuse.
NEEDS_CLS_ATTENTION = {name for name, cls in PRESSES.items() if "cls_attention" in cls.info.requires}
assert "visionzip" in NEEDS_CLS_ATTENTION  # the declaration this file relies on
FIXTURES = {"tiny-random": "tiny_vlm", "tiny-random-next": "tiny_next_vlm"}


@functools.lru_cache(maxsize=None)
def _load(name):
    from prunesid import load_vlm

    return load_vlm(name)


def _vlm(request, name):
    """The session fixture where conftest has one (shared with the other test files)."""
    return request.getfixturevalue(FIXTURES[name]) if name in FIXTURES else _load(name)


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def keep_everything(cls):
    """A press of ``cls`` that keeps every token, in position order, with no CLS added."""
    settings = {"budget": 100_000}
    if "keep_cls" in _fields(cls):
        settings["keep_cls"] = False
    if "order" in _fields(cls):
        settings["order"] = "spatial"
    return cls(**settings)


def _refuses(vlm, encoded, cls) -> bool:
    return cls.name in NEEDS_CLS_ATTENTION and encoded.importance is None


def _expected_count(vlm, encoded, result) -> int:
    """Visual tokens the LLM should receive for one image, rebuilt from the result alone."""
    merged = result.merged or [torch.zeros(0)] * result.num_views
    # reserved counts per view (every view's CLS), as the layouts place it.
    count = result.reserved * result.num_views + sum(int(i.numel()) + int(m.shape[0]) for i, m in zip(result.indices, merged))
    if vlm.model.config.model_type == "llava_next":
        # No image_newline under the "authors" layout, one per row of the unpadded tile mosaic under "rows".
        from transformers.image_processing_utils import select_best_resolution
        from transformers.models.llava_next.modeling_llava_next import unpad_image

        size_hw = encoded.pixel_inputs["image_sizes"][0].tolist()
        best_h, best_w = select_best_resolution(size_hw, vlm.model.config.image_grid_pinpoints)
        side = encoded.grids[0].rows
        tile_cols = best_w // (side * vlm.model.config.vision_config.patch_size)
        mask = torch.zeros(best_h // 14, best_w // 14, dtype=torch.bool)
        for tile, index in enumerate(result.indices[1:]):
            tile_mask = torch.zeros(side * side, dtype=torch.bool)
            tile_mask[index.cpu()] = True
            row, col = divmod(tile, tile_cols)
            mask[row * side:(row + 1) * side, col * side:(col + 1) * side] = tile_mask.view(side, side)
        visible = unpad_image(mask[None], size_hw)[0]
        assert int(visible.sum()) == sum(int(i.numel()) for i in result.indices[1:]), "a kept tile token fell in the padding"
        count += visible.shape[0] if vlm.family.layout.newlines == "rows" else 0
    else:  # tokens a layout feeds besides the views' own, set by the image size (LLaVA-OneVision's row newlines)
        count += vlm.family.layout.extra_tokens(encoded.image_size, encoded.modality)
    return count


def _logits(vlm, image, press):
    prepared = vlm.prepare(image, QUESTION, press)
    with torch.inference_mode():
        logits = vlm.model(
            input_ids=prepared.input_ids, attention_mask=torch.ones_like(prepared.input_ids), **prepared.model_inputs
        ).logits
    return prepared, logits


PRESS_NAMES = sorted(PRESSES)


@pytest.mark.parametrize("model", BUILTIN_MODELS)
@pytest.mark.parametrize("name", PRESS_NAMES)
def test_the_language_model_receives_exactly_the_budget(request, model, name):
    vlm = _vlm(request, model)
    cls = PRESSES[name]
    press = cls(budget=BUDGET)
    image = scene(640, 480, seed=3)
    encoded = vlm.encode(image)
    if _refuses(vlm, encoded, cls):
        with pytest.raises(ValueError, match="CLS"):
            vlm.chat(image, QUESTION, press=press, max_new_tokens=1)
        return
    reply = vlm.chat(image, QUESTION, press=press, max_new_tokens=1)  # the model's own count check runs here
    result = reply.selections[0]
    # Per view: exactly budget - reserved tokens kept or merged (all of them if fewer are selectable).
    reserved = int(bool(getattr(press, "keep_cls", False)) and vlm.family.cls_slot and encoded.cls is not None)
    assert result.reserved == reserved
    policy = presets.get_preset(vlm.family.preset)
    valid = encoded.valid if encoded.valid is not None else torch.ones(encoded.features.shape[:2], dtype=torch.bool)
    merged = result.merged or [torch.zeros(0)] * result.num_views
    for view, (index, extra) in enumerate(zip(result.indices, merged)):
        selectable = int(valid[view].sum())
        wanted = min(policy.effective_budget(BUDGET, selectable) - reserved, selectable)
        assert int(index.numel()) + int(extra.shape[0]) == wanted, f"view {view}"
        assert bool(valid[view, index.cpu()].all()), "kept a token that may not be kept"
        assert index.unique().numel() == index.numel(), "kept a token twice"
    prepared = vlm.prepare(image, QUESTION, press)
    placeholders = int((prepared.input_ids[0] == vlm.placeholder_token_id).sum())
    assert placeholders == reply.visual_tokens[0] == _expected_count(vlm, encoded, result)


@pytest.mark.parametrize("model", BUILTIN_MODELS)
@pytest.mark.parametrize("name", PRESS_NAMES)
def test_keeping_everything_equals_the_unmodified_model(request, model, name):
    vlm = _vlm(request, model)
    cls = PRESSES[name]
    image = scene(500, 400, seed=5)
    if _refuses(vlm, vlm.encode(image), cls):
        pytest.skip(f"{name} needs CLS attention, which {model}'s tower has not (the refusal is tested above)")
    reference, expected = _logits(vlm, image, None)
    if vlm.model.config.model_type == "llava_next":  # the layout that keeps the model's newlines
        vlm = wrap(vlm.model, vlm.processor, name=vlm.name, newlines="rows")
    prepared, logits = _logits(vlm, image, keep_everything(cls))
    assert torch.equal(prepared.input_ids, reference.input_ids)
    assert prepared.compressions[0].merged is None or all(m.shape[0] == 0 for m in prepared.compressions[0].merged)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", BUILTIN_MODELS)
@pytest.mark.parametrize("name", PRESS_NAMES)
def test_a_batch_of_two_images_gives_each_what_it_gets_alone(request, model, name):
    vlm = _vlm(request, model)
    cls = PRESSES[name]
    press = cls(budget=BUDGET)
    first, second = scene(640, 480, seed=11), scene(300, 700, seed=12)
    if _refuses(vlm, vlm.encode(first), cls):
        pytest.skip(f"{name} needs CLS attention, which {model}'s tower has not")
    reply = vlm.chat([first, second], "Compare the two pictures.", press=press, max_new_tokens=1)
    assert len(reply.selections) == 2
    for image, together in zip((first, second), reply.selections):
        encoded = vlm.encode(image)
        alone = press.compress(vlm.vision_tokens([encoded]))
        assert together.num_views == encoded.num_views
        for mine, single in zip(together.indices, alone.indices):
            assert torch.equal(mine.cpu(), single.cpu())
        if alone.merged is not None:
            for mine, single in zip(together.merged, alone.merged):
                torch.testing.assert_close(mine, single, rtol=1e-5, atol=1e-6)
    assert reply.visual_tokens == [_expected_count(vlm, vlm.encode(i), r) for i, r in zip((first, second), reply.selections)]
    prepared = vlm.prepare([first, second], "Compare the two pictures.", press)
    assert int((prepared.input_ids[0] == vlm.placeholder_token_id).sum()) == sum(reply.visual_tokens)


# --- settings -------------------------------------------------------------------------

BAD_FOR_EVERY_PRESS = [({"budget": 0}, "budget"), ({"budget": -3}, "budget"), ({"budget": "64"}, "budget"), ({"budget": True}, "budget"), ({"budget": 12.5}, "budget")]
BAD = {
    "prunesid": [({"groups": 0}, "groups"), ({"lam": -1.0}, "lam"), ({"grouping": "pca"}, "grouping"), ({"keep_cls": "yes"}, "keep_cls"), ({"budget": 1}, "budget")],
    "visionzip": [({"contextual": -1}, "contextual"), ({"contextual": 64}, "contextual"), ({"contextual": 2.0}, "contextual"), ({"keep_cls": 1}, "keep_cls"), ({"budget": 1}, "budget")],
    "divprune": [({"space": "pixels"}, "space"), ({"keep_cls": None}, "keep_cls"), ({"budget": 1, "keep_cls": True}, "budget")],
    "random": [({"seed": -1}, "seed"), ({"seed": "a"}, "seed"), ({"keep_cls": "no"}, "keep_cls"), ({"budget": 1}, "budget")],
    "uniform": [({"keep_cls": 0}, "keep_cls"), ({"budget": 1}, "budget")],
}


def _bad_cases():
    for name in PRESS_NAMES:
        for settings, field in BAD_FOR_EVERY_PRESS + BAD.get(name, []):
            yield pytest.param(name, settings, field, id=f"{name}-{field}-{settings[field]!r}")


@pytest.mark.parametrize(("name", "settings", "field"), list(_bad_cases()))
def test_bad_settings_are_rejected_naming_the_field(name, settings, field):
    with pytest.raises((ValueError, TypeError), match=field):
        PRESSES[name](**settings)


@pytest.mark.parametrize("name", PRESS_NAMES)
def test_every_press_is_a_frozen_documented_dataclass(name):
    cls = PRESSES[name]
    assert cls.name == name and "budget" in _fields(cls)
    press = cls()
    hash(press)  # a cache key
    with pytest.raises(dataclasses.FrozenInstanceError):
        press.budget = 1
    assert cls(budget=48) == cls(budget=48) and cls(budget=48) != cls(budget=40)
    doc = cls.__doc__ or ""
    missing = [field for field in _fields(cls) if f"{field}:" not in doc]
    assert not missing, f"{cls.__name__}'s docstring does not explain {missing}"


@pytest.mark.parametrize("name", PRESS_NAMES)
def test_every_press_works_on_plain_tensors_with_ragged_views(name):
    """Without a model: views with different selectable tokens, one with fewer than the budget."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3, 36, 16, generator=generator)
    importance = torch.rand(3, 36, generator=generator)
    valid = torch.ones(3, 36, dtype=torch.bool)
    valid[1, 20:] = False
    valid[2, 5:] = False
    from prunesid import VisionTokens

    tokens = VisionTokens(features=features, importance=importance, valid=valid, grid_shapes=[(6, 6)] * 3, keys=features[..., :8])
    result = PRESSES[name](budget=12, **({"keep_cls": False} if "keep_cls" in _fields(PRESSES[name]) else {})).compress(tokens)
    merged = result.merged or [torch.zeros(0)] * 3
    assert [int(i.numel()) + int(m.shape[0]) for i, m in zip(result.indices, merged)] == [12, 12, 5]
    for view in range(3):
        assert bool(valid[view, result.indices[view]].all())
        if result.merged_from is not None:
            covered = result.merged_from[view] >= 0
            assert not bool((covered & ~valid[view]).any()), "a merged token covers a token that may not be kept"
