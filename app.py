"""PruneSID demo: chat with LLaVA through the compressor and see which vision tokens it keeps.

    python app.py [--model llava-hf/llava-1.5-7b-hf] [--port 7860] [--max-new-tokens 96]

The page reads top to bottom: banner, image and controls, the overlays and stats (click a
patch: why was it kept or dropped?), the chat, then the comparisons; here, one builder per
section and the wiring of each section's events. The work itself lives in demo/: events.py
(what each event does, on the session's model), controls.py (the controls as one value),
handlers.py (the image's handlers), chat.py (the chat's queue), files.py (which files may be
read), model_choice.py (which model, and why), limits.py (what one visitor may cost) and
admission.py (one policy in front of every route: shares, fair queue, body caps).
docs/security.md explains the limits.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from types import SimpleNamespace

import gradio as gr

from starlette.middleware import Middleware

from demo.admission import Admission, client_of
from demo import errors
from demo.controls import GROUPING_CHOICES, WIDGETS, snap
from demo.events import ChatEvents, PageEvents, on_gpu, why_not_sent
from demo.files import MAX_FILE_BYTES
from demo.handlers import EXPLAIN_HINT, MAX_NEW_TOKENS_LIMIT, example_images, user_errors
from demo.limits import (
    BUDGET_RANGE, CONCURRENCY_ID, CONCURRENCY_LIMIT, FRAME_BUDGET_RANGE, GROUPS_RANGE, LAM_RANGE, QUEUE_HARD_SIZE, STATE_SESSIONS,
    UPLOAD_KEEP_S,
)
from demo import labels
from demo.methods import DEFAULT_QUESTION, METHOD_CHOICES, offered, unavailable_note
from demo.model_choice import choose_model, load_with_fallback
from demo.playable import served_copy
from demo.models import ModelSlot, Served, hub_reachable_at_launch
from demo.video import DEFAULT_FRAME_BUDGET, allowed_clip, example_videos


# Every event that runs the model, page-only ones included, is in one concurrency group:
# CONCURRENCY_LIMIT model calls at once for the whole app, whichever events they come from.
MODEL_WORK = {"concurrency_id": CONCURRENCY_ID, "concurrency_limit": CONCURRENCY_LIMIT}
CSS = """
#banner {border-radius: 8px; padding: 4px 12px; background: var(--block-background-fill);}
.overlay img {object-fit: contain;}
/* Tables: words never break inside (no "0 . 2 0 6" on a phone); a table wider than its box scrolls. */
.stats-table table {display: block; overflow-x: auto; max-width: 100%;}
.stats-table td, .stats-table th {word-break: normal !important; overflow-wrap: normal !important; hyphens: none;}
.stats-table td:first-child {min-width: 9em;}
#chat-status {min-height: 1.5em;}
/* The uploads' floating "Image" / "Clip" labels sit above the picture, never over its top edge. */
#input-image .image-container {padding-top: 40px; box-sizing: border-box;}
#input-video .video-container {padding-top: 40px; box-sizing: border-box;}
#input-video .video-container video {max-height: 160px;}
/* The Clip box is 240 px high, its label band included: the empty upload area is held to what
   is left, so the Upload / Camera buttons under it are drawn whole (they were cut in half). */
#input-video .video-container > .upload-container {height: 160px !important; min-height: 0 !important;}
/* Wide sheets (panels side by side: Compare, Methods, the frame strips) on a phone: drawn at
   their own pixel size, so every caption keeps its drawn size (13-16 px), and scrolled
   sideways from their left edge (a centred overflow could not be scrolled to). */
