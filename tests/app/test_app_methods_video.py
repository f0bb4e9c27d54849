"""The launched app's method switch, "Compare methods" and video section: through its API
with gradio_client, and in a real browser (the switch changes the kept view; the example
clip's frame strip appears)."""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from demo.methods import METHOD_CHOICES
from tests.conftest import scene
from tests.app.test_app_browser import browser  # noqa: F401  (the shared Chromium fixture)
from tests.app.test_app_model_picker import pick_model

CLIP = Path(__file__).resolve().parents[2] / "assets" / "clip.mp4"
VIDEO_CONTROLS = {"budget": 17, "groups": 0, "lam": 0, "grouping": "psca", "dynamic": False}


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("methods-app") / "scene.png"
    scene(640, 480, seed=31).save(path)
    return path


def test_compare_methods_answers_with_every_method(client, picture):
    sheet, table, rows = client.predict(image=handle_file(str(picture)), question="What is in it?", budget=32, api_name="/compare_methods")
    with Image.open(sheet) as drawn:
        assert drawn.width > 640 and drawn.height > 480
    assert [row["method"] for row in rows] == ["all tokens"] + METHOD_CHOICES
    assert rows[0]["visual_tokens"] == 576
    assert all(row["visual_tokens"] == 32 for row in rows[1:] if row["method"] != "PruneSID-Dyn")
    for name in METHOD_CHOICES:
        assert name in table


def test_the_method_endpoint_draws_each_method(client, picture):
    drawn = {}
    for method in ("PruneSID", "VisionZip", "uniform"):
        path, stats, _ = client.predict(image=handle_file(str(picture)), method=method, budget=64, api_name="/analyze_method")
        assert stats["method"] == method and stats["visual_tokens"] == 64
        drawn[method] = Path(path).read_bytes()
    assert len(set(drawn.values())) == 3


def test_a_clip_on_a_model_that_takes_images_only_is_refused_by_name(client):
    with pytest.raises(Exception, match="tiny-random takes images only: choose a model that takes clips first"):
        client.predict(video=handle_file(str(CLIP)), **VIDEO_CONTROLS, api_name="/analyze_video")


def test_analyze_video_and_chat_about_the_clip(app_url):
    client = Client(app_url, verbose=False)  # a session of its own: its model is the video model
    client.predict(model="tiny-random-video-llava", api_name="/choose_model")
    clip = handle_file(str(CLIP))
    groups, survivors, kept, chart, stats, table = client.predict(video=clip, **VIDEO_CONTROLS, api_name="/analyze_video")
    assert stats["frames"] == 8
    assert [frame["kept"] for frame in stats["per_frame"]] == [16] * 8  # 17 per frame, the CLS included
    for path in (groups, survivors, kept, chart):
        with Image.open(path) as picture:
            assert picture.width > picture.height  # a strip of frames / a per-frame chart
    history, info, stats, _ = client.predict(message="What moves?", history=[], video=clip, **VIDEO_CONTROLS, api_name="/chat_video")
    assert "What moves?" in str(history[-2]["content"]) and history[-1]["role"] == "assistant"
    assert f"{8 * 17} video tokens" in info


def test_switching_the_method_changes_the_kept_view_in_the_browser(browser, app_url, picture):  # noqa: F811
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(app_url)
    page.wait_for_selector("#banner", timeout=60_000)
    page.locator("#input-image input[type=file]").set_input_files(str(picture))
    page.wait_for_function("document.querySelector('#stats') && /Fed to the LLM/.test(document.querySelector('#stats').innerText)", timeout=60_000)
    page.get_by_text("Methods: PruneSID next to VisionZip", exact=False).click()
    page.locator("#analyze-method").click()
    page.wait_for_function("/PruneSID/.test(document.querySelector('#method-stats').innerText)", timeout=60_000)
    first = page.locator("#method-view img").get_attribute("src")
    page.locator("#method").get_by_text("VisionZip", exact=True).click()
    page.wait_for_function("/VisionZip/.test(document.querySelector('#method-stats').innerText)", timeout=60_000)
    page.wait_for_function(f"document.querySelector('#method-view img').getAttribute('src') !== {first!r}", timeout=60_000)
    assert page.locator("#method-view img").get_attribute("src") != first
    page.close()


def test_the_example_clip_shows_its_frame_strip_in_the_browser(browser, app_url):  # noqa: F811
    page = browser.new_page(viewport={"width": 1400, "height": 2600})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(app_url)
    page.wait_for_selector("#banner", timeout=60_000)
    pick_model(page, "tiny-random-video-llava")
    page.wait_for_function("/tiny-random-video-llava/.test(document.querySelector('#banner').innerText)", timeout=60_000)
    page.get_by_text("Video: PruneSID on every frame", exact=False).click()
    page.locator("#input-video input[type=file]").set_input_files(str(CLIP))
    page.wait_for_selector("#frames-kept img", timeout=120_000)
    page.wait_for_function("/8/.test(document.querySelector('#video-stats').innerText)", timeout=60_000)
    width, height = page.locator("#frames-kept img").evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width > 2 * height  # eight frames side by side (in rows of several)
    page.close()
    assert not errors, errors
