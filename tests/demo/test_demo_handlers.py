"""The demo's handlers on both model families, and the model fallback, without a browser."""

from __future__ import annotations

import math
import shutil
import tempfile

import gradio as gr
import pytest

import demo.model_choice as model_choice
from demo.controls import Controls, image_widgets
from demo.files import upload_folder
from demo.conversation import conversation
from demo.handlers import Handlers, user_errors
from demo.model_choice import choose_model, load_with_fallback
from demo.models import ModelSlot
from tests.conftest import scene


def uploaded(image, name: str = "scene.png") -> str:
    """Save ``image`` where Gradio puts uploads: the only place the handlers read from."""
    import os

    os.makedirs(upload_folder(), exist_ok=True)
    path = os.path.join(tempfile.mkdtemp(dir=upload_folder(), prefix="test-"), name)
    image.save(path)
    return path


@pytest.fixture(scope="module")
def picture_path():
    path = uploaded(scene(640, 480, seed=3))
    yield path
    shutil.rmtree(path.rsplit("/", 1)[0], ignore_errors=True)


def test_next_tiles_are_analyzed_per_view(tiny_next_vlm, picture_path):
    groups, survivors, kept, quotas, stats, table = Handlers(tiny_next_vlm).analyze({"path": picture_path}, Controls.read(32, 0, 0, "psca", False))
    assert stats["views"] == 5 and stats["tokens"] == 5 * 576
    assert [view["kept"] for view in stats["per_view"]["views"]] == [32] * 5
    assert kept.width > 2 * kept.height * 0.9  # base view and tile mosaic side by side
    assert "in 5 views" in table


def test_dynamic_uses_the_calibrated_phi_ref(tiny_vlm, picture_path):
    phi_ref = tiny_vlm.calibrate([scene(seed=s) for s in range(3)])
    *_, stats, table = Handlers(tiny_vlm, phi_ref=phi_ref).analyze(picture_path, Controls.read(64, 0, 0, "psca", True))
    assert stats["phi_ref"] == pytest.approx(phi_ref)
    expected = round(64 * stats["phi"] / phi_ref)
    assert stats["budget_used"] == [max(32, min(128, expected))]
    assert "N' =" in table


def test_compare_groupings_and_answers(tiny_vlm, picture_path):
    handlers = Handlers(tiny_vlm)
    sheet = handlers.compare_groupings(picture_path, 64, 0, 0, False)
    single = handlers.analyze(picture_path, Controls.read(64, 0, 0, "psca", False))[2]
    assert sheet.width == 3 * single.width + 2 * 8
    handlers.max_new_tokens = 4
    full, compressed, summary = handlers.compare_answers("What is it?", picture_path, Controls.read(64, 0, 0, "psca", False))
    assert isinstance(full, str) and isinstance(compressed, str)
    assert "**576**" in summary and "**64**" in summary and "x** faster" in summary


def test_bad_control_values_become_visible_errors(tiny_vlm, picture_path):
    analyze = user_errors(image_widgets(Handlers(tiny_vlm).analyze))
    with pytest.raises(gr.Error, match="budget must be a whole number"):
        analyze(picture_path, 12.5, 0, 0, "psca", False)
    with pytest.raises(gr.Error, match="grouping must be one of"):
        analyze(picture_path, 64, 0, 0, "spectral", False)
    with pytest.raises(gr.Error, match=r"lam must be between 0 and 18 \(0 = auto: budget / 32\), got -1.0"):
        analyze(picture_path, 64, 0, -1, "psca", False)
    with pytest.raises(gr.Error, match="no image"):
        analyze(None, 64, 0, 0, "psca", False)
    # Every value is held to its slider's range (demo/limits.py), one past either end refused.
    with pytest.raises(gr.Error, match=r"groups must be between 0 and 144 \(0 = auto: budget / 4\), got 145"):
        analyze(picture_path, 64, 145, 0, "psca", False)
    with pytest.raises(gr.Error, match="budget must be between 8 and 576, got 7"):
        analyze(picture_path, 7, 0, 0, "psca", False)
    with pytest.raises(gr.Error, match="budget must be between 8 and 576, got 577"):
        analyze(picture_path, 577, 0, 0, "psca", False)
    assert analyze(picture_path, 64, 144, 0, "psca", False)[4]["groups"] == 144