@media (max-width: 600px) {
  .tab-container button {padding-left: 6px !important; padding-right: 6px !important;}
  .wide-sheet .image-container, .wide-sheet .image-frame, .wide-sheet button {overflow-x: auto !important; justify-content: flex-start !important;}
  .wide-sheet .image-frame {display: block !important;}
  .wide-sheet img {max-width: none !important; max-height: none !important; height: auto !important; width: auto !important; object-fit: none !important;}
}
#patch-picker {align-items: end;}
"""

# The page's accessibility, which Gradio's components do not give by themselves: one radio
# group per choice (arrow keys move between its options), a name on every example button,
# and the explanation read out when it changes. Run on load and whenever the page changes.
A11Y_JS = """
() => {
  const fix = () => {
    document.querySelectorAll('.block[id]').forEach(block => {
      const radios = block.querySelectorAll('input[type=radio]');
      radios.forEach(radio => { if (radio.name !== block.id) radio.name = block.id; });
    });
    document.querySelectorAll('.gallery-item').forEach((item, index) => {
      const img = item.querySelector('img, video');
      const source = img ? (img.getAttribute('src') || '') : '';
      const name = decodeURIComponent(source.split('/').pop() || '').split('?')[0];
      const label = 'Example ' + (index + 1) + (name ? ': ' + name : '');
      if (item.getAttribute('aria-label') !== label) item.setAttribute('aria-label', label);
      if (img && img.tagName === 'IMG' && !img.getAttribute('alt')) img.setAttribute('alt', name || 'example');
    });
    // Icons are decoration (their buttons are named): hidden from screen readers.
    document.querySelectorAll('svg:not([aria-hidden])').forEach(icon => {
      if (!icon.getAttribute('aria-label') && !icon.querySelector('title')) icon.setAttribute('aria-hidden', 'true');
    });
    // Several views side by side (tiles, HD crops, a panorama) on a phone: drawn at their own
    // pixel size and scrolled sideways like the wide sheets, so a patch stays big enough to see
    // and to tap (squeezed into 390 px they were 3 px).
    const phone = window.matchMedia('(max-width: 600px)').matches;
    document.querySelectorAll('.overlay img').forEach(img => {
      if (!img.complete) { img.addEventListener('load', fix, {once: true}); return; }
      const wide = phone && img.naturalWidth > 1.6 * img.naturalHeight;
      const block = img.closest('.overlay');
      if (block && block.classList.contains('wide-sheet') !== wide) block.classList.toggle('wide-sheet', wide);
    });
    const explain = document.querySelector('#explain');
    if (explain && explain.getAttribute('aria-live') !== 'polite') { explain.setAttribute('aria-live', 'polite'); explain.setAttribute('role', 'status'); }
  };
  fix();
  new MutationObserver(fix).observe(document.body, {childList: true, subtree: true});
  // Esc closes a dropdown but leaves its box focused, so a click would not open it again:
  // let go of the focus, and the next click opens it.
  document.addEventListener('keydown', event => {
    const box = event.key === 'Escape' && event.target.closest && event.target.closest('#model-picker');
    if (box) setTimeout(() => event.target.blur(), 0);
  }, true);
}
"""


# The line above the overlays: what they will show, then (an image chosen) how to ask about a
# patch. Both one short line, so the overlays do not move when it changes.
OVERLAYS_HINT = "**Pick an example or upload an image**: the overlays below then show what PruneSID keeps and why."
CLICK_HINT = "**Click a patch** on an overlay (or use the patch picker) to see why it was kept or dropped."

VIDEO_OFF = (
    "The chosen model takes images only. Pick a model that takes clips above{example} "
    "to see PruneSID on every frame of a clip."
)


@user_errors
def make_playable(video):
    """The uploaded clip, as a copy the browser plays when it cannot play the upload. A
    generator, so that the copy is deleted once Gradio has taken it into its cache."""
    with served_copy(allowed_clip(video)) as copy:
        yield copy if copy is not None else gr.skip()


HIDDEN = {"api_visibility": "private"}  # page-only events: not offered to API clients
# preprocess=False: the handlers read the uploaded file themselves, through demo/files.py,
# which reads only files this app was given.
RAW = {"preprocess": False}
MODEL = {**RAW, **MODEL_WORK}  # queued events that run the model
LIVE = {"trigger_mode": "always_last", "show_progress": "hidden", **HIDDEN, **MODEL}  # re-renders: only the latest values run
# A chat's answer: queued on the model's concurrency, one per question sent.
ANSWERING = {"trigger_mode": "multiple", "show_progress": "hidden", **HIDDEN, **MODEL_WORK}
SLIDERS = {"budget": BUDGET_RANGE, "groups": GROUPS_RANGE, "lam": LAM_RANGE}  # a section's sliders: their ranges
SLIDER_STEPS = {"budget": 1, "groups": 1, "lam": 0.25}


def build(slot: ModelSlot) -> gr.Blocks:
    """The page, its events on the model each session chose (demo/models.py, demo/events.py):
    one builder per section, top to bottom, then the events of each."""
    events = PageEvents(slot)
    with gr.Blocks(title="PruneSID: what the compressor keeps") as page:
        header = model_header(slot)
        image = image_section(slot.first)
        chat = chat_room("image", "Answer", 300)
        compare = compare_section()
        methods = methods_section(slot.first)
        clips = clip_section(slot.first, slot.clip_model)
        api = api_endpoints()
        wire_image(events, image, api)
        wire_chat(events.image_chat, chat, image.image, image.inputs, [image.stats_json, image.stats_table])
        api.chat.click(events.chat, [chat.message, chat.chatbot] + image.inputs, chat_outputs(chat, image), api_name="chat", **MODEL)
        wire_compare(events, image, compare)
        wire_methods(events, image, methods)
        wire_clip(events, clips, api)
        wire_model_picker(events, header, image, chat, compare, methods, clips)
        page.load(events.open_chat, None, None, queue=False, **HIDDEN)
        page.load(None, None, None, js=A11Y_JS, queue=False, **HIDDEN)
        page.unload(events.close_chat)
    # api_open=False: the model events run only through the queue (demo/admission.py admits
    # every door); its own bound is the policy's hard one, so Gradio never refuses first.
    page.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_HARD_SIZE, api_open=False)
    page.delete_cache = (300, UPLOAD_KEEP_S)  # uploads and outputs: deleted once this old
    return page


# --- the sections, top to bottom ----------------------------------------------------------


def model_header(slot: ModelSlot) -> SimpleNamespace:
    """The title, what PruneSID does, the model picker and the banner of the model."""
    first = slot.first
    gr.Markdown(
        "# PruneSID — Prune Redundancy, Preserve Essence\n"
        "Training-free compression of a VLM's vision tokens: **PSCA** groups the patches into "
        "concepts, **NMS** inside each concept drops near-duplicates (τ = λ·ρ), and the budget "
        "is shared between concepts. Upload an image, move the controls, click a patch, ask a question."
    )
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            hosted = "the models this host serves, all kept loaded; " if slot.hosted else ""
            picker = gr.Dropdown(
                slot.choices, value=first.name, label=f"Model ({hosted}tiny-random-*: offline, random weights; their selections are real)",
                elem_id="model-picker", filterable=False,
            )
        with gr.Column(scale=3, min_width=300):
            banner = gr.Markdown(first.banner, elem_id="banner")
    return SimpleNamespace(picker=picker, banner=banner)


def image_section(first: Served) -> SimpleNamespace:
    """The image, its controls, the overlays, the patch picker, the explanation and the stats."""
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            image = gr.Image(type="filepath", label="Image", height=320, elem_id="input-image")
            gr.Examples(example_images(), inputs=image, label="Examples (generated, CC0)")
            # The section's Controls (demo/controls.py), in the order of its fields.
            controls = SimpleNamespace(
                budget=gr.Slider(*BUDGET_RANGE, value=64, step=1, label=labels.budget_label(first.vlm), elem_id="budget"),
                groups=gr.Slider(*GROUPS_RANGE, value=0, step=1, label=labels.groups_label(first.vlm), elem_id="groups"),
                lam=gr.Slider(*LAM_RANGE, value=0, step=0.25, label=labels.lam_label(first.vlm), elem_id="lam"),
                grouping=gr.Radio(GROUPING_CHOICES, value="psca", label="Grouping (paper's ablation: PSCA / KMeans / random)", elem_id="grouping"),
                dynamic=gr.Checkbox(False, label="Dynamic budget (PruneSID-Dyn: N' ∝ φ)", elem_id="dynamic"),
            )
            analyze_button = gr.Button("Analyze", variant="primary", elem_id="analyze")
        with gr.Column(scale=3, min_width=420):
            views = overlay_views()
            picker = patch_picker()
            explanation = gr.Markdown(EXPLAIN_HINT, elem_id="explain")
            explanation_json = gr.JSON(label="Why (JSON)", visible=False)
            stats_table = gr.Markdown(elem_id="stats", elem_classes="stats-table")
            stats_json = gr.JSON(label="Stats (JSON)", visible=False)
    widgets = [getattr(controls, name) for name in WIDGETS]
    return SimpleNamespace(
        image=image, controls=controls, inputs=[image, *widgets], analyze_button=analyze_button, **vars(views), **vars(picker),
        explanation=explanation, explanation_json=explanation_json, stats_table=stats_table, stats_json=stats_json,
        overlays=[views.groups_view, views.survivors_view, views.kept_view, views.quotas_view, stats_json, stats_table],
    )


def overlay_views() -> SimpleNamespace:
    """The line above the overlays, the overlays' tabs and their key."""
    # Until an image is chosen the overlays are empty: say what will appear there.
    hint = gr.Markdown(OVERLAYS_HINT, elem_id="overlays-hint")
    # No image labels: a label badge would cover a chart's legend or a panel's title; the tab names the picture.
    kept_view, groups_view, survivors_view, quotas_view = picture_tabs({
        "Kept": dict(label="Kept patches (others dimmed)", elem_id="kept-view", alt_text="Kept patches: the kept ones at full brightness with a yellow outline, the others dimmed", elem_classes="overlay"),
        "Groups": dict(label="Group of every patch", elem_id="groups-view", alt_text="The group of every patch, one colour per group, its number on it", elem_classes="overlay"),
        "Survivors": dict(label="Survivors vs suppressed", elem_id="survivors-view", alt_text="NMS survivors outlined in green, suppressed patches dimmed red", elem_classes="overlay"),
        "Budget": dict(label="Group sizes, survivors and kept tokens (first view)", elem_id="quotas-view", alt_text="Bar chart: each group's size, survivors and kept tokens"),
    })
    gr.Markdown(
        "<small>**Kept**: yellow outline, full brightness; dropped patches dimmed. **Groups**: one "
        "colour per group (its number on it; grouping as chosen), dark borders between groups. **Survivors**: green outline; suppressed "
        "by NMS: dimmed red. What this model's processor does to the image (views, tiles, crop, padding) "
        "is written above the stats.</small>", elem_id="overlay-key",
    )
    return SimpleNamespace(overlays_hint=hint, kept_view=kept_view, groups_view=groups_view, survivors_view=survivors_view, quotas_view=quotas_view)


