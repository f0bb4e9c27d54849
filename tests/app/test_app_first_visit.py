"""A first-time visitor on the launched demo, hosted policy (every built-in resident), at
1400 and 390 px: the numbers the page shows agree with the library and with each other on
every family (images, and a clip on Qwen2.5-VL, InternVL and Video-LLaVA); the Compare and
frame sheets can be seen whole on a phone with readable captions; a refused question leaves
the conversation usable; VisionZip chosen, then a family without CLS: no error, VisionZip no
longer offered; the page's accessibility tree names every control and image, and a patch can
be explained from the keyboard.

One launched app for the module, one page per test (reused across families).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from demo.files import example_images
from demo.video import example_videos
from prunesid import PruneSID, load_vlm
from tests.app.test_app_browser import ARTIFACTS, browser  # noqa: F401  (browser: a fixture)
from tests.app.test_app_model_picker import pick_model
from tests.conftest import app_env, launched_app

pytestmark = pytest.mark.browser
IMAGE_FAMILIES = ["tiny-random", "tiny-random-next", "tiny-random-qwen2-vl", "tiny-random-mgm-hd", "tiny-random-llava-onevision", "tiny-random-internvl"]
CLIP_FAMILIES = ["tiny-random-qwen2-vl", "tiny-random-internvl", "tiny-random-video-llava"]
NO_ERROR = "() => !document.querySelector('.toast-body.error, .toast-wrap .error, [data-testid=toast-body].error') && ![...document.querySelectorAll('.error')].some(e => e.offsetParent !== null && /Error/.test(e.innerText))"


@pytest.fixture(scope="module")
def hosted_url():
    env = app_env(PRUNESID_PUBLIC="1")
    with launched_app("--model", "tiny-random", "--max-new-tokens", "8", env=env, log_path=ARTIFACTS / "first-visit-server.log") as (url, _):
        yield url


@pytest.fixture(scope="module")
def vlms():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_vlm(name)
        return cache[name]

    return get


def _open(browser, url, width):  # noqa: F811
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(url)
    page.wait_for_selector("#send", timeout=60_000)
    return page


def _pick_example(page, index: int = 0) -> None:
    page.locator("#input-image").locator("xpath=ancestor::div[contains(@class,'column')][1]").locator(".gallery-item").nth(index).click()


def _row(text: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}[^\t\n]*\t([^\n]+)$", text, re.M)
    assert match, (name, text)
    return match.group(1)


def _switch(page, name: str, follow: str = "#stats") -> None:
    """Pick ``name`` and wait until the banner names it and ``follow`` has re-rendered."""
    before = page.locator(follow).inner_text() if page.locator(follow).count() else ""
    pick_model(page, name)
    page.wait_for_function(f"/{re.escape(name)}`?\\b/.test(document.querySelector('#banner').innerText)", timeout=60_000)
    if before.strip():
        page.wait_for_function(
            "([selector, before]) => { const e = document.querySelector(selector); return e && e.innerText !== before && e.innerText.trim(); }",
            arg=[follow, before], timeout=60_000,
        )


def _stats_of(page, model: str, budget: int) -> str:
    page.wait_for_function(
        f"() => {{ const t = document.querySelector('#stats').innerText; return /Model\\t{model}\\n/.test(t) && /Budget N\\t{budget}\\b/.test(t) && /Fed to the LLM/.test(t); }}",
        timeout=60_000,
    )
    return page.locator("#stats").inner_text()


@pytest.mark.parametrize("width", [1400, 390])
def test_every_familys_numbers_agree_with_the_library_and_each_other(browser, hosted_url, vlms, width):  # noqa: F811
    """Reads each family's stats off the page (N = 64, then N = 8) and checks them against
    the library: tokens fed == VLM.fed_tokens, unmodified == unmodified_visual_tokens, the
    parts (tokens + CLS + newline tokens) add up to what is fed, CLS named only where the
    family feeds one, N_eff's floor stated on Qwen-VL, tau = lambda x basis as written.
    Catches "N = 17 per frame" beside 16 kept, "315 + CLS" beside 320 on MGM-HD, an
    unexplained 40 on OneVision and a CLS on families that have none."""
    page = _open(browser, hosted_url, width)
    _pick_example(page, 0)
    picture = Path(example_images()[0]).read_bytes()
    families = IMAGE_FAMILIES if width == 1400 else ["tiny-random-mgm-hd", "tiny-random-qwen2-vl"]
    for name in families:
        if name != "tiny-random":
            _switch(page, name)
        vlm = vlms(name)
        encoded = vlm.encode(picture)
        text = _stats_of(page, name, 64)
        fed_row = _row(text, "Fed to the LLM")
        fed = vlm.fed_tokens(encoded.image_size, PruneSID(budget=64))
        numbers = [int(n) for n in re.findall(r"\d+", fed_row.split(";")[0])]
        assert numbers[-1] == fed, (name, fed_row)
        tokens = int(re.match(r"(\d+) tokens", fed_row).group(1))
        cls = re.search(r"\+ (?:(\d+) )?CLS", fed_row)
        newlines = re.search(r"\+ (\d+) newline tokens", fed_row)
        cls_count = (int(cls.group(1) or 1)) if cls else 0
        assert tokens + cls_count + (int(newlines.group(1)) if newlines else 0) == fed, fed_row
        reserved = vlm.compress(encoded, PruneSID(budget=64))[0].reserved
        assert (cls is not None) == bool(reserved) and cls_count == reserved * encoded.num_views, (name, fed_row)
        if not reserved:
            assert "CLS" not in text, (name, text)
        unmodified = vlm.unmodified_visual_tokens(encoded)
        assert _row(text, "Compression").startswith(f"{unmodified} tokens unmodified / {fed} = "), text
        if encoded.num_views > 1:
            per_view = [int(n) for n in fed_row.split("per view ")[1].split(", ")]
            assert sum(per_view) == tokens and len(per_view) == encoded.num_views
        lam, basis, tau = (float(x) for x in re.search(r"([\d.]+) × ([\d.]+) = ([\d.]+)", _row(text, "NMS threshold")).groups())
        assert abs(lam * basis - tau) < 5e-4 and _row(text, "λ").startswith(f"{lam:g}"), text
    # Qwen-VL at N = 8: the floor of 16 decides, and the row says so.
    _switch(page, "tiny-random-qwen2-vl")
    _stats_of(page, "tiny-random-qwen2-vl", 64)  # the switch's re-render has landed: the new N is not overwritten by it
    page.locator("#budget input[type=number]").fill("8")
    page.locator("#budget input[type=number]").press("Enter")
    text = _stats_of(page, "tiny-random-qwen2-vl", 8)
    tokens = vlms("tiny-random-qwen2-vl").encode(picture).num_tokens
    assert _row(text, "Budget N").endswith(f"max(round({tokens}·8/576), 16) = 16 (the floor of 16 applies)"), text
    assert _row(text, "Fed to the LLM") == "16 tokens"
    page.screenshot(path=str(ARTIFACTS / f"first-visit-numbers-{width}.png"), full_page=True)
    page.close()


def test_every_clip_familys_numbers_agree_with_the_library(browser, hosted_url, vlms):  # noqa: F811
    """A clip on Qwen2.5-VL (temporal groups of 2 frames, N read per 576 tokens), InternVL and
    Video-LLaVA (CLS per frame): the tokens fed as the library counts them, named by the
    family's views, CLS only on Video-LLaVA."""
    page = _open(browser, hosted_url, 1400)
    clip = Path(example_videos()[0]).read_bytes()
    for name in CLIP_FAMILIES:
        _switch(page, name, follow="#video-stats")
        if name == CLIP_FAMILIES[0]:
            page.get_by_text("Video: PruneSID on every frame").click()
            page.locator("#input-video").locator("xpath=ancestor::div[contains(@class,'column')][1]").locator(".gallery-item").first.click()
        vlm = vlms(name)
        encoded = vlm.encode(clip)
        page.wait_for_function(f"/video tokens to the LLM/.test(document.querySelector('#video-stats').innerText) && /{name}/.test(document.querySelector('#banner').innerText)", timeout=120_000)
        page.wait_for_timeout(500)
        page.wait_for_function("() => !document.querySelector('#video-stats .pending, #video-stats .generating')", timeout=60_000)
        text = page.locator("#video-stats").inner_text()
        fed = len(vlm.visual_features(encoded, vlm.compress(encoded, PruneSID(budget=17))[0]))
        unmodified = vlm.unmodified_visual_tokens(encoded)
        head = text.splitlines()[0]
        assert head.startswith(f"{fed} video tokens to the LLM") and f"of {unmodified} unmodified" in head, (name, head)
        assert ("CLS" in text) == (name == "tiny-random-video-llava"), (name, text)
        rows = [line.split("\t") for line in text.splitlines() if re.match(r"^(frames? \d)", line)]
        assert len(rows) == encoded.num_views, text
        kept = sum(int(row[3].split()[0]) for row in rows) + (len(rows) if name == "tiny-random-video-llava" else 0)
        assert kept == fed, (name, rows)
        if name == "tiny-random-qwen2-vl":
            assert "temporal groups" in head and "N_eff = max(round(T·N/576), 16)" in head
    page.close()


