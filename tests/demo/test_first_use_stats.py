"""The page's numbers agree with each other and with the selection, in each family's words:
Qwen2.5-VL's N_eff and tau basis, LLaVA-NeXT's per-view scope; the explanation and the
overlays of the page view follow every control; typed slider values are snapped."""

from __future__ import annotations

import re

import numpy as np
import pytest

from demo import labels
from demo.controls import Controls, snap
from demo.handlers import EXPLAIN_HINT, Handlers
from demo.stats import stats_markdown
from prunesid import load_vlm
from tests.conftest import scene
from viz.marks import CLICKED_EDGE, patch_box


@pytest.fixture(scope="module")
def picture():
    """A file in Gradio's upload folder: the only place the handlers read uploads from."""
    import os
    import tempfile

    from demo.files import upload_folder

    os.makedirs(upload_folder(), exist_ok=True)
    path = os.path.join(tempfile.mkdtemp(dir=upload_folder(), prefix="test-"), "scene.png")
    scene(640, 480, seed=3).save(path)
    return path


@pytest.fixture(scope="module")
def qwen_vlm():
    return load_vlm("tiny-random-qwen2.5-vl")


def _row(table: str, name: str) -> str:
    match = re.search(rf"^\| {re.escape(name)}[^|]* \| (.+) \|$", table, re.M)
    assert match, table
    return match.group(1)


def test_qwen_stats_show_n_eff_and_tau_over_the_similarity_mean(qwen_vlm, picture):
    handlers = Handlers(qwen_vlm)
    encoded = handlers.encode(picture)
    press = handlers.press(Controls.read(64, 0, 0, "psca", False))
    selection = qwen_vlm.compress(encoded, press)[0]
    *_, stats, table, _, _ = handlers.page_view(picture, Controls.read(64, 0, 0, "psca", False))
    assert selection.preset == "qwen2-vl" and stats["preset"] == "qwen2-vl"
    n_eff = int(selection.budget[0])
    assert n_eff == max(round(encoded.num_tokens * 64 / 576), 16)
    tokens = encoded.num_tokens
    assert _row(table, "Budget N") == f"64 per 576 tokens → N_eff = max(round(T·N/576), 16) = max(round({tokens}·64/576), 16) = {n_eff}"
    # At N = 8 the floor decides, and the row says so (round(T·8/576) is below 16).
    *_, small, small_table, _, _ = handlers.page_view(picture, Controls.read(8, 0, 0, "psca", False))
    assert round(tokens * 8 / 576) < 16 and small["budget_used"] == [16] and small["figures"]["fed"] == 16
    assert _row(small_table, "Budget N").endswith(f"= max(round({tokens}·8/576), 16) = 16 (the floor of 16 applies)")
    assert "CLS" not in small_table  # Qwen-VL's tower has none
    assert "max(N_eff/4, 4)" in _row(table, "Groups K") and "max(18 N_eff/T, 1)" in _row(table, "λ")
    lam, basis, tau = (float(x) for x in re.match(r"([\d.]+) × ([\d.]+) = ([\d.]+)", _row(table, "NMS threshold τ = λ·s̄")).groups())
    assert tau == pytest.approx(float(selection.tau[0]), abs=1e-4)
    assert basis == pytest.approx(float(selection.tau[0] / selection.lam[0]), abs=1e-4)
    assert basis != pytest.approx(float(selection.rho[0]), abs=1e-3)  # not rho: another mean
    assert "per 576" in labels.budget_label(handlers.vlm)


def test_next_stats_say_which_rows_are_the_first_views(tiny_next_vlm, picture):
    handlers = Handlers(tiny_next_vlm)
    *_, stats, table, _, _ = handlers.page_view(picture, Controls.read(32, 0, 0, "psca", False))
    assert stats["views"] > 1
    per_view = [int(index.numel()) for index in tiny_next_vlm.compress(handlers.encode(picture), handlers.press(Controls.read(32, 0, 0, "psca", False)))[0].indices]
    assert _row(table, "Fed to the LLM, all") == f"{stats['kept']} tokens; per view {', '.join(map(str, per_view))}"
    assert _row(table, "Groups K — base view").startswith(str(stats["groups"]))
    assert _row(table, "Kept per group — base view") == ", ".join(map(str, stats["kept_per_group"]))
    assert sum(stats["kept_per_group"]) < stats["kept"]
    lam, rho, tau = (float(x) for x in re.match(r"([\d.]+) × ([\d.]+) = ([\d.]+)", _row(table, "NMS threshold τ = λ·ρ")).groups())
    assert rho == pytest.approx(stats["rho"], abs=1e-4) and tau == pytest.approx(stats["tau"], abs=1e-4)
    assert "per view" in _row(table, "Budget N") and "per view" in labels.budget_label(handlers.vlm)