def picture_tabs(pictures: dict[str, dict]) -> list[gr.Image]:
    """One tab per picture (its name: the tab's), each an output only, with no toolbar over it."""
    shown = []
    with gr.Tabs():
        for tab, props in pictures.items():
            with gr.Tab(tab):
                shown.append(gr.Image(show_label=False, interactive=False, buttons=[], **props))
    return shown


def patch_picker() -> SimpleNamespace:
    """The keyboard's (and a screen reader's) way to click a patch."""
    with gr.Row(elem_id="patch-picker"):
        pick_view = gr.Number(0, precision=0, minimum=0, label="View", info="0: the first", elem_id="pick-view", min_width=80)
        pick_row = gr.Number(0, precision=0, minimum=0, label="Row", elem_id="pick-row", min_width=80)
        pick_column = gr.Number(0, precision=0, minimum=0, label="Column", elem_id="pick-column", min_width=80)
        pick_button = gr.Button("Why was this patch kept or dropped?", elem_id="pick-patch", min_width=160)
    return SimpleNamespace(pick_view=pick_view, pick_row=pick_row, pick_column=pick_column, pick_button=pick_button)


def chat_room(subject: str, label: str, height: int, prefix: str = "") -> SimpleNamespace:
    """A chat about the image (or, with ``prefix="video-"``, the clip): the conversation, the
    question box, Send, Stop (on only while an answer is written) and the status line."""
    if subject == "image":
        gr.Markdown(
            "## Chat with the compressed model\n"
            "<small>Questions sent while an answer is being written wait their turn; Stop ends the answer "
            "being written. A `tiny-random-*` model has random weights: its answers are noise by design "
            "(the selection above is real).</small>"
        )
    chatbot = gr.Chatbot(label=label, height=height, elem_id=f"{prefix}chatbot")
    with gr.Row():
        message = gr.Textbox(placeholder=f"Ask about the {subject}...", label=f"Question about the {subject}", show_label=False, scale=5, elem_id=f"{prefix}message")
        send = gr.Button("Send", variant="primary", scale=1, elem_id=f"{prefix}send")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id=f"{prefix}stop", interactive=False)
    status = gr.Markdown(elem_id=f"{prefix}reply-info")
    return SimpleNamespace(chatbot=chatbot, message=message, send=send, stop=stop, status=status)