@pytest.mark.parametrize("width", [390])
def test_compare_and_frame_sheets_can_be_seen_whole_on_a_phone(browser, hosted_url, width):  # noqa: F811
    """At 390 px the wide sheets start at their box's left edge (nothing centred out of
    reach), scroll sideways to their right edge, and are drawn at their own pixel size, so
    their captions keep their drawn 13-16 px. Catches the centred overflow that hid 231 px, and
    a multi-view overlay squeezed to the phone's width (the class that lets it scroll dropped)."""
    page = _open(browser, hosted_url, width)
    _pick_example(page, 0)
    page.wait_for_function("/Fed to the LLM/.test(document.querySelector('#stats').innerText)", timeout=60_000)
    page.get_by_text("Compare", exact=True).click()
    page.locator("#compare-groupings").click()
    page.wait_for_selector("#comparison img", timeout=60_000)
    _whole("#comparison", page)
    page.get_by_text("Methods: PruneSID next to").click()
    page.locator("#compare-methods").click()
    page.wait_for_selector("#methods-sheet img", timeout=120_000)
    _whole("#methods-sheet", page)
    # Several views side by side (MGM-HD: the global view and its 4 crops): drawn at their own
    # size and scrolled, not squeezed into 390 px (3 px patches); the page itself never scrolls sideways.
    _switch(page, "tiny-random-mgm-hd")
    page.wait_for_function("/tiny-random-mgm-hd/.test(document.querySelector('#stats').innerText)", timeout=120_000)
    _whole("#kept-view", page)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    _switch(page, "tiny-random-video-llava")
    page.get_by_text("Video: PruneSID on every frame").click()
    page.locator("#input-video").locator("xpath=ancestor::div[contains(@class,'column')][1]").locator(".gallery-item").first.click()
    page.wait_for_selector("#frames-kept img", timeout=120_000)
    _whole("#frames-kept", page)
    page.close()


