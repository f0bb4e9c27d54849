"""The model picker on the launched demo, in Chromium: a switch re-renders every panel for the
new family (labels with its preset's rules, overlays and stats, the clip section on or off)
and clears what belonged to the previous model (the chat, the clicked patch); another
visitor's page keeps its own model. And the upload's label never covers the picture.

One launched app (tiny-random at start-up) for the module.
"""

from __future__ import annotations

import re

import pytest

from tests.app.test_app_browser import ARTIFACTS, browser, click_overlay_at  # noqa: F401  (browser: a fixture)
from tests.app.test_app_first_use import _boxes_intersect, _pick_example
from tests.conftest import launched_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def picker_url():
    with launched_app("--model", "tiny-random", "--max-new-tokens", "8", log_path=ARTIFACTS / "picker-server.log") as (url, _):
        yield url


def _open(browser, url, width=1400):  # noqa: F811
    page = browser.new_page(viewport={"width": width, "height": 1000})
    page.goto(url)
    page.wait_for_selector("#send", timeout=60_000)
    return page


def _label(page, selector: str) -> str:
    return page.locator(f"{selector} [data-testid='block-info']").first.inner_text()


def pick_model(page, name: str) -> None:
    page.locator("#model-picker input").click()
    page.locator(f"[data-testid='dropdown-option'][aria-label='{name}']").click()


def test_a_switch_re_renders_every_panel_and_clears_the_previous_models_state(browser, picker_url):  # noqa: F811
    page = _open(browser, picker_url)
    other = _open(browser, picker_url)  # another visitor, on the start-up model
    assert "auto: N/4;" in _label(page, "#groups") and "auto: N/32;" in _label(page, "#lam")
    page.get_by_text("Video: PruneSID on every frame").click()
    page.locator("#video-off").wait_for(state="visible", timeout=30_000)  # tiny-random takes images only
    assert "Pick a model that takes clips" in page.locator("#video-off").inner_text()
    assert not page.locator("#input-video").is_visible()
    _pick_example(page, 0)
    assert re.search(r"Budget N\s+64\b", page.locator("#stats").inner_text())
    click_overlay_at(page, "#kept-view", 0.5, 0.55)
    page.wait_for_function("/Patch \\d+/.test(document.querySelector('#explain').innerText)", timeout=60_000)
    page.fill("#message textarea", "What is this?")
    page.click("#send")
    page.wait_for_function("/What is this\\?/.test(document.querySelector('#chatbot').innerText)", timeout=30_000)

    pick_model(page, "tiny-random-qwen2-vl")
    page.wait_for_function("/max\\(N_eff\\/4, 4\\)/.test(document.querySelector('#groups').innerText)", timeout=60_000)
    assert "auto: max(18 N_eff/T, 1);" in _label(page, "#lam")
    assert "per 576" in _label(page, "#budget")
    assert "tiny-random-qwen2-vl" in page.locator("#banner").inner_text()
    # The overlays and stats are the new family's, for the same image and controls.
    page.wait_for_function("/per 576 tokens/.test(document.querySelector('#stats').innerText)", timeout=60_000)
    assert "max(N_eff/4, 4)" in page.locator("#stats").inner_text()
    # What belonged to the previous model is gone: the chat and the clicked patch.
    assert "What is this?" not in page.locator("#chatbot").inner_text()
    assert page.locator("#explain").inner_text().startswith("Click a patch")
    # Qwen2-VL takes clips: the clip section is on, with the preset's rules per frame.
    page.locator("#input-video").wait_for(state="visible", timeout=30_000)
    assert not page.locator("#video-off").is_visible()
    assert "max(N_eff/4, 4)" in _label(page, "#video-groups")

    # The other visitor's page still runs the start-up model.
    _pick_example(other, 1)
    assert re.search(r"Budget N\s+64\b", other.locator("#stats").inner_text())
    assert "per 576" not in other.locator("#stats").inner_text()
    page.close()
    other.close()


@pytest.mark.parametrize("width", [390, 1400])
def test_the_upload_label_never_covers_the_picture(browser, picker_url, width):  # noqa: F811
    page = _open(browser, picker_url, width)
    _pick_example(page, 0)
    label = page.locator("#input-image [data-testid='block-label']").first
    picture = page.locator("#input-image img").first
    assert label.is_visible() and picture.is_visible()
    assert not _boxes_intersect(label.bounding_box(), picture.bounding_box()), (label.bounding_box(), picture.bounding_box())
    # The picture stays inside its box (the padding does not push it onto the source buttons).
    block, sources = page.locator("#input-image").bounding_box(), page.locator("#input-image .source-selection").bounding_box()
    assert picture.bounding_box()["y"] + picture.bounding_box()["height"] <= sources["y"] + 1
    assert sources["y"] + sources["height"] <= block["y"] + block["height"] + 1
    page.close()


def test_an_mpeg4_clip_plays_in_the_browser(browser, picker_url, tmp_path):  # noqa: F811
    from tests.demo.test_playable_clip import write_clip

    clip = write_clip(tmp_path / "part2.mp4", "mpeg4", frames=36)
    page = _open(browser, picker_url)
    if "tiny-random-video-llava" not in page.locator("#banner").inner_text():
        pick_model(page, "tiny-random-video-llava")
        page.wait_for_function("/tiny-random-video-llava/.test(document.querySelector('#banner').innerText)", timeout=60_000)
    page.get_by_text("Video: PruneSID on every frame").click()
    page.locator("#input-video input[type=file]").set_input_files(clip)
    # The player gets the playable copy and can play it: no media error, data loaded.
    page.wait_for_function(
        """() => { const video = document.querySelector('#input-video video');
                   return video && /\\.webm/.test(video.currentSrc) && !video.error && video.readyState >= 2; }""",
        timeout=60_000,
    )
    assert "not playable" not in page.locator("#input-video").inner_text().lower()
    # On a phone the "Clip" label stays above the player, as the "Image" label above the picture.
    page.set_viewport_size({"width": 390, "height": 1000})
    page.locator("#input-video video").scroll_into_view_if_needed()
    label = page.locator("#input-video [data-testid='block-label']").first.bounding_box()
    assert not _boxes_intersect(label, page.locator("#input-video video").bounding_box())
    page.wait_for_function("/8 frames/.test(document.querySelector('#video-stats').innerText)", timeout=120_000)
    page.close()
