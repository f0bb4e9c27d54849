"""A real browser on the launched demo: upload, analyze, move the budget, ask; two
questions in a row while the first answer streams; stop; click a patch and read why it was
dropped.

Chromium comes from the system (Debian's `chromium`); `.ci/run` installs it and sets
PRUNESID_REQUIRE_BROWSER=1, so in CI its absence fails instead of skipping.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from prunesid import PruneSID
from tests.conftest import launched_app, scene
from viz.explain import _quota_words
from viz.overlay import canvases

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
MAX_NEW_TOKENS = 200
# The app as `python app.py` runs it, with a model that writes 30 ms a token, as a large
# model on a CPU would: answers last long enough to type, send and stop during them.
SLOW_APP = """
import sys, time
sys.path.insert(0, ".")
from transformers import LogitsProcessor, LogitsProcessorList
from prunesid.vlm import VLM


class Pace(LogitsProcessor):
    def __call__(self, input_ids, scores):
        time.sleep(0.06)  # 200 tokens: 12 s of streaming, room for a loaded machine to send the second question
        return scores


stream = VLM.stream
VLM.stream = lambda self, *args, **kwargs: stream(self, *args, logits_processor=LogitsProcessorList([Pace()]), **kwargs)
import app
app.main(sys.argv[1:])
"""


def _chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    if executable is None:
        reason = "no Chromium found (apt-get install chromium, or set CHROMIUM=/path)"
        if os.environ.get("PRUNESID_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required in CI but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--headless", "--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def _kept_count(page) -> int:
    text = page.locator("#stats").inner_text()
    match = re.search(r"Fed to the LLM\s+(\d+) tokens", text)
    assert match, text
    return int(match.group(1))


def test_upload_analyze_slide_and_ask(browser, app_url, tmp_path):
    picture = tmp_path / "street.png"
    scene(640, 480, seed=5).save(picture)
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(app_url)
    page.wait_for_selector("#banner", timeout=60_000)
    assert "random weights" in page.locator("#banner").inner_text()

    page.locator("#input-image input[type=file]").set_input_files(str(picture))
    page.wait_for_function("document.querySelector('#stats') && /Fed to the LLM/.test(document.querySelector('#stats').innerText)", timeout=60_000)
    assert page.locator("#kept-view img").count() == 1
    assert _kept_count(page) == 63

    page.locator("#budget input[type=range]").fill("128")
    page.wait_for_function(
        "/Fed to the LLM\\s+127 tokens/.test(document.querySelector('#stats').innerText)", timeout=60_000
    )
    assert _kept_count(page) == 127
    assert "127 tokens + CLS = 128" in page.locator("#stats").inner_text()

    page.locator("#message textarea").fill("What is in the picture?")
    page.locator("#send").click()
    page.wait_for_function("/128 visual tokens/.test(document.querySelector('#reply-info').innerText)", timeout=60_000)
    assert page.locator("#chatbot").inner_text().count("What is in the picture?") == 1
    page.wait_for_function("/prefill \\d+ ms/.test(document.querySelector('#stats').innerText)", timeout=30_000)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)

    page.get_by_text("Compare", exact=True).click()
    page.locator("#compare-groupings").click()
    page.wait_for_selector("#comparison img", timeout=60_000)
    shown = page.locator("#comparison img").evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert shown[0] > 2.5 * shown[1]  # three panels side by side
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)
    assert not errors, errors
    page.close()


@pytest.fixture(scope="module")
def slow_app_url(tmp_path_factory):
    launcher = tmp_path_factory.mktemp("slow-app") / "slow_app.py"
    launcher.write_text(SLOW_APP)
    args = ("--model", "tiny-random", "--max-new-tokens", str(MAX_NEW_TOKENS))
    with launched_app(*args, script=str(launcher), log_path=ARTIFACTS / "slow-app-server.log") as (url, _):
        yield url


def _open_with_picture(browser, url, picture):
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.goto(url)
    page.wait_for_selector("#banner", timeout=60_000)
    page.locator("#input-image input[type=file]").set_input_files(str(picture))
    page.wait_for_function("document.querySelector('#stats') && /Fed to the LLM/.test(document.querySelector('#stats').innerText)", timeout=60_000)
    return page


def _turns(page) -> list[tuple[str, str]]:
    return [(turn.get_attribute("data-testid"), turn.inner_text()) for turn in page.locator("#chatbot [data-testid=user], #chatbot [data-testid=bot]").all()]


def test_a_question_sent_while_an_answer_streams_is_answered_next(browser, slow_app_url, tmp_path):
    picture = tmp_path / "scene.png"
    scene(640, 480, seed=8).save(picture)
    page = _open_with_picture(browser, slow_app_url, picture)
    box = page.locator("#message textarea")
    box.fill("What is in the first picture?")
    box.press("Enter")
    page.wait_for_function("document.querySelector('#message textarea').value === ''", timeout=5_000)  # cleared on send
    page.wait_for_function("/generating/.test(document.querySelector('#reply-info').innerText)", timeout=30_000)
    box.fill("And the second question?")
    page.locator("#send").click()
    page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=user]').length === 2", timeout=10_000)
    page.wait_for_function("document.querySelector('#message textarea').value === ''", timeout=5_000)
    # Right after a send the status reads "waiting for the answer..." until the next streamed
    # update: the first answer is still being written when it says "generating" with one answer shown.
    page.wait_for_function(
        "() => /generating/.test(document.querySelector('#reply-info').innerText) && "
        "document.querySelectorAll('#chatbot [data-testid=bot]').length === 1",
        timeout=10_000,
    )
    first = _turns(page)
    assert [role for role, _ in first][:2] == ["user", "bot"] and first[-1] == ("user", "And the second question?")
    # Both answered, in order: user, answer, user, answer; the second answer is complete.
    page.wait_for_function(
        "() => document.querySelectorAll('#chatbot [data-testid=bot]').length === 2 && "
        "!/generating/.test(document.querySelector('#reply-info').innerText)",
        timeout=120_000,
    )
    turns = _turns(page)
    assert [role for role, _ in turns] == ["user", "bot", "user", "bot"], turns
    assert turns[0][1] == "What is in the first picture?" and turns[2][1] == "And the second question?"
    assert turns[1][1].strip() and turns[3][1].strip()
    assert f"({MAX_NEW_TOKENS} tokens)" in page.locator("#reply-info").inner_text()
    page.close()


def test_stop_ends_the_answer_being_written(browser, slow_app_url, tmp_path):
    picture = tmp_path / "scene.png"
    scene(640, 480, seed=9).save(picture)
    page = _open_with_picture(browser, slow_app_url, picture)
    page.locator("#message textarea").fill("Tell me a long story.")
    page.locator("#send").click()
    page.wait_for_function("/generating/.test(document.querySelector('#reply-info').innerText)", timeout=30_000)
    page.locator("#stop").click()
    page.wait_for_function("/visual tokens/.test(document.querySelector('#reply-info').innerText)", timeout=30_000)
    written = int(re.search(r"\((\d+) tokens\)", page.locator("#reply-info").inner_text()).group(1))
    assert written < MAX_NEW_TOKENS
    turns = _turns(page)
    assert [role for role, _ in turns] == ["user", "bot"] and turns[1][1].endswith("(stopped)")
    # The chat goes on after a stop.
    page.locator("#message textarea").fill("Shorter, please.")
    page.locator("#send").click()
    page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=bot]').length === 2", timeout=30_000)
    page.close()


def _pixel_of(encoded, view: int, patch: int) -> tuple[int, int]:
    """The centre of ``patch`` of ``view`` on the single-panel overlay of ``encoded``."""
    (_, canvas), = canvases(encoded.image, encoded.grids)
    rows, cols = ((canvas.view == view) & (canvas.patch == patch)).nonzero()
    return int(cols.mean()), int(rows.mean())


def _settled_overlay(page, element: str):
    """The overlay's image once loaded, scrolled into view and no longer moving: its box and its
    natural size. Just after a render or a tab switch the image may still be loading or being
    laid out, and a click at an old box (or below the fold) lands on nothing."""
    image = page.locator(f"{element} img")
    image.wait_for(state="visible", timeout=30_000)
    page.wait_for_function(
        "selector => { const img = document.querySelector(selector); return img && img.complete && img.naturalWidth > 0; }",
        arg=f"{element} img", timeout=30_000,
    )
    image.scroll_into_view_if_needed()
    box = image.bounding_box()
    for _ in range(20):
        page.wait_for_timeout(100)
        settled = image.bounding_box()
        if settled == box:
            break
        box = settled
    return box, image.evaluate("img => [img.naturalWidth, img.naturalHeight]")


def _click_overlay(page, element: str, x: float, y: float) -> None:
    """Click natural pixel (x, y) of an overlay shown with object-fit: contain."""
    box, (natural_w, natural_h) = _settled_overlay(page, element)
    scale = min(box["width"] / natural_w, box["height"] / natural_h)
    left = box["x"] + (box["width"] - natural_w * scale) / 2
    top = box["y"] + (box["height"] - natural_h * scale) / 2
    page.mouse.click(left + (x + 0.5) * scale, top + (y + 0.5) * scale)


def click_overlay_at(page, element: str, fx: float, fy: float) -> None:
    """Click the overlay's picture at fractions (fx, fy) of its width and height."""
    _, (natural_w, natural_h) = _settled_overlay(page, element)
    _click_overlay(page, element, fx * natural_w - 0.5, fy * natural_h - 0.5)