def _whole(selector: str, page) -> None:
    page.wait_for_function(f"() => {{ const i = document.querySelector('{selector} img'); return i && i.complete && i.naturalWidth > 0; }}", timeout=30_000)
    page.locator(f"{selector} img").scroll_into_view_if_needed()
    found = page.evaluate(
        f"""() => {{ const img = document.querySelector('{selector} img'); const r = img.getBoundingClientRect();
            let box = img.parentElement; while (box && getComputedStyle(box).overflowX !== 'auto') box = box.parentElement;
            const b = box.getBoundingClientRect(); box.scrollLeft = box.scrollWidth;
            const end = img.getBoundingClientRect();
            return {{left: r.left, boxLeft: b.left, scale: r.width / img.naturalWidth, rightAfterScroll: end.right, boxRight: b.right + 1}}; }}"""
    )
    assert found["left"] >= found["boxLeft"] - 0.5, (selector, found)  # its left edge can be seen
    assert found["rightAfterScroll"] <= found["boxRight"] + 0.5, (selector, found)  # and its right edge, scrolled
    assert found["scale"] >= 11 / 13, (selector, found)  # captions (13-16 px drawn) stay >= 11 px


def test_a_refused_question_leaves_the_conversation_usable(browser, hosted_url):  # noqa: F811
    """An empty question and one without an image: the reason under the chat, no "Error"
    badge over the conversation; then a question is answered and undo works. Catches the
    send event raising (a bare "Error" over the chat, a 500 in the console)."""
    page = _open(browser, hosted_url, 1400)
    failed = []
    page.on("response", lambda response: failed.append(response.url) if response.status >= 500 else None)
    page.fill("#message textarea", "What is this?")
    page.click("#send")
    page.wait_for_function("/Not sent: no image/.test(document.querySelector('#reply-info').innerText)", timeout=30_000)
    assert page.evaluate(NO_ERROR) and page.input_value("#message textarea") == "What is this?"
    _pick_example(page, 1)
    page.wait_for_function("/Fed to the LLM/.test(document.querySelector('#stats').innerText)", timeout=60_000)
    page.wait_for_function("/Click a patch/.test(document.querySelector('#overlays-hint').innerText)", timeout=10_000)  # the overlays now show the image
    page.fill("#message textarea", "   ")
    page.click("#send")
    page.wait_for_function("/Not sent: the message is empty/.test(document.querySelector('#reply-info').innerText)", timeout=30_000)
    assert page.evaluate(NO_ERROR)
    page.fill("#message textarea", "What is this?")
    page.click("#send")
    page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=bot]').length === 1 && /visual tokens/.test(document.querySelector('#reply-info').innerText)", timeout=60_000)
    undo = page.locator("#chatbot button[aria-label='Undo']")
    if undo.count():
        undo.first.click()
        page.wait_for_function("document.querySelector('#message textarea').value === 'What is this?'", timeout=30_000)
    assert page.evaluate(NO_ERROR) and not failed, failed
    page.close()