def compare_section() -> SimpleNamespace:
    """The three groupings side by side, and all tokens vs the compressed ones."""
    with gr.Accordion("Compare", open=False):
        compare_button = gr.Button("Compare PSCA / KMeans / random at this budget", elem_id="compare-groupings")
        comparison = gr.Image(label="Kept patches per grouping", interactive=False, show_label=False, elem_id="comparison", alt_text="Kept patches per grouping, side by side: PSCA, KMeans, random", buttons=[], elem_classes="wide-sheet")
        question = gr.Textbox(label="Question for the all-tokens vs compressed comparison", value="Describe the image.")
        answers_button = gr.Button("Answer with all tokens and with the compressed ones", elem_id="compare-answers")
        with gr.Row():
            full_answer = gr.Textbox(label="All visual tokens", interactive=False)
            compressed_answer = gr.Textbox(label="Compressed", interactive=False)
        speedup = gr.Markdown()
    return SimpleNamespace(
        compare_button=compare_button, comparison=comparison, question=question, answers_button=answers_button,
        full_answer=full_answer, compressed_answer=compressed_answer, speedup=speedup,
    )


def methods_section(first: Served) -> SimpleNamespace:
    """PruneSID next to the other presses: one method's view, then every method compared."""
    with gr.Accordion("Methods: PruneSID next to VisionZip, DivPrune, random and uniform", open=False):
        gr.Markdown("<small>The same image, model and budget N for every method. VisionZip's merged tokens: "
                    "one colour each over the patches they cover, the anchor outlined.</small>")
        with gr.Row():
            method = gr.Radio(offered(first.vlm), value=METHOD_CHOICES[0], label="Method", elem_id="method")
            method_button = gr.Button("Show what this method keeps", elem_id="analyze-method")
        method_note = gr.Markdown(unavailable_note(first.vlm), elem_id="method-note")
        method_view = gr.Image(label="Kept by the method", interactive=False, show_label=False, elem_id="method-view", alt_text="What the chosen method keeps: kept patches bright, merged tokens in one colour each", buttons=[], elem_classes="overlay")
        method_table = gr.Markdown(elem_id="method-stats", elem_classes="stats-table")
        method_json = gr.JSON(visible=False)
        question = gr.Textbox(label="Question for every method", value=DEFAULT_QUESTION, elem_id="method-question")
        compare_button = gr.Button("Compare methods: kept patches, answers, selection and prefill times", elem_id="compare-methods")
        sheet = gr.Image(label="Kept patches per method", interactive=False, show_label=False, elem_id="methods-sheet", alt_text="Kept patches per method, side by side", buttons=[], elem_classes="wide-sheet")
        table = gr.Markdown(elem_id="methods-table", elem_classes="stats-table")
        rows_json = gr.JSON(visible=False)
    return SimpleNamespace(
        method=method, method_button=method_button, method_note=method_note, outputs=[method_view, method_json, method_table],
        question=question, compare_button=compare_button, sheet=sheet, table=table, rows_json=rows_json, compared=[sheet, table, rows_json],
    )


