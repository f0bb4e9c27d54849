"""A real browser on the launched demo: upload, analyze, move the budget, ask.

Chromium comes from the system (Debian's `chromium`); `.ci/run` installs it and sets
PRUNESID_REQUIRE_BROWSER=1, so in CI its absence fails instead of skipping.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import scene

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


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
    match = re.search(r"Kept patches\s+(\d+)", text)
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
    page.wait_for_function("document.querySelector('#stats') && /Kept patches/.test(document.querySelector('#stats').innerText)", timeout=60_000)
    assert page.locator("#kept-view img").count() == 1
    assert _kept_count(page) == 63

    page.locator("#budget input[type=range]").fill("128")
    page.wait_for_function(
        "/Kept patches\\s+127/.test(document.querySelector('#stats').innerText)", timeout=60_000
    )
    assert _kept_count(page) == 127
    assert "Visual tokens to the LLM" in page.locator("#stats").inner_text()

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