def test_visionzip_then_a_family_without_cls_shows_no_error(browser, hosted_url):  # noqa: F811
    """VisionZip chosen on LLaVA, then Qwen2-VL (no CLS): no error anywhere, VisionZip no
    longer offered and the note says why, and the method view shows the new model's numbers
    (not "of 576"). Catches the error toasts and badge over the previous model's table."""
    page = _open(browser, hosted_url, 1400)
    _pick_example(page, 0)
    page.wait_for_function("/Fed to the LLM/.test(document.querySelector('#stats').innerText)", timeout=60_000)
    page.get_by_text("Methods: PruneSID next to").click()
    page.locator("#method").get_by_text("VisionZip", exact=True).click()
    page.wait_for_function("/VisionZip/.test(document.querySelector('#method-stats').innerText)", timeout=60_000)
    assert "of 576" in page.locator("#method-stats").inner_text()
    _switch(page, "tiny-random-qwen2-vl")
    page.wait_for_function("/VisionZip needs/.test(document.querySelector('#method-note').innerText)", timeout=60_000)
    page.wait_for_function("() => !/of 576/.test(document.querySelector('#method-stats').innerText) && /of 391/.test(document.querySelector('#method-stats').innerText)", timeout=60_000)
    assert page.locator("#method input[value='VisionZip']").count() == 0
    assert page.locator("#method input[value='PruneSID']").is_checked()
    page.wait_for_timeout(1000)
    assert page.evaluate(NO_ERROR)
    page.close()


def test_the_accessibility_tree_names_everything_and_a_patch_can_be_explained_by_keyboard(browser, hosted_url):  # noqa: F811
    """Every button, box and image has a name (or alt text); each radio choice is one group
    (one name); the keyboard picker explains a patch and the explanation is a live region.
    Catches unnamed example buttons, images without alt, a chat box named "Textbox" and
    radios in groups of one."""
    page = _open(browser, hosted_url, 1400)
    _pick_example(page, 0)
    page.wait_for_function("/Fed to the LLM/.test(document.querySelector('#stats').innerText)", timeout=60_000)
    page.wait_for_function("() => [...document.querySelectorAll('.gallery-item')].every(b => /Example \\d+: \\S/.test(b.getAttribute('aria-label') || ''))", timeout=10_000)
    tree = page.locator("body").aria_snapshot()
    unnamed = [line.strip() for line in tree.splitlines() if re.fullmatch(r"- (button|img|textbox|radio|checkbox|combobox|slider|spinbutton)(:)?", line.strip())]
    assert unnamed == [], unnamed
    assert 'textbox "Question about the image"' in tree
    page.get_by_text("Methods: PruneSID next to").click()
    page.locator("#method input[type=radio]").first.wait_for(timeout=10_000)
    page.wait_for_timeout(300)  # the page's script names the radios once they are drawn
    groups = page.evaluate("() => ['grouping', 'method'].map(id => [...new Set([...document.querySelectorAll('#' + id + ' input[type=radio]')].map(r => r.name))])")
    assert groups == [["grouping"], ["method"]], groups
    # The keyboard: the picker's numbers, then Enter on its button.
    page.locator("#pick-row input").fill("3")
    page.locator("#pick-column input").fill("5")
    page.locator("#pick-patch").focus()
    page.keyboard.press("Enter")
    page.wait_for_function("/Patch 77 \\(row 3, column 5/.test(document.querySelector('#explain').innerText)", timeout=60_000)
    assert page.locator("#explain").get_attribute("aria-live") == "polite"
    page.close()