def clip_section(first: Served, clip_model: str | None) -> SimpleNamespace:
    """The clip section: on when the chosen model takes clips (its own model, not a second
    one); otherwise a line saying why, and a switch to a model that takes clips."""
    with gr.Accordion("Video: PruneSID on every frame of a clip", open=False):
        example = f", or switch to `{clip_model}` with the button below," if clip_model else ""
        video_off = gr.Markdown(VIDEO_OFF.format(example=example), elem_id="video-off", visible=not first.takes_clips)
        # The picker's switch in one click: it sets the picker, then switches as the picker does.
        to_clips = gr.Button(
            f"Switch to {clip_model or 'a model that takes clips'}", visible=bool(clip_model) and not first.takes_clips,
            variant="primary", size="md", elem_id="switch-to-clips", scale=0,
        )
        with gr.Column(visible=first.takes_clips) as video_on:
            video_note = gr.Markdown(first.videos.note if first.takes_clips else "", elem_id="video-note")
            with gr.Row():
                with gr.Column(scale=2, min_width=320):
                    video, controls = clip_controls(first)
                with gr.Column(scale=3, min_width=420):
                    strips = frame_strips()
            chat = chat_room("clip", "Answer about the clip", 220, prefix="video-")
    widgets = [getattr(controls, name) for name in WIDGETS]
    return SimpleNamespace(
        video_off=video_off, to_clips=to_clips, video_on=video_on, video_note=video_note, video=video, controls=controls,
        inputs=[video, *widgets], analyze_button=controls.analyze_button, outputs=strips, chat=chat, clip_model=clip_model,
    )


def clip_controls(first: Served) -> tuple[gr.Video, SimpleNamespace]:
    """The clip, its examples and its own controls: N per frame and the dynamic switch; K,
    lambda and grouping as for images (not the image section's)."""
    video = gr.Video(label="Clip", elem_id="input-video", height=240)
    if example_videos():
        gr.Examples(example_videos(), inputs=video, label="Example clip (generated, CC0)")
    budget = gr.Slider(*FRAME_BUDGET_RANGE, value=DEFAULT_FRAME_BUDGET, step=1, label=labels.frame_budget_label(first.vlm), elem_id="frame-budget")
    dynamic = gr.Checkbox(False, label="Dynamic budget across frames (N'_f ∝ φ_f, total frames x N)", elem_id="video-dynamic")
    groups = gr.Slider(*GROUPS_RANGE, value=0, step=1, label=labels.frame_groups_label(first.vlm), elem_id="video-groups")
    lam = gr.Slider(*LAM_RANGE, value=0, step=0.25, label=labels.frame_lam_label(first.vlm), elem_id="video-lam")
    grouping = gr.Radio(GROUPING_CHOICES, value="psca", label="Grouping", elem_id="video-grouping")
    analyze_button = gr.Button("Analyze the clip", variant="primary", elem_id="analyze-video")
    controls = SimpleNamespace(budget=budget, groups=groups, lam=lam, grouping=grouping, dynamic=dynamic, analyze_button=analyze_button)
    return video, controls