def test_the_page_view_re_explains_the_clicked_pixel_under_new_controls(tiny_vlm, picture):
    handlers = Handlers(tiny_vlm)
    *_, text, why = handlers.page_view(picture, Controls.read(64, 0, 0, "psca", False))
    assert text == EXPLAIN_HINT and why is None
    point = (300, 200)
    groups16, _, kept16, *_, stats16, _, text16, why16 = handlers.page_view(picture, Controls.read(64, 0, 0, "psca", False), point)
    assert why16["num_groups"] == stats16["groups"] == 16
    *_, stats6, _, text6, why6 = handlers.page_view(picture, Controls.read(64, 6, 0, "psca", False), point)
    assert why6["num_groups"] == stats6["groups"] == 6 and why6["patch"] == why16["patch"]
    assert why6["tau"] == pytest.approx(stats6["tau"])
    # The clicked patch is outlined in blue on the overlay, on its own box.
    encoded = handlers.encode(picture)
    x0, y0, x1, y1 = patch_box(encoded.image, encoded.grids, why16["view"], why16["patch"])
    pixels = np.asarray(kept16)
    assert tuple(pixels[y0 + 1, (x0 + x1) // 2]) == CLICKED_EDGE
    assert tuple(pixels[(y0 + y1) // 2, x0 + 1]) == CLICKED_EDGE


def test_a_suppressed_patch_has_its_suppressor_outlined(tiny_vlm, picture):
    handlers = Handlers(tiny_vlm)
    encoded = handlers.encode(picture)
    selection = tiny_vlm.compress(encoded, handlers.press(Controls.read(16, 0, 1.0, "psca", False)))[0]
    from viz.marks import SUPPRESSOR_EDGE

    suppressed = np.nonzero(~selection.survivors[0].numpy() & (selection.groups[0].numpy() >= 0))[0]
    assert suppressed.size
    x0, y0, x1, y1 = patch_box(encoded.image, encoded.grids, 0, int(suppressed[0]))
    _, _, kept, *_, text, why = handlers.page_view(picture, Controls.read(16, 0, 1.0, "psca", False), ((x0 + x1) // 2, (y0 + y1) // 2))
    assert why["status"] == "suppressed" and "magenta" in text
    s0, t0, s1, t1 = patch_box(encoded.image, encoded.grids, 0, why["suppressor"])
    assert tuple(np.asarray(kept)[t0 + 1, (s0 + s1) // 2]) == SUPPRESSOR_EDGE


def test_typed_numbers_are_snapped_to_the_sliders():
    import gradio as gr

    from app import snapper

    budget = snapper("budget", (8, 576), 1)
    assert budget(63.7) == 64 and budget(-5) == 8 and budget(1000) == 576
    assert isinstance(budget(64), type(gr.skip()))  # already a slider value
    for bad in (1e308, 2**63, float("nan"), "lots", [64]):
        with pytest.raises(gr.Error, match="budget must be"):
            budget(bad)
    assert snap(1.1, "lam", (0.0, 18.0), 0.25) == 1.0 and snap(99, "lam", (0.0, 18.0), 0.25) == 18.0
    assert snap(63.5, "budget", (8, 576)) == 64 and snap("12", "budget", (8, 576)) == 12
    with pytest.raises(ValueError, match="budget must be a number"):
        snap("many", "budget", (8, 576))
    with pytest.raises(ValueError, match="finite"):
        snap(float("nan"), "budget", (8, 576))


def test_plurals_and_tau_above_one_are_worded(tiny_vlm, picture):
    handlers = Handlers(tiny_vlm)
    *_, stats, table, _, _ = handlers.page_view(picture, Controls.read(64, 0, 0, "psca", False))
    assert stats["tau"] >= 1 and "NMS suppresses nothing" in _row(table, "NMS threshold")
    from demo.figures import tau_text

    stats["figures"]["tau_text"] = tau_text("llava", 2.0, 0.5)
    assert "suppresses nothing" not in stats_markdown(stats)


def test_a_refused_question_is_explained_by_the_same_checks():
    from demo.chat import NO_SESSION, ChatQueue
    from demo.limits import MAX_PENDING

    chats = ChatQueue(lambda *args: iter(()), check_message=lambda message: None)
    assert chats.refusal("s", "hi", None, (), "a") == NO_SESSION
    chats.open("s", "a")
    assert chats.refusal("s", "  ", None, (), "a").startswith("the message is empty")
    for n in range(MAX_PENDING):
        assert chats.refusal("s", f"q{n}", None, (), "a") == ""
        chats.send("s", f"q{n}", None, (), "a")
    assert chats.refusal("s", "one more", None, (), "a") == f"{MAX_PENDING} questions are already waiting: let them be answered first"
    with pytest.raises(ValueError, match="already waiting"):
        chats.send("s", "one more", None, (), "a")
