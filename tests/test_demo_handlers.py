"""The demo's handlers on both model families, and the model fallback, without a browser."""

from __future__ import annotations

import gradio as gr
import pytest

from demo.handlers import Handlers, _conversation, user_errors
from demo.model_choice import load_with_fallback, requested_model
from tests.conftest import scene


@pytest.fixture(scope="module")
def picture_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("handlers") / "scene.png"
    scene(640, 480, seed=3).save(path)
    return str(path)


def test_next_tiles_are_analyzed_per_view(tiny_next_vlm, picture_path):
    groups, survivors, kept, quotas, stats, table = Handlers(tiny_next_vlm).analyze({"path": picture_path}, 32, 0, 0, "psca", False)
    assert stats["views"] == 5 and stats["tokens"] == 5 * 576
    assert [view["kept"] for view in stats["per_view"]["views"]] == [32] * 5
    assert kept.width > 2 * kept.height * 0.9  # base view and tile mosaic side by side
    assert "in 5 views" in table


def test_dynamic_uses_the_calibrated_phi_ref(tiny_vlm, picture_path):
    phi_ref = tiny_vlm.calibrate([scene(seed=s) for s in range(3)])
    *_, stats, table = Handlers(tiny_vlm, phi_ref=phi_ref).analyze(picture_path, 64, 0, 0, "psca", True)
    assert stats["phi_ref"] == pytest.approx(phi_ref)
    expected = round(64 * stats["phi"] / phi_ref)
    assert stats["budget_used"] == [max(32, min(128, expected))]
    assert "N' =" in table


def test_compare_groupings_and_answers(tiny_vlm, picture_path):
    handlers = Handlers(tiny_vlm)
    sheet = handlers.compare_groupings(picture_path, 64, 0, 0, False)
    single = handlers.analyze(picture_path, 64, 0, 0, "psca", False)[2]
    assert sheet.width == 3 * single.width + 2 * 8
    handlers.max_new_tokens = 4
    full, compressed, summary = handlers.compare_answers("What is it?", picture_path, 64, 0, 0, "psca", False)
    assert isinstance(full, str) and isinstance(compressed, str)
    assert "**576**" in summary and "**64**" in summary and "x** faster" in summary


def test_bad_control_values_become_visible_errors(tiny_vlm, picture_path):
    analyze = user_errors(Handlers(tiny_vlm).analyze)
    with pytest.raises(gr.Error, match="budget must be a whole number"):
        analyze(picture_path, 12.5, 0, 0, "psca", False)
    with pytest.raises(gr.Error, match="grouping must be one of"):
        analyze(picture_path, 64, 0, 0, "spectral", False)
    with pytest.raises(gr.Error, match="lam must be >= 0"):
        analyze(picture_path, 64, 0, -1, "psca", False)
    with pytest.raises(gr.Error, match="no image"):
        analyze(None, 64, 0, 0, "psca", False)
    with pytest.raises(gr.Error, match="groups must be an integer in \\[1, T=576\\]"):
        analyze(picture_path, 64, 600, 0, "psca", False)


def test_clearing_the_image_clears_the_overlays_quietly(tiny_vlm, picture_path):
    handlers = Handlers(tiny_vlm)
    assert handlers.refresh(None, 64, 0, 0, "psca", False) == (None, None, None, None, None, "")
    assert handlers.refresh(picture_path, 64, 0, 0, "psca", False)[4]["kept"] == 63


def test_chat_history_keeps_the_image_on_the_first_turn():
    history = [{"role": "user", "content": "What is it?"}, {"role": "assistant", "content": [{"type": "text", "text": "A house."}]}]
    messages = _conversation(history, "What colour?")
    assert messages[0]["content"][0] == {"type": "image"}
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"][0]["text"] == "A house." and messages[2]["content"] == [{"type": "text", "text": "What colour?"}]


def test_unloadable_models_fall_back_to_the_offline_model_with_a_banner(tmp_path):
    empty = tmp_path / "llava-checkpoint"  # a directory without a model in it
    empty.mkdir()
    vlm, banner = load_with_fallback(str(empty))
    assert vlm.name == "tiny-random"
    assert f"{empty} could not be loaded" in banner and "random weights" in banner


def test_model_choice_order(monkeypatch):
    monkeypatch.setenv("PRUNESID_MODEL", "tiny-random-next")
    assert requested_model("tiny-random") == "tiny-random"
    assert requested_model(None) == "tiny-random-next"
    monkeypatch.delenv("PRUNESID_MODEL")
    assert requested_model(None) == "tiny-random"  # no GPU on the test machines


def test_zero_gpu_decorates_every_model_call_when_spaces_is_present(monkeypatch, tiny_vlm):
    import importlib
    import sys
    import types

    decorated = []
    spaces = types.ModuleType("spaces")
    spaces.GPU = lambda function: decorated.append(function.__name__) or function
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    monkeypatch.delitem(sys.modules, "app", raising=False)
    app = importlib.import_module("app")
    try:
        app.build(Handlers(tiny_vlm), "banner")
    finally:
        sys.modules.pop("app", None)
    assert sorted(decorated) == ["analyze", "chat", "compare_answers", "compare_groupings", "refresh"]