def frame_strips() -> list:
    """The frame strips' tabs, the per-frame chart and the clip's stats (the clip's outputs)."""
    kept, groups, survivors, chart = picture_tabs({
        "Kept": dict(label="Kept patches, frame by frame", elem_id="frames-kept", alt_text="Kept patches of every frame of the clip", elem_classes="wide-sheet"),
        "Groups": dict(label="PSCA groups, frame by frame", elem_id="frames-groups", alt_text="PSCA groups of every frame of the clip", elem_classes="wide-sheet"),
        "Survivors": dict(label="NMS survivors, frame by frame", elem_id="frames-survivors", alt_text="NMS survivors of every frame of the clip", elem_classes="wide-sheet"),
        "ρ, φ, N'": dict(label="Per-frame redundancy, information and budget", elem_id="frames-chart", alt_text="Chart per frame: redundancy, information and budget"),
    })
    table = gr.Markdown(elem_id="video-stats", elem_classes="stats-table")
    stats_json = gr.JSON(visible=False)
    return [groups, survivors, kept, chart, stats_json, table]


def api_endpoints() -> SimpleNamespace:
    """Endpoints for API clients only (gradio_client): a stateless chat and the patch explanation."""
    with gr.Row(visible=False):
        chat = gr.Button("chat")
        explain = gr.Button("explain")
        video_chat = gr.Button("chat_video")
        pixel_x = gr.Number(precision=0, label="x")
        pixel_y = gr.Number(precision=0, label="y")
    return SimpleNamespace(chat=chat, explain=explain, video_chat=video_chat, pixel_x=pixel_x, pixel_y=pixel_y)


# --- the events of each section -----------------------------------------------------------


def wire_image(events: PageEvents, image: SimpleNamespace, api: SimpleNamespace) -> None:
    """The overlays, the explanation of the last clicked patch and the stats, as one answer."""
    image.analyze_button.click(events.analyze, image.inputs, image.overlays, api_name="analyze", **MODEL)
    # The page's own view: overlays, chart, stats and the explanation of the last clicked
    # pixel are one answer, so none of them is ever left at an older setting.
    image.clicked = clicked = gr.State(None)
    viewed = image.inputs + [clicked]
    image.page_outputs = outputs = image.overlays + [image.explanation, image.explanation_json]
    # Renders of the page view finish in any order (two model events at once): an older one
    # landing late is skipped, never shown over a newer one (demo/ordering.py).
    image.page_view = page_view = events.newest("image", events.page_view, outputs)
    clicked_view = events.newest("image", events.page_click, outputs + [clicked])
    picked_view = events.newest("image", events.page_pick, outputs + [clicked])
    image.analyze_button.click(page_view, viewed, outputs, **HIDDEN, **MODEL)
    # In the browser alone (no request): the line changes as the image does.
    hint = f"(picture) => picture ? {json.dumps(CLICK_HINT)} : {json.dumps(OVERLAYS_HINT)}"
    image.image.change(None, image.image, image.overlays_hint, js=hint, **HIDDEN)
    image.image.change(lambda: None, None, clicked, queue=False, **HIDDEN).then(page_view, viewed, outputs, **HIDDEN, **MODEL)
    # Live re-render while a control moves: one event for all of them, so only the latest
    # values run when busy and an older answer never lands after a newer one.
    gr.on([widget.change for widget in image.inputs[1:]], page_view, viewed, outputs, **LIVE)
    snap_sliders(image.controls, BUDGET_RANGE)
    for view in (image.kept_view, image.groups_view, image.survivors_view):
        view.select(clicked_view, image.inputs, outputs + [clicked], **HIDDEN, **MODEL)
    picked = image.inputs + [image.pick_view, image.pick_row, image.pick_column]
    image.pick_button.click(picked_view, picked, outputs + [clicked], **HIDDEN, **MODEL)
    explained = [image.explanation, image.explanation_json]
    api.explain.click(events.explain, image.inputs + [api.pixel_x, api.pixel_y], explained, api_name="explain", **MODEL)


def snap_sliders(controls: SimpleNamespace, budget_range: tuple) -> None:
    """A number typed into a slider's box is shown as the slider holds it (63.7 -> 64, -5 -> 8)."""
    ranges = {**SLIDERS, "budget": budget_range}
    for name, bounds in ranges.items():
        slider = getattr(controls, name)
        slider.change(snapper(name, bounds, SLIDER_STEPS[name]), slider, slider, queue=False, show_progress="hidden", **HIDDEN, **RAW)


def chat_outputs(chat: SimpleNamespace, section: SimpleNamespace) -> list:
    """The conversation, its status and the stats of the section it is about."""
    return [chat.chatbot, chat.status, section.stats_json, section.stats_table]