def _explanation(page, patch: int) -> str:
    page.wait_for_function(f"/Patch {patch}\\b/.test(document.querySelector('#explain').innerText)", timeout=30_000)
    return page.locator("#explain").inner_text()


def test_clicking_a_dropped_patch_explains_it_with_the_selections_numbers(browser, app_url, tiny_vlm, tmp_path):
    picture = tmp_path / "scene.png"
    scene(640, 480, seed=12).save(picture)
    encoded = tiny_vlm.encode(picture.read_bytes())
    # lambda 1.25: tau just under 1, so the NMS suppresses some patches and some groups
    # have more survivors than their quota (tiny-random's features are alike: rho ~ 0.8).
    selection = tiny_vlm.compress(encoded, PruneSID(budget=64, lam=1.25))[0]
    groups, scores = selection.groups[0], selection.scores[0]
    survivors, ranks, kept = selection.survivors[0], selection.survivor_rank[0], selection.kept[0]
    tau = float(selection.tau[0])
    normed = F.normalize(encoded.features[0].float(), dim=-1)

    def expected_suppressor(patch):
        group = groups[patch]
        earlier = (groups == group) & survivors & ((scores > scores[patch]) | ((scores == scores[patch]) & (torch.arange(len(scores)) < patch)))
        candidates = [int(i) for i in earlier.nonzero().flatten() if float(normed[i] @ normed[patch]) > tau]
        return min(candidates, key=lambda i: int(ranks[i]))

    suppressed = [int(p) for p in ((groups >= 0) & ~survivors & (scores > 0)).nonzero().flatten()]
    quota_full = [int(p) for p in (survivors & ~kept).nonzero().flatten()]
    assert suppressed and quota_full, "the picture should show both reasons at N=64, lambda=1.25"

    page = _open_with_picture(browser, app_url, picture)
    page.locator("#lam input[type=range]").fill("1.25")
    page.wait_for_function("/λ\\s+1\\.25/.test(document.querySelector('#stats').innerText)", timeout=60_000)
    patch = suppressed[len(suppressed) // 2]
    _click_overlay(page, "#kept-view", *_pixel_of(encoded, 0, patch))
    text = _explanation(page, patch)
    suppressor = expected_suppressor(patch)
    group = int(groups[patch])
    members = (groups == group).nonzero().flatten()
    rank = 1 + sum(1 for i in members if float(scores[i]) > float(scores[patch]) or (float(scores[i]) == float(scores[patch]) and int(i) < patch))
    assert "dropped by NMS" in text, text
    assert f"Group {group} of {int(selection.num_groups[0])} ({len(members)} patches)" in text, text
    assert f"rank {rank} of {len(members)} in its group" in text, text
    assert f"Suppressed by patch {suppressor} (row {suppressor // 24}, column {suppressor % 24})" in text, text
    similarity = float(re.search(r"cosine similarity ([0-9]+\.[0-9]+) > τ", text).group(1))
    shown_tau = float(re.search(r"τ = ([0-9]+\.[0-9]+)", text).group(1))
    assert similarity == pytest.approx(float(normed[suppressor] @ normed[patch]), abs=1e-4)
    assert shown_tau == pytest.approx(tau, abs=1e-4) and similarity > shown_tau

    # A survivor its group had no room for, clicked on the survivors overlay.
    page.get_by_role("tab", name="Survivors").click()
    patch = quota_full[0]
    group = int(groups[patch])
    _click_overlay(page, "#survivors-view", *_pixel_of(encoded, 0, patch))
    text = _explanation(page, patch)
    quota, count = int(selection.quotas[0, group]), int((survivors & (groups == group)).sum())
    assert "quota full" in text and _quota_words(quota, count) in text, text
    assert f"survivor #{int(ranks[patch]) + 1} of the group's {count}" in text, text

    # And a kept one.
    patch = int(selection.indices[0][0])
    _click_overlay(page, "#survivors-view", *_pixel_of(encoded, 0, patch))
    assert "**kept**" in page.locator("#explain").inner_html() or "kept." in _explanation(page, patch)
    page.screenshot(path=str(ARTIFACTS / "explain.png"), full_page=True)
    page.close()
