"""The plug-in's settings, checked before an engine serves anything (no engine here)."""

from __future__ import annotations

import pytest

from prunesid.methods.registry import presses
from prunesid.families.llava.adapter import Resize, SingleViewLayout
from prunesid.vllm import ARCHITECTURES, engine_overrides
from prunesid.vllm.settings import EnginePress, press_from_settings

CLIP = SingleViewLayout(Resize((("shortest_edge", 336),), True, (336, 336)), 14, has_cls=True, cls_fed=False)
NO_CLS = SingleViewLayout(Resize((("shortest_edge", 336),), True, (336, 336)), 14, has_cls=False, cls_fed=False)
FIXED = [name for name, cls in presses().items() if cls().budget_is_fixed]


def test_every_fixed_budget_press_of_the_registry_is_sized_to_n():
    assert {"prunesid", "visionzip", "divprune", "random", "uniform"} <= set(FIXED)
    for method in FIXED:
        engine = EnginePress.checked({"method": method, "budget": 64}, CLIP, (336, 336))
        assert engine.fed_tokens((640, 480)) == 64, method
        assert engine.fed_tokens((100, 900)) == 64, method


def test_overrides_name_the_architecture_and_the_settings():
    assert engine_overrides("llava", "divprune", 32) == {
        "architectures": [ARCHITECTURES["llava"]], "prunesid": {"method": "divprune", "budget": 32},
    }


@pytest.mark.parametrize(
    ("settings", "layout", "message"),
    [
        ({"method": "nope", "budget": 64}, CLIP, "prunesid.method must be one of"),
        ({"budget": 64}, CLIP, "prunesid.method must be one of"),
        ({"method": "prunesid", "budget": 578}, CLIP, "prunesid.budget 578 exceeds the 577 tokens"),
        ({"method": "random", "budget": 578}, CLIP, "prunesid.budget 578 exceeds the 577 tokens"),
        ({"method": "prunesid", "budget": 64, "dynamic": True}, CLIP, "enable_mm_embeds=True"),
        ({"method": "visionzip", "budget": 64}, NO_CLS, "prunesid.method 'visionzip': VisionZip cannot run on this model"),
        ({"method": "prunesid", "budget": "many"}, CLIP, "prunesid.budget must be an integer"),
        ({"method": "prunesid", "budget": 64, "colour": 1}, CLIP, "prunesid.colour is not an option of method 'prunesid'"),
        (None, CLIP, "sets no prunesid settings"),
        ("[1, 2]", CLIP, "prunesid must be an object"),
    ],
)
def test_bad_settings_are_named(settings, layout, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        EnginePress.checked(settings, layout, (336, 336))


def test_the_largest_budget_is_every_patch_and_the_cls():
    assert EnginePress.checked({"method": "prunesid", "budget": 577}, CLIP, (336, 336)).fed_tokens((336, 336)) == 577
    assert EnginePress.checked({"method": "random", "budget": 576}, NO_CLS, (336, 336)).fed_tokens((336, 336)) == 576


def test_settings_read_back_as_json_text():
    assert press_from_settings('{"method": "uniform", "budget": 9}').budget == 9


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: engine_overrides("llava", "prunesid", 64, colour=1), "prunesid.colour is not an option of method 'prunesid'"),
        (lambda: engine_overrides("llava", "nope", 64), "prunesid.method must be one of"),
        (lambda: engine_overrides("llava", "prunesid", "many"), "prunesid.budget must be an integer"),
        (lambda: engine_overrides("qwen", "prunesid", 64), "family must be one of"),
    ],
)
def test_overrides_check_what_they_write(call, message):
    """Bug caught: ``engine_overrides()`` writing its settings unchecked (the error would come
    only when the engine starts, after minutes of loading)."""
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        call()


def test_the_cls_is_reserved_only_for_a_press_that_keeps_it():
    """Bug caught: the CLS counted as reserved whatever ``keep_cls`` says (budget 577 accepted
    on CLIP-336 with keep_cls=False, where a view has only its 576 patches to give)."""
    settings = {"method": "prunesid", "budget": 577, "keep_cls": False}
    with pytest.raises(ValueError, match=r"prunesid\.budget 577 exceeds the 576 tokens a view of this model has \(576 patches\)"):
        EnginePress.checked(settings, CLIP, (336, 336))
    kept = EnginePress.checked({**settings, "budget": 576}, CLIP, (336, 336))
    assert kept.fed_tokens((336, 336)) == 576
    assert EnginePress.checked({"method": "prunesid", "budget": 577}, CLIP, (336, 336)).fed_tokens((336, 336)) == 577


@pytest.mark.parametrize("settings", [
    {"method": "prunesid", "budget": 64, "dynamic": True},
    '{"method": "prunesid", "budget": 64, "dynamic": true}',  # a config read back from disk as text
])
def test_a_content_set_budget_is_refused_with_the_settings_shown_as_given(settings):
    """Bug caught: the refusal showing ``None`` for settings that came as JSON text."""
    shown = "method='prunesid', budget=64, dynamic=True" if isinstance(settings, dict) else repr(settings)
    with pytest.raises(ValueError, match="with these settings") as refused:
        EnginePress.checked(settings, CLIP, (336, 336))
    assert f"({shown})" in str(refused.value)


def test_settings_text_that_is_not_json_is_refused_with_the_text_and_the_parse_error():
    with pytest.raises(ValueError, match=r"prunesid must be a JSON object, got '\{method: prunesid\}': Expecting property name"):
        press_from_settings("{method: prunesid}")


@pytest.mark.parametrize(("layout", "most", "parts"), [(CLIP, 577, "576 patches + the CLS"), (NO_CLS, 576, "576 patches")])
def test_a_budget_past_a_view_names_the_view_s_tokens(layout, most, parts):
    with pytest.raises(ValueError) as refused:
        EnginePress.checked({"method": "prunesid", "budget": most + 1}, layout, (336, 336))
    assert str(refused.value) == f"prunesid.budget {most + 1} exceeds the {most} tokens a view of this model has ({parts})"