def wire_chat(chat_events: ChatEvents, chat: SimpleNamespace, media, inputs: list, stats: list) -> None:
    """One chat's events (demo/chat.py): sending is immediate and never waits for an answer;
    the answer streams into the conversation and the section's stats; a new image (or clip)
    starts a new chat."""
    answered = [chat.chatbot, chat.status, *stats, chat.stop]
    # Queued (its own concurrency: never behind model work), because only a queued event's
    # gr.Error reaches the page with its message; outside the queue it is a bare "Error".
    sent = gr.on(
        [chat.send.click, chat.message.submit], chat_events.send, [chat.message] + inputs, [chat.message, chat.chatbot, chat.status],
        queue=False, trigger_mode="multiple", show_progress="hidden", **HIDDEN, **RAW,
    )
    sent.failure(why_not_sent, None, chat.status, queue=False, show_progress="hidden", **HIDDEN)  # not a refusal: those return
    sent.success(chat_events.answer, None, answered, **ANSWERING)
    chat.stop.click(chat_events.stop_answer, None, None, queue=False, **HIDDEN)
    chat.chatbot.retry(chat_events.retry, inputs, chat.chatbot, queue=False, **HIDDEN, **RAW).success(chat_events.answer, None, answered, **ANSWERING)
    chat.chatbot.undo(chat_events.undo, None, [chat.chatbot, chat.message], queue=False, **HIDDEN)
    cleared = [chat.chatbot, chat.status, chat.stop]
    chat.chatbot.clear(chat_events.new_chat, None, cleared, queue=False, **HIDDEN)
    media.change(chat_events.new_chat, None, cleared, queue=False, **HIDDEN)


def wire_compare(events: PageEvents, image: SimpleNamespace, compare: SimpleNamespace) -> None:
    controls = image.controls
    grouped = [image.image, controls.budget, controls.groups, controls.lam, controls.dynamic]  # every grouping, the other controls
    compare.compare_button.click(events.compare_groupings, grouped, compare.comparison, api_name="compare_groupings", **MODEL)
    compare.answers_button.click(
        events.compare_answers, [compare.question] + image.inputs,
        [compare.full_answer, compare.compressed_answer, compare.speedup], api_name="compare_answers", **MODEL,
    )


def wire_methods(events: PageEvents, image: SimpleNamespace, methods: SimpleNamespace) -> None:
    methods.inputs = inputs = [image.image, methods.method, image.controls.budget]
    methods.method_button.click(events.analyze_method, inputs, methods.outputs, api_name="analyze_method", **MODEL)
    # The method view follows the switch, the budget and a new image, like the overlays.
    methods.refresh = refresh = events.newest("methods", events.refresh_method, methods.outputs)
    for control in (methods.method, image.controls.budget):
        control.change(refresh, inputs, methods.outputs, **LIVE)
    image.image.change(refresh, inputs, methods.outputs, **HIDDEN, **MODEL)
    methods.compare_button.click(
        events.compare_methods, [image.image, methods.question, image.controls.budget], methods.compared, api_name="compare_methods", **MODEL,
    )


def wire_clip(events: PageEvents, clips: SimpleNamespace, api: SimpleNamespace) -> None:
    """The clip's strips, chart and stats follow the clip and its controls, as the image's do;
    its chat is the image chat's queue and events (demo/chat.py), on the clip."""
    clips.analyze_button.click(events.analyze_video, clips.inputs, clips.outputs, api_name="analyze_video", **MODEL)
    clips.refresh = refresh = events.newest("clip", events.refresh_video, clips.outputs)
    clips.video.change(refresh, clips.inputs, clips.outputs, **HIDDEN, **MODEL)
    gr.on([widget.change for widget in clips.inputs[1:]], refresh, clips.inputs, clips.outputs, **LIVE)
    snap_sliders(clips.controls, FRAME_BUDGET_RANGE)
    # A clip whose codec browsers do not play (MPEG-4 Part 2, MJPEG...) is swapped for a
    # VP8 copy of the same frames, within bounds (demo/playable.py); the analysis follows.
    clips.video.upload(make_playable, clips.video, clips.video, show_progress="hidden", **HIDDEN, **MODEL)
    stats = clips.outputs[-2:]  # the clip's stats JSON and table
    chatted = [clips.chat.chatbot, clips.chat.status, *stats]
    api.video_chat.click(events.chat_video, [clips.chat.message, clips.chat.chatbot] + clips.inputs, chatted, api_name="chat_video", **MODEL)
    wire_chat(events.clip_chat, clips.chat, clips.video, clips.inputs, stats)


