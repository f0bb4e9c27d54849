"""A first-time visitor on the launched demo, at 1400 and 390 px: the chat's refusals and
status, the explanation of a clicked patch kept in step with the controls and drawn on the
overlay, a typed fractional N, labels and legends, tables on a phone, the clip's own controls.

One launched app for the module (answers paced at 30 ms a token, so one still streams when a
new image is picked); a few page loads per width.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from tests.app.test_app_browser import ARTIFACTS, SLOW_APP, browser, click_overlay_at  # noqa: F401  (browser: a fixture)
from tests.conftest import launched_app

pytestmark = pytest.mark.browser
WIDTHS = [1400, 390]


@pytest.fixture(scope="module")
def first_use_url(tmp_path_factory):
    launcher = tmp_path_factory.mktemp("first-use") / "slow_app.py"
    launcher.write_text(SLOW_APP)
    args = ("--model", "tiny-random", "--max-new-tokens", "200")
    with launched_app(*args, script=str(launcher), log_path=ARTIFACTS / "first-use-server.log") as (url, _):
        yield url


def _open(browser, url, width):  # noqa: F811
    page = browser.new_page(viewport={"width": width, "height": 1000})
    page.goto(url)
    page.wait_for_selector("#send", timeout=60_000)
    return page


def _pick_example(page, index: int) -> None:
    page.locator("#input-image").locator("xpath=ancestor::div[contains(@class,'column')][1]").locator(".gallery-item").nth(index).click()
    page.wait_for_function("/Fed to the LLM/.test(document.querySelector('#stats').innerText)", timeout=60_000)


def _stats(page) -> str:
    return page.locator("#stats").inner_text()


def _row(page, name: str) -> str:
    match = re.search(rf"{name}[^\n\t]*\t([^\n]+)", _stats(page))
    assert match, _stats(page)
    return match.group(1)


def _tab(page, name: str) -> None:
    tab = page.get_by_role("tab", name=name, exact=True)
    if tab.count():
        tab.click()
    else:  # narrow screens put some tabs in the overflow menu
        page.get_by_role("button", name="More tabs").first.click()
        page.locator(".overflow-dropdown button", has_text=name).first.click()


def _overlay_pixels(page, selector: str) -> np.ndarray:
    source = page.locator(f"{selector} img").get_attribute("src")
    data = page.request.get(source).body()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _boxes_intersect(a, b) -> bool:
    return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]


@pytest.mark.parametrize("width", WIDTHS)
def test_the_overlays_stats_and_explanation_stay_in_step(browser, first_use_url, width):  # noqa: F811
    page = _open(browser, first_use_url, width)
    # 1. A question without an image: the server's reason is on the page, the question stays.
    page.fill("#message textarea", "What is this?")
    page.click("#send")
    page.wait_for_function("/Not sent: no image: upload one or pick an example/.test(document.querySelector('#reply-info').innerText)", timeout=30_000)
    assert page.input_value("#message textarea") == "What is this?"

    _pick_example(page, 0)
    # 3. Click a patch: explained, and outlined (blue) on the overlay; the groups are numbered.
    before = _overlay_pixels(page, "#kept-view")
    click_overlay_at(page, "#kept-view", 0.5, 0.55)
    page.wait_for_function("/Patch \\d+/.test(document.querySelector('#explain').innerText)", timeout=60_000)
    page.wait_for_function("/in blue/.test(document.querySelector('#explain').innerText)", timeout=60_000)
    after = _overlay_pixels(page, "#kept-view")
    assert after.shape == before.shape
    blue = (after[..., 0] < 20) & (np.abs(after[..., 1].astype(int) - 160) < 20) & (after[..., 2] > 235)
    assert blue.sum() > 20, "the clicked patch is not outlined in blue"
    first = page.locator("#explain").inner_text()
    groups_before = _row(page, "Groups K")
    assert re.search(rf"of {groups_before.split()[0]} \(", first), (first, groups_before)

    # Every control change re-explains the same pixel under the new setting.
    page.locator("#groups input[type=number]").fill("6")
    page.locator("#groups input[type=number]").press("Enter")
    page.wait_for_function("/Groups K[^\\n]*\\t6\\b/.test(document.querySelector('#stats').innerText)", timeout=60_000)
    page.wait_for_function("/of 6 \\(/.test(document.querySelector('#explain').innerText)", timeout=60_000)

    # 8. A fractional N is shown and used as the slider holds it; the next change renders.
    page.locator("#budget input[type=number]").fill("63.7")
    page.locator("#budget input[type=number]").press("Enter")
    page.wait_for_function("document.querySelector('#budget input[type=number]').value === '64'", timeout=30_000)
    page.locator("#groups input[type=number]").fill("5")
    page.locator("#groups input[type=number]").press("Enter")
    page.wait_for_function("/Groups K[^\\n]*\\t5\\b/.test(document.querySelector('#stats').innerText)", timeout=60_000)
    assert _row(page, "Budget N").startswith("64")
    assert "of 5 (" in page.locator("#explain").inner_text()
    # tau's row adds up: lambda x rho = tau, as written.
    lam, rho, tau = re.search(r"([\d.]+) × ([\d.]+) = ([\d.]+)", _row(page, "NMS threshold")).groups()
    assert abs(float(lam) * float(rho) - float(tau)) < 1e-3

    # 4. No image label over a chart or picture: no label badge intersects its image.
    _tab(page, "Budget")
    page.locator("#quotas-view img").wait_for(timeout=30_000)
    for selector in ("#kept-view", "#quotas-view"):
        image = page.locator(f"{selector} img").first
        if not image.is_visible():
            continue
        for label in page.locator(f"{selector} [data-testid='block-label']").all():
            if label.is_visible():
                assert not _boxes_intersect(label.bounding_box(), image.bounding_box()), selector

    # 6. Tables on this width: no cell narrower than its content, nothing cut off.
    cramped = page.evaluate(
        """() => [...document.querySelectorAll('#stats td, #stats th')]
             .filter(cell => cell.scrollWidth > cell.clientWidth + 1).map(cell => cell.innerText)"""
    )
    assert cramped == []
    cut = page.evaluate(
        """() => [...document.querySelectorAll('#stats table')].filter(table =>
             table.scrollWidth > table.clientWidth + 1 && !['auto', 'scroll'].includes(getComputedStyle(table).overflowX)).length"""
    )
    assert cut == 0
    page.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_chat_status_follows_refusals_and_new_images(browser, first_use_url, width):  # noqa: F811
    page = _open(browser, first_use_url, width)
    _pick_example(page, 1)
    # 2. A question the model cannot answer: the status does not stay at "generating...".
    page.fill("#message textarea", "word " * 401)
    page.click("#send")
    page.wait_for_function("/at most 2000 are accepted/.test(document.querySelector('#reply-info').innerText)", timeout=60_000)
    assert "generating" not in page.locator("#reply-info").inner_text()
    assert page.input_value("#message textarea").startswith("word word")

    # A new image while an answer streams: a new chat, and no status left over.
    page.locator("#chatbot").locator("button[aria-label='Clear']").first.click() if page.locator("#chatbot button[aria-label='Clear']").count() else None
    page.fill("#message textarea", "Describe it.")
    page.click("#send")
    page.wait_for_function("/generating/.test(document.querySelector('#reply-info').innerText)", timeout=60_000)
    page.fill("#message textarea", "And the colours?")
    page.click("#send")
    _pick_example(page, 2)
    page.wait_for_timeout(2500)  # the old answer would have written on by now
    assert page.locator("#reply-info").inner_text().strip() == ""
    assert "Describe it." not in page.locator("#chatbot").inner_text()
    assert "And the colours?" not in page.locator("#chatbot").inner_text()
    page.close()


def test_the_clip_follows_its_own_controls(browser, first_use_url):  # noqa: F811
    from tests.app.test_app_model_picker import pick_model

    page = _open(browser, first_use_url, 1400)
    pick_model(page, "tiny-random-video-llava")  # a model that takes clips
    page.wait_for_function("/tiny-random-video-llava/.test(document.querySelector('#banner').innerText)", timeout=60_000)
    page.get_by_text("Video: PruneSID on every frame").click()
    page.locator("#input-video").locator("xpath=ancestor::div[contains(@class,'column')][1]").locator(".gallery-item").first.click()
    page.wait_for_function("/N = 17 per frame/.test(document.querySelector('#video-stats').innerText)", timeout=120_000)
    # 5. The clip's N re-renders at once, no "Analyze the clip" needed.
    page.locator("#frame-budget input[type=number]").fill("9")
    page.locator("#frame-budget input[type=number]").press("Enter")
    page.wait_for_function("/N = 9 per frame/.test(document.querySelector('#video-stats').innerText)", timeout=120_000)
    page.locator("#video-dynamic input").check()
    page.wait_for_function("/[Dd]ynamic/.test(document.querySelector('#video-stats').innerText)", timeout=120_000)
    page.close()
