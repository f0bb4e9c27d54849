"""The Video section's one-click switch: a visitor whose model takes images only is offered a
listed model that takes clips; the click goes through the model picker (the same per-visitor
choice, limit on switches, re-render and clearing), shows that model in the picker and opens
the clip upload. No button when the model takes clips, nor when no clip model is listed.

Two launched apps: tiny-random at start-up (the first-time visitor's page), and
tiny-random-qwen2-vl (a start-up model that takes clips; its switch limit is used up).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest
from gradio_client import Client

from demo.limits import MODEL_SWITCHES
from demo.models import ModelSlot, clip_model, picker_choices
from tests.app.test_app_browser import ARTIFACTS, browser  # noqa: F401  (browser: a fixture)
from tests.app.test_app_first_use import _pick_example
from tests.app.test_app_model_picker import _open, pick_model
from tests.conftest import launched_app

CLIP = Path(__file__).resolve().parents[2] / "assets" / "clip.mp4"
VIDEO_LLAVA = "tiny-random-video-llava"
# The app as `python app.py` runs it, with switches that never age out of the limit's window
# during the test: the count, not the clock, decides.
LONG_WINDOW_APP = """
import sys
sys.path.insert(0, ".")
import demo.models
demo.models.MODEL_SWITCH_WINDOW_S = 3600.0
import app
app.main(sys.argv[1:])
"""


@pytest.fixture(autouse=True)
def no_deployment_clip_model(monkeypatch):
    monkeypatch.delenv("PRUNESID_VIDEO_MODEL", raising=False)


@pytest.fixture(scope="module")
def images_first_url():
    with launched_app("--model", "tiny-random", "--max-new-tokens", "8", log_path=ARTIFACTS / "clip-switch-server.log") as (url, _):
        yield url


@pytest.fixture(scope="module")
def clips_first_url(tmp_path_factory):
    launcher = tmp_path_factory.mktemp("clip-switch") / "long_window_app.py"
    launcher.write_text(LONG_WINDOW_APP)
    args = ("--model", "tiny-random-qwen2-vl", "--max-new-tokens", "8")
    with launched_app(*args, script=str(launcher), log_path=ARTIFACTS / "clip-switch-limit-server.log") as (url, _):
        yield url


def _switch_button(page):
    return page.locator("#switch-to-clips")


def _open_video_section(page) -> None:
    page.get_by_text("Video: PruneSID on every frame").click()


# --- which model is offered ------------------------------------------------------------------


def test_the_offered_model_is_a_listed_one_that_takes_clips(monkeypatch):
    listed = picker_choices("tiny-random", hub_reachable=False)
    assert clip_model(listed) == VIDEO_LLAVA
    # A start-up model that takes clips comes first: it is already loaded for most visitors.
    assert clip_model(listed, SimpleNamespace(name="tiny-random-qwen2-vl", takes_clips=True)) == "tiny-random-qwen2-vl"
    assert clip_model(listed, SimpleNamespace(name="tiny-random", takes_clips=False)) == VIDEO_LLAVA
    # The deployment's clip model before both (it is listed by picker_choices).
    monkeypatch.setenv("PRUNESID_VIDEO_MODEL", "LanguageBind/Video-LLaVA-7B-hf")
    deployed = picker_choices("tiny-random", hub_reachable=False)
    assert clip_model(deployed, SimpleNamespace(name="tiny-random-qwen2-vl", takes_clips=True)) == "LanguageBind/Video-LLaVA-7B-hf"
    # None listed: nothing offered, whatever the names look like.
    assert clip_model(["tiny-random", "tiny-random-next", "my-video-captioner"]) is None
    slot = ModelSlot(SimpleNamespace(name="tiny-random"), ["tiny-random", "tiny-random-next"], load=None)
    assert slot.clip_model is None


def test_no_clip_model_listed_no_button(tiny_vlm):
    import app
    from demo.models import Served

    first = Served.of(tiny_vlm, "banner")

    def shown(choices) -> dict:
        config = app.build(ModelSlot(first, choices, load=None)).get_config_file()
        props = {c["props"].get("elem_id"): c["props"] for c in config["components"] if c["props"].get("elem_id")}
        return {"button": (props["switch-to-clips"]["visible"], props["switch-to-clips"]["value"]), "note": props["video-off"]["value"]}

    offered = shown(["tiny-random", VIDEO_LLAVA])
    assert offered["button"] == (True, f"Switch to {VIDEO_LLAVA}")
    assert f"or switch to `{VIDEO_LLAVA}` with the button below" in offered["note"]
    none = shown(["tiny-random", "tiny-random-next"])
    assert none["button"][0] is False
    assert none["note"] == "The chosen model takes images only. Pick a model that takes clips above to see PruneSID on every frame of a clip."


# --- the first-time visitor's page -------------------------------------------------------------


@pytest.mark.parametrize("width", [1400, 390])
def test_one_click_switches_to_the_clip_model_as_the_picker_does(browser, images_first_url, width):  # noqa: F811
    page = _open(browser, images_first_url, width)
    _pick_example(page, 0)  # something of the previous model's to be cleared
    page.fill("#message textarea", "What is this?")
    page.click("#send")
    page.wait_for_function("/What is this\\?/.test(document.querySelector('#chatbot').innerText)", timeout=30_000)

    _open_video_section(page)
    button = _switch_button(page)
    button.wait_for(state="visible", timeout=30_000)
    assert button.inner_text().strip() == f"Switch to {VIDEO_LLAVA}"
    assert page.locator("#video-off").is_visible() and not page.locator("#input-video").is_visible()
    box = button.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width  # on a phone too, the whole button is on screen

    button.click()
    # The picker shows the clip model, the banner names it, the Video section is on.
    page.wait_for_function(f"document.querySelector('#model-picker input').value === '{VIDEO_LLAVA}'", timeout=30_000)
    page.locator("#input-video").wait_for(state="visible", timeout=60_000)
    assert VIDEO_LLAVA in page.locator("#banner").inner_text()
    assert not page.locator("#video-off").is_visible() and not button.is_visible()
    assert VIDEO_LLAVA in page.locator("#video-note").inner_text()
    # What the picker clears on a switch is cleared: the chat of the previous model.
    page.wait_for_function("!/What is this\\?/.test(document.querySelector('#chatbot').innerText)", timeout=30_000)
    # A clip is analysed on the model the click chose.
    page.locator("#input-video input[type=file]").set_input_files(str(CLIP))
    page.wait_for_function("/8 frames/.test(document.querySelector('#video-stats').innerText)", timeout=120_000)

    # Back to a model that takes images only: the button is offered again; on another model
    # that takes clips it is not.
    pick_model(page, "tiny-random")
    button.wait_for(state="visible", timeout=60_000)
    assert not page.locator("#input-video").is_visible()
    pick_model(page, "tiny-random-qwen2-vl")
    page.locator("#input-video").wait_for(state="visible", timeout=60_000)
    assert not button.is_visible() and not page.locator("#video-off").is_visible()
    page.close()


# --- a start-up model that takes clips; the limit on switches ------------------------------------


def test_no_button_when_the_model_takes_clips_and_the_click_obeys_the_switch_limit(browser, clips_first_url):  # noqa: F811
    page = _open(browser, clips_first_url)
    _open_video_section(page)
    page.locator("#input-video").wait_for(state="visible", timeout=30_000)
    assert not _switch_button(page).is_visible() and not page.locator("#video-off").is_visible()

    pick_model(page, "tiny-random")  # this client's first switch
    _switch_button(page).wait_for(state="visible", timeout=60_000)
    assert _switch_button(page).inner_text().strip() == "Switch to tiny-random-qwen2-vl"  # the start-up model takes clips

    # The same client (this address) uses up its switches through the API's /choose_model.
    client = Client(clips_first_url, verbose=False)
    for _, model in zip(range(MODEL_SWITCHES - 1), itertools.cycle(["tiny-random", "tiny-random-qwen2-vl"])):
        client.predict(model=model, api_name="/choose_model")
    with pytest.raises(Exception, match=f"{MODEL_SWITCHES} model switches a minute is the most one visitor may make"):
        client.predict(model="tiny-random-next", api_name="/choose_model")

    # The click is one more switch: refused with the same message, and nothing changed.
    _switch_button(page).click()
    page.wait_for_function(f"/{MODEL_SWITCHES} model switches a minute/.test(document.body.innerText)", timeout=60_000)
    assert "tiny-random-qwen2-vl" not in page.locator("#banner").inner_text()
    assert page.locator("#video-off").is_visible() and not page.locator("#input-video").is_visible()
    # The picker shows the model still served, not the refused one.
    page.wait_for_function("document.querySelector('#model-picker input').value === 'tiny-random'", timeout=30_000)
    page.close()
