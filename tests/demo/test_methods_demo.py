"""The demo's method switch and "Compare methods" (demo/methods.py), as the page calls them."""

from __future__ import annotations

import os
import tempfile

import pytest
from PIL import Image

from demo.files import upload_folder
from demo.methods import METHOD_CHOICES, analyze_method, compare_methods, method_press
from prunesid import DivPrune, PruneSID, RandomPrune, UniformPrune, VisionZip
from prunesid.methods import method_choices, presses
from tests.conftest import scene


def uploaded(image: Image.Image, name: str = "scene.png") -> str:
    """Save ``image`` where Gradio puts uploads: the only place the handlers read from."""
    os.makedirs(upload_folder(), exist_ok=True)
    path = os.path.join(tempfile.mkdtemp(dir=upload_folder(), prefix="test-methods-"), name)
    image.save(path)
    return path


@pytest.fixture(scope="module")
def picture_path():
    return uploaded(scene(640, 480, seed=8))


def test_the_switch_maps_to_the_presses():
    presses = {method: method_press(method, 48, phi_ref=0.4) for method in METHOD_CHOICES}
    assert presses["PruneSID"] == PruneSID(budget=48)
    assert presses["PruneSID-Dyn"] == PruneSID(budget=48, dynamic=True, phi_ref=0.4)
    assert presses["VisionZip"] == VisionZip(budget=48) and presses["DivPrune"] == DivPrune(budget=48)
    assert presses["random"] == RandomPrune(budget=48) and presses["uniform"] == UniformPrune(budget=48)
    assert method_press("uniform", 48.0) == UniformPrune(budget=48)  # sliders send floats


@pytest.mark.parametrize(
    ("method", "budget", "message"),
    [("FastV", 64, "method must be one of"), ("DivPrune", "lots", "budget must be a whole number"),
     ("random", float("inf"), "budget must be a whole number"), ("uniform", 2.5, "budget must be a whole number"),
     ("VisionZip", 0, "budget must be a positive integer")],
)
def test_bad_controls_are_named(method, budget, message):
    with pytest.raises(ValueError, match=message):
        method_press(method, budget)


def test_switching_the_method_changes_the_kept_view(tiny_vlm, picture_path):
    views = {}
    for method in METHOD_CHOICES:
        drawn, stats, table = analyze_method(tiny_vlm, picture_path, method, 64, phi_ref=0.5)
        assert isinstance(drawn, Image.Image) and drawn.size == (640, 480)
        assert stats["method"] == method and stats["select_ms"] >= 0 and stats["visual_tokens_uncompressed"] == 576
        if method != "PruneSID-Dyn":
            assert stats["visual_tokens"] == 64 == stats["kept"] + stats["merged"] + stats["reserved"]
        assert stats["about"] in table
        views[method] = drawn.tobytes()
    assert len(set(views.values())) == len(METHOD_CHOICES)  # every method keeps something else
    assert analyze_method(tiny_vlm, picture_path, "VisionZip", 64)[1]["merged"] == 10


def test_only_files_given_to_the_app_are_read(tiny_vlm, tmp_path):
    outside = tmp_path / "secret.png"
    scene(100, 100).save(outside)
    with pytest.raises(ValueError, match="not uploaded to this app"):
        analyze_method(tiny_vlm, str(outside), "DivPrune", 64)
    with pytest.raises(ValueError, match="not uploaded to this app"):
        compare_methods(tiny_vlm, {"path": str(outside)}, "What is it?", 64)


def test_the_switch_lists_the_registry_each_press_followed_by_its_variants():
    assert METHOD_CHOICES == [choice.label for choice in method_choices()]
    assert METHOD_CHOICES[:2] == ["PruneSID", "PruneSID-Dyn"]  # the variant beside its press
    assert set(METHOD_CHOICES) == {cls.info.label for cls in presses().values()} | {"PruneSID-Dyn"}


def test_compare_methods_answers_with_every_method(tiny_vlm, picture_path):
    sheet, table, rows = compare_methods(tiny_vlm, picture_path, "What is in the picture?", 32, phi_ref=0.5, max_new_tokens=3)
    assert [row["method"] for row in rows] == ["all tokens"] + METHOD_CHOICES
    assert rows[0]["visual_tokens"] == 576
    for row in rows[1:]:
        assert isinstance(row["answer"], str) and row["prefill_ms"] > 0 and row["select_ms"] >= 0
        assert row["budget"] == 32  # every method at the same N, the dynamic budget too
        if row["method"] != "PruneSID-Dyn":
            assert row["visual_tokens"] == 32 and row["budget_fixed"]
    # The dynamic budget sits beside PruneSID at the same N, saying what this image got.
    dynamic = rows[2]
    assert rows[1]["method"] == "PruneSID" and dynamic["method"] == "PruneSID-Dyn" and not dynamic["budget_fixed"]
    label = f"PruneSID-Dyn: average N over a calibration set; this image gets {dynamic['visual_tokens']}"
    assert dynamic["about"] == label and f"| {label} | {dynamic['visual_tokens']} |" in table
    assert dynamic["visual_tokens"] != 32  # phi_ref = 0.5 is not this image's phi: the count differs from N
    assert table.count("\n") == 1 + len(rows)  # header, rule, one line per row
    # Six panels, three to a row: two rows of three 640 x 480 drawings with captions.
    assert sheet.width >= 3 * 640 and sheet.height >= 2 * 480
    with pytest.raises(ValueError, match="question is empty"):
        compare_methods(tiny_vlm, picture_path, "  ", 32)


def test_a_method_the_model_cannot_run_says_why_and_the_others_still_answer(picture_path):
    from prunesid import load_vlm
    from prunesid.vlm import BUILTIN_MODELS

    if "tiny-random-qwen2-vl" not in BUILTIN_MODELS:
        pytest.skip("no Qwen-VL built-in in this checkout")
    vlm = load_vlm("tiny-random-qwen2-vl")
    sheet, table, rows = compare_methods(vlm, picture_path, "What is it?", 64, methods=["VisionZip", "DivPrune"], max_new_tokens=2)
    by_method = {row["method"]: row for row in rows}
    # said from the press's declaration (PressInfo.requires), before it runs
    assert by_method["VisionZip"]["unavailable"] == (
        "VisionZip needs the CLS token's attention (vision towers with a CLS token, e.g. CLIP), which this model does not give"
    )
    assert "not available" in table and isinstance(by_method["DivPrune"]["answer"], str)
    with pytest.raises(ValueError, match="no method could run"):
        compare_methods(vlm, picture_path, "What is it?", 64, methods=["VisionZip"], max_new_tokens=2)


def test_bound_handlers_as_the_page_calls_them(tiny_vlm, picture_path):
    from demo.methods import MethodHandlers

    handlers = MethodHandlers(tiny_vlm, phi_ref=0.5, max_new_tokens=2)
    assert handlers.refresh(None, "VisionZip", 64) == (None, None, "")
    drawn, stats, table = handlers.refresh(picture_path, "VisionZip", 64)
    assert stats["merged"] == 10 and "VisionZip" in table
    sheet, answers, rows = handlers.compare(picture_path, "What is it?", 32)
    assert len(rows) == 1 + len(METHOD_CHOICES) and "| all tokens |" in answers
    with pytest.raises(ValueError, match="max_new_tokens"):
        MethodHandlers(tiny_vlm, max_new_tokens=0)