def wire_model_picker(events, header, image, chat, compare, methods, clips) -> None:
    """The model picker: the session's own model (demo/models.py). Every panel follows it:
    labels, banner, clip section; the chat, the clicked patch and the comparisons of the
    previous model are cleared; then the overlays, the method view and the clip re-render."""
    switch_model, outputs = model_switch(events, header, image, chat, compare, methods, clips)

    def after_switch(switched):
        switched.success(events.methods_of_model, methods.method, [methods.method, methods.method_note], **HIDDEN, **MODEL).then(
            image.page_view, image.inputs + [image.clicked], image.page_outputs, **HIDDEN, **MODEL,
        ).then(
            methods.refresh, methods.inputs, methods.outputs, **HIDDEN, **MODEL,
        ).then(clips.refresh, clips.inputs, clips.outputs, **HIDDEN, **MODEL)
        switched.failure(events.shown_model, None, header.picker, queue=False, **HIDDEN)

    # `input`, not `change`: the picker set back after a refusal must not switch again.
    after_switch(header.picker.input(switch_model, header.picker, outputs, api_name="choose_model", **MODEL))
    # The Video section's switch is the picker's: shown in the picker, the same choice, limits and re-render.
    to_clips = clips.to_clips.click(lambda: clips.clip_model, None, header.picker, queue=False, **HIDDEN)
    after_switch(to_clips.then(switch_model, header.picker, outputs, **HIDDEN, **MODEL))


def model_switch(events, header, image, chat, compare, methods, clips):
    """The picker's event and its outputs: the new model's labels and clip section, and every
    answer of the previous model cleared."""
    controls, clip = image.controls, clips.controls
    outputs = [
        header.banner, controls.budget, controls.groups, controls.lam,
        clips.video_off, clips.to_clips, clips.video_on, clips.video_note, clip.budget, clip.groups, clip.lam,
        chat.chatbot, chat.status, image.explanation, image.explanation_json, image.clicked,
        compare.comparison, compare.full_answer, compare.compressed_answer, compare.speedup, methods.sheet, methods.rows_json, methods.table,
        clips.chat.chatbot, clips.chat.status,
    ]

    @on_gpu
    @user_errors
    def switch_model(model, request: gr.Request):
        served = events.slot.choose(request.session_hash, client_of(request), model)
        events.reset_chats(request)
        for view in ("image", "methods"):  # what the previous model was still rendering is not shown
            events.reset_view(view, request)
        vlm, clips_on = served.vlm, served.takes_clips
        return (
            served.banner,
            gr.Slider(label=labels.budget_label(vlm)), gr.Slider(label=labels.groups_label(vlm)), gr.Slider(label=labels.lam_label(vlm)),
            gr.Markdown(visible=not clips_on), gr.Button(visible=bool(clips.clip_model) and not clips_on), gr.Column(visible=clips_on),
            served.videos.note if clips_on else "",
            gr.Slider(label=labels.frame_budget_label(vlm)), gr.Slider(label=labels.frame_groups_label(vlm)), gr.Slider(label=labels.frame_lam_label(vlm)),
            [], "", EXPLAIN_HINT, None, None,  # the chat, its status, the clicked patch
            None, "", "", "", None, None, "",  # the comparisons of the previous model
            [], "",  # the chat about the clip
        )

    return switch_model, outputs


# A typed number this far outside a slider is no slip of the finger: refused, not clamped.
SNAP_REACH = 1_000_000


def snapper(name: str, bounds: tuple, step: float):
    """The page's write-back for a number typed into a slider's box: rounded to the step and
    clamped to the range (63.7 -> 64, -5 -> 8), or nothing when already a slider value. Not a
    number, or absurdly far out: a named error, like every other event's."""

    @user_errors
    def snapped(value):
        out_of_range = ValueError(f"{name} must be between {bounds[0]:g} and {bounds[1]:g}, got {value!r}")
        try:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(float(value)) > SNAP_REACH:
                raise out_of_range
            fixed = snap(value, name, bounds, step)  # a finite number, or ValueError
        except OverflowError:  # 10**400, or a step division that overflows
            raise out_of_range from None
        return gr.skip() if fixed == value else fixed

    return snapped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model id or built-in (default: $PRUNESID_MODEL, else chosen by hardware and network: see README)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--max-new-tokens", type=int, default=96, help=f"tokens per answer, at most {MAX_NEW_TOKENS_LIMIT}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not 1 <= args.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
        parser.error(f"--max-new-tokens must be in [1, {MAX_NEW_TOKENS_LIMIT}], got {args.max_new_tokens}")

    choice = choose_model(args.model)
    vlm, banner = load_with_fallback(choice)
    first = Served.of(vlm, banner, max_new_tokens=args.max_new_tokens)
    slot = ModelSlot.for_deployment(first, hub_reachable_at_launch(choice), max_new_tokens=args.max_new_tokens)
    page = build(slot)
    errors.install()  # Gradio's own refusals name no server path and no Python type
    page.launch(
        server_name=args.host, server_port=args.port, theme=gr.themes.Soft(), css=CSS, show_error=True,
        max_file_size=MAX_FILE_BYTES, state_session_capacity=2 * STATE_SESSIONS,
        # Every route goes through one admission policy (demo/admission.py) before Gradio sees it.
        app_kwargs={"middleware": [Middleware(Admission, blocks=page)]},
    )


if __name__ == "__main__":
    main()