def test_the_model_picker_opens_again_after_escape(browser, hosted_url):  # noqa: F811
    """Esc closes the picker; the next click opens it again (it used to need a click
    elsewhere on the page first)."""
    page = _open(browser, hosted_url, 1400)
    box = page.locator("#model-picker input")
    box.click()
    page.locator("[data-testid='dropdown-option']").first.wait_for(state="visible", timeout=10_000)
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.querySelector(\"[data-testid='dropdown-option']\")", timeout=10_000)
    box.click()
    page.locator("[data-testid='dropdown-option']").first.wait_for(state="visible", timeout=10_000)
    page.close()


# Records, from now on, whether the chat's Stop was ever pressable and whether its answers were ever all gone.
WATCH_CHAT = """([chat, stop]) => {
  window.watched = {stopOn: false, emptied: false};
  const look = () => {
    const button = document.querySelector(stop);
    if (button && !button.disabled) window.watched.stopOn = true;
    if (document.querySelectorAll(chat + ' [data-testid=bot]').length === 0) window.watched.emptied = true;
  };
  new MutationObserver(look).observe(document.body, {childList: true, subtree: true, attributes: true, characterData: true});
}"""


def test_stop_is_off_when_idle_and_the_clip_chat_has_stop_retry_undo(browser, hosted_url):  # noqa: F811
    """Stop (image and clip chat) cannot be pressed while nothing is being written, can be
    while an answer streams, and is off again once it is done; the clip chat has Retry (the
    answer is written again) and Undo (the question back in the box, the turn gone).
    Catches a Stop that looks active on an idle page, and a clip chat without Stop / Retry /
    Undo (its answers used to be stateless, with nothing to retry or undo). Also: before any
    image the overlays' place says what will appear there, and the empty Clip box draws its
    Upload / Camera buttons whole (they were cut in half by the box's bottom edge)."""
    page = _open(browser, hosted_url, 1400)
    assert page.locator("#stop").is_disabled()
    assert page.locator("#overlays-hint").is_visible() and "Pick an example" in page.locator("#overlays-hint").inner_text()
    _switch(page, "tiny-random-video-llava", follow="#video-stats")
    page.get_by_text("Video: PruneSID on every frame").click()
    page.locator("#input-video .source-selection button").first.wait_for(timeout=10_000)
    cut = page.evaluate("() => { const box = document.querySelector('#input-video').getBoundingClientRect(); return [...document.querySelectorAll('#input-video .source-selection button')].map(b => b.getBoundingClientRect().bottom - box.bottom); }")
    assert cut and max(cut) <= 0, cut  # every source button ends inside the box
    page.locator("#input-video").locator("xpath=ancestor::div[contains(@class,'column')][1]").locator(".gallery-item").first.click()
    page.wait_for_function("/video tokens to the LLM/.test(document.querySelector('#video-stats').innerText)", timeout=120_000)
    assert page.locator("#video-stop").is_disabled() and page.locator("#stop").is_disabled()
    answered = "() => document.querySelectorAll('#video-chatbot [data-testid=bot]').length === 1 && /video tokens \\(/.test(document.querySelector('#video-reply-info').innerText)"
    page.evaluate(WATCH_CHAT, ["#video-chatbot", "#video-stop"])
    page.fill("#video-message textarea", "What moves?")
    page.click("#video-send")
    page.wait_for_function(answered, timeout=60_000)
    page.wait_for_function("() => document.querySelector('#video-stop').disabled", timeout=10_000)
    assert page.evaluate("window.watched.stopOn"), "Stop was never pressable while the answer was written"
    assert page.input_value("#video-message textarea") == ""
    # Retry: the answer goes and is written again, the question stays.
    page.evaluate(WATCH_CHAT, ["#video-chatbot", "#video-stop"])
    page.locator("#video-chatbot button[aria-label='Retry']").click()
    page.wait_for_function("() => window.watched.emptied", timeout=30_000)
    page.wait_for_function(answered, timeout=60_000)
    assert page.locator("#video-chatbot [data-testid=user]").count() == 1
    page.wait_for_function("() => document.querySelector('#video-stop').disabled", timeout=10_000)
    # Undo: the turn is gone and its question is back in the box.
    page.locator("#video-chatbot button[aria-label='Undo']").click()
    page.wait_for_function("() => document.querySelector('#video-message textarea').value === 'What moves?'", timeout=30_000)
    assert page.locator("#video-chatbot [data-testid=user]").count() == 0
    assert page.evaluate(NO_ERROR)
    page.close()