def test_clearing_the_image_clears_the_overlays_quietly(tiny_vlm, picture_path):
    handlers = Handlers(tiny_vlm)
    assert handlers.refresh(None, Controls.read(64, 0, 0, "psca", False)) == (None, None, None, None, None, "")
    assert handlers.refresh(picture_path, Controls.read(64, 0, 0, "psca", False))[4]["kept"] == 63


def test_chat_history_keeps_the_image_on_the_first_turn():
    history = [{"role": "user", "content": "What is it?"}, {"role": "assistant", "content": [{"type": "text", "text": "A house."}]}]
    messages = conversation(history, "What colour?")
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
    monkeypatch.setattr(model_choice, "gpu_available", lambda: False)
    monkeypatch.setattr(model_choice, "offline_reason", lambda *args: "simulated: no network")
    monkeypatch.setenv("PRUNESID_MODEL", "tiny-random-next")
    assert choose_model("tiny-random").name == "tiny-random"
    assert choose_model(None).name == "tiny-random-next"
    monkeypatch.delenv("PRUNESID_MODEL")
    assert choose_model(None).name == "tiny-random"  # no GPU and no Hub: the offline model


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
        app.build(ModelSlot.starting_with(tiny_vlm, "banner"))
    finally:
        sys.modules.pop("app", None)
    images = ["analyze", "answer", "chat", "compare_answers", "compare_groupings", "explain", "page_click", "page_pick", "page_view"]
    methods = ["analyze", "compare", "refresh"]  # MethodHandlers' analyze / compare / refresh
    clips = ["analyze_video", "chat_video", "refresh_video", "answer"]  # answer: the page's clip chat, on its queue
    assert sorted(decorated) == sorted(images + methods + clips + ["switch_model"]), decorated


@pytest.mark.parametrize("control", ["budget", "groups", "lam"])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, "inf", "nan", 1e400])
def test_a_non_finite_control_value_names_the_control(tiny_vlm, picture_path, control, value):
    settings = {"budget": 64, "groups": 0, "lam": 0}
    settings[control] = value
    analyze = user_errors(image_widgets(Handlers(tiny_vlm).analyze))
    with pytest.raises(gr.Error, match=f"{control} must be a finite number"):
        analyze(picture_path, settings["budget"], settings["groups"], settings["lam"], "psca", False)


@pytest.mark.parametrize("model", ["tiny-random", "tiny-random-next"])
def test_compression_is_against_what_the_unmodified_model_feeds(request, picture_path, model):
    vlm = request.getfixturevalue("tiny_vlm" if model == "tiny-random" else "tiny_next_vlm")
    *_, stats, table = Handlers(vlm).analyze(picture_path, Controls.read(32, 0, 0, "psca", False))
    encoded = vlm.encode(open(picture_path, "rb").read())
    uncompressed = len(vlm.visual_features(encoded, None))
    assert stats["visual_tokens_uncompressed"] == uncompressed
    assert stats["compression"] == round(uncompressed / stats["visual_tokens"], 2)
    assert "compression" not in stats["per_view"]  # one definition only
    assert f"Compression | {uncompressed} tokens unmodified / {stats['visual_tokens']} = " in table
    if model == "tiny-random-next":  # the unmodified NeXT run carries its newline tokens
        assert uncompressed != encoded.num_tokens


def test_questions_and_histories_from_a_request_are_checked_before_the_model_sees_them(tiny_vlm, picture_path):
    chat = user_errors(image_widgets(Handlers(tiny_vlm).chat))
    with pytest.raises(gr.Error, match="the message holds a character that is not valid Unicode text at position 4"):
        list(chat("what\ud800", [], picture_path, 64, 0, 0, "psca", False))
    with pytest.raises(gr.Error, match="the message is 2001 characters long; at most 2000 are accepted"):
        list(chat("x" * 2001, [], picture_path, 64, 0, 0, "psca", False))
    with pytest.raises(gr.Error, match="the chat history must be a list of messages, got str"):
        list(chat("what?", "a history", picture_path, 64, 0, 0, "psca", False))
    with pytest.raises(gr.Error, match="dynamic must be true or false, got 'yes'"):
        list(chat("what?", [], picture_path, 64, 0, 0, "psca", "yes"))
