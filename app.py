"""PruneSID demo: chat with LLaVA through the compressor and see which vision tokens it keeps.

    python app.py [--model llava-hf/llava-1.5-7b-hf] [--port 7860] [--max-new-tokens 96]

The page reads top to bottom: banner, image and controls, the overlays and stats (click a
patch: why was it kept or dropped?), the chat, then the comparisons. The work itself lives
in demo/: handlers.py (events), chat.py (the chat's queue), files.py (which files may be
read), model_choice.py (which model, and why), limits.py (what one visitor may cost) and
admission.py (one policy in front of every route: shares, fair queue, body caps).
docs/security.md explains the limits.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os

import gradio as gr

from starlette.middleware import Middleware

from demo.admission import Admission, client_of
from demo import errors
from demo.chat import ChatQueue
from demo.files import MAX_FILE_BYTES
from demo.controls import GROUPING_CHOICES, clip_widgets, image_widgets, snap
from demo.handlers import question as question_text
from demo.handlers import (
    EXPLAIN_HINT, MAX_NEW_TOKENS_LIMIT, checked_controls, check_image_question, example_images, refused, stats_markdown, user_errors,
)
from demo.limits import (
    BUDGET_RANGE, CONCURRENCY_ID, CONCURRENCY_LIMIT, FRAME_BUDGET_RANGE, GROUPS_RANGE, LAM_RANGE, QUEUE_HARD_SIZE, STATE_SESSIONS,
    UPLOAD_KEEP_S,
)
from demo import labels
from demo.methods import DEFAULT_QUESTION, METHOD_CHOICES, offered, unavailable_note
from demo.model_choice import choose_model, load_with_fallback
from demo.playable import served_copy
from demo.models import ModelSlot, Served, hub_reachable_at_launch, unbound
from demo.video import DEFAULT_FRAME_BUDGET, VideoHandlers, allowed_clip, check_clip_question, example_videos, video_stats_markdown

try:  # ZeroGPU on Hugging Face Spaces: GPU work is decorated when the package exists.
    import spaces

    on_gpu = spaces.GPU
except ImportError:

    def on_gpu(function):
        return function


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


def build(slot: ModelSlot) -> gr.Blocks:
    """The page, its events on the model each session chose (demo/models.py)."""
    first = slot.first
    handlers = first.handlers

    def on_model(pick, reference, check=None, widgets=None):
        if widgets is not None:  # the handler takes the section's Controls: the event, its widgets' values
            pick, reference = (lambda served, picked=pick: widgets(picked(served))), widgets(reference)
        return on_gpu(user_errors(slot.bind(pick, reference, check)))

    analyze_method = on_model(lambda m: checked_controls(m.methods.analyze), first.methods.analyze)
    refresh_method = on_model(lambda m: checked_controls(m.methods.refresh), first.methods.refresh)
    compare_methods = on_model(lambda m: checked_controls(m.methods.compare), first.methods.compare)
    analyze = on_model(lambda m: m.handlers.analyze, handlers.analyze, widgets=image_widgets)
    chat = on_model(lambda m: m.handlers.chat, handlers.chat, widgets=image_widgets)
    compare_groupings = on_model(lambda m: m.handlers.compare_groupings, handlers.compare_groupings)
    compare_answers = on_model(lambda m: m.handlers.compare_answers, handlers.compare_answers, widgets=image_widgets)
    explain = on_model(lambda m: m.handlers.explain, handlers.explain, widgets=image_widgets)
    chats = ChatQueue(handlers.queued_answer, validate=check_image_question, check_message=question_text)
    clip_model = slot.clip_model  # offered in the Video section to a visitor whose model takes images only

    # The chat's session is the browser session Gradio gives, opened when the page loads and
    # tied to the client's address (demo/chat.py): an id made up in a request reaches nothing.
    @user_errors
    def open_chat(request: gr.Request):
        chats.open(request.session_hash, client_of(request))
        video_chats.open(request.session_hash, client_of(request))

    def close_chat(request: gr.Request):
        chats.forget(request.session_hash, client_of(request))
        video_chats.forget(request.session_hash, client_of(request))
        slot.forget(request.session_hash, client_of(request))

    def sender(queue: ChatQueue, widgets):
        def send_message(message, media, controls, request: gr.Request):
            return "", queue.send(request.session_hash, message, media, controls, client_of(request)), "waiting for the answer..."

        return said_why_not_sent(widgets(send_message))

    def why_not_sent():
        return "⚠️ Not sent: the question could not be queued; try again"

    def chat_events(queue: ChatQueue, stream_of, stats_markdown_of, widgets):
        """The page's events of one chat queue (the image's, the clip's): answer, stop, retry,
        undo and a new conversation, on the session's model (``stream_of(served)``). The answer
        also says whether Stop can be pressed: only while an answer is being written."""

        @on_gpu
        @user_errors
        def answer(request: gr.Request):
            last = None
            with slot.lease_for(request) as served:  # the session's model, kept loaded until the answers are written
                for history, info, stats in queue.answer(request.session_hash, client_of(request), answer_stream=stream_of(served)):
                    if stats is None:  # info None: still writing; text: the answer failed or the chat was reset
                        last = (history, "generating..." if info is None else info, gr.skip(), gr.skip(), gr.Button(interactive=info is None))
                    else:
                        last = (history, info, stats, stats_markdown_of(stats), gr.Button(interactive=False))
                    yield last
            if last is not None:  # the event's result: the finished conversation again, with Stop off
                yield (*last[:-1], gr.Button(interactive=False))
            else:  # another worker of this session is answering: it takes the question
                yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()

        @user_errors
        def stop_answer(request: gr.Request):
            queue.stop(request.session_hash, client_of(request))

        @user_errors
        @widgets
        def retry(media, controls, request: gr.Request):
            return queue.retry(request.session_hash, media, controls, client_of(request))

        @user_errors
        def undo(request: gr.Request):
            return queue.undo(request.session_hash, client_of(request))

        @user_errors
        def new_chat(request: gr.Request):
            return queue.reset(request.session_hash, client_of(request)), "", gr.Button(interactive=False)

        return answer, stop_answer, retry, undo, new_chat

    answer, stop_answer, retry, undo, new_chat = chat_events(chats, lambda served: served.handlers.queued_answer, stats_markdown, image_widgets)
    video_chats = ChatQueue(None, validate=check_clip_question, check_message=question_text)
    video_answer, video_stop_answer, video_retry, video_undo, video_new_chat = chat_events(
        video_chats, lambda served: served.clips().queued_answer, video_stats_markdown, clip_widgets,
    )

    with gr.Blocks(title="PruneSID: what the compressor keeps") as page:
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
                banner_box = gr.Markdown(first.banner, elem_id="banner")

        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                image = gr.Image(type="filepath", label="Image", height=320, elem_id="input-image")
                gr.Examples(example_images(), inputs=image, label="Examples (generated, CC0)")
                budget = gr.Slider(*BUDGET_RANGE, value=64, step=1, label=labels.budget_label(first.vlm), elem_id="budget")
                groups = gr.Slider(*GROUPS_RANGE, value=0, step=1, label=labels.groups_label(first.vlm), elem_id="groups")
                lam = gr.Slider(*LAM_RANGE, value=0, step=0.25, label=labels.lam_label(first.vlm), elem_id="lam")
                grouping = gr.Radio(GROUPING_CHOICES, value="psca", label="Grouping (paper's ablation: PSCA / KMeans / random)", elem_id="grouping")
                dynamic = gr.Checkbox(False, label="Dynamic budget (PruneSID-Dyn: N' ∝ φ)", elem_id="dynamic")
                analyze_button = gr.Button("Analyze", variant="primary", elem_id="analyze")
            with gr.Column(scale=3, min_width=420):
                # Until an image is chosen the overlays are empty: say what will appear there.
                overlays_hint = gr.Markdown(OVERLAYS_HINT, elem_id="overlays-hint")
                with gr.Tabs():
                    # No image labels: a label badge would cover a chart's legend or a panel's title;
                    # the tab names the picture.
                    bare = {"show_label": False, "interactive": False, "buttons": []}  # no toolbar over the picture
                    with gr.Tab("Kept"):
                        kept_view = gr.Image(label="Kept patches (others dimmed)", elem_id="kept-view", alt_text="Kept patches: the kept ones at full brightness with a yellow outline, the others dimmed", elem_classes="overlay", **bare)
                    with gr.Tab("Groups"):
                        groups_view = gr.Image(label="Group of every patch", elem_id="groups-view", alt_text="The group of every patch, one colour per group, its number on it", elem_classes="overlay", **bare)
                    with gr.Tab("Survivors"):
                        survivors_view = gr.Image(label="Survivors vs suppressed", elem_id="survivors-view", alt_text="NMS survivors outlined in green, suppressed patches dimmed red", elem_classes="overlay", **bare)
                    with gr.Tab("Budget"):
                        quotas_view = gr.Image(label="Group sizes, survivors and kept tokens (first view)", elem_id="quotas-view", alt_text="Bar chart: each group's size, survivors and kept tokens", **bare)
                gr.Markdown(
                    "<small>**Kept**: yellow outline, full brightness; dropped patches dimmed. **Groups**: one "
                    "colour per group (its number on it; grouping as chosen), dark borders between groups. **Survivors**: green outline; suppressed "
                    "by NMS: dimmed red. What this model's processor does to the image (views, tiles, crop, padding) "
                    "is written above the stats.</small>", elem_id="overlay-key",
                )
                with gr.Row(elem_id="patch-picker"):
                    # The keyboard's (and a screen reader's) way to click a patch.
                    pick_view = gr.Number(0, precision=0, minimum=0, label="View", info="0: the first", elem_id="pick-view", min_width=80)
                    pick_row = gr.Number(0, precision=0, minimum=0, label="Row", elem_id="pick-row", min_width=80)
                    pick_column = gr.Number(0, precision=0, minimum=0, label="Column", elem_id="pick-column", min_width=80)
                    pick_button = gr.Button("Why was this patch kept or dropped?", elem_id="pick-patch", min_width=160)
                explanation = gr.Markdown(EXPLAIN_HINT, elem_id="explain")
                explanation_json = gr.JSON(label="Why (JSON)", visible=False)
                stats_table = gr.Markdown(elem_id="stats", elem_classes="stats-table")
                stats_json = gr.JSON(label="Stats (JSON)", visible=False)

        gr.Markdown(
            "## Chat with the compressed model\n"
            "<small>Questions sent while an answer is being written wait their turn; Stop ends the answer "
            "being written. A `tiny-random-*` model has random weights: its answers are noise by design "
            "(the selection above is real).</small>"
        )
        chatbot = gr.Chatbot(label="Answer", height=300, elem_id="chatbot")
        with gr.Row():
            message = gr.Textbox(placeholder="Ask about the image...", label="Question about the image", show_label=False, scale=5, elem_id="message")
            send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
            stop = gr.Button("Stop", variant="stop", scale=1, elem_id="stop", interactive=False)  # on only while an answer is written
        reply_info = gr.Markdown(elem_id="reply-info")
        chat_status = reply_info

        with gr.Accordion("Compare", open=False):
            compare_button = gr.Button("Compare PSCA / KMeans / random at this budget", elem_id="compare-groupings")
            comparison = gr.Image(label="Kept patches per grouping", interactive=False, show_label=False, elem_id="comparison", alt_text="Kept patches per grouping, side by side: PSCA, KMeans, random", buttons=[], elem_classes="wide-sheet")
            question = gr.Textbox(label="Question for the all-tokens vs compressed comparison", value="Describe the image.")
            answers_button = gr.Button("Answer with all tokens and with the compressed ones", elem_id="compare-answers")
            with gr.Row():
                full_answer = gr.Textbox(label="All visual tokens", interactive=False)
                compressed_answer = gr.Textbox(label="Compressed", interactive=False)
            speedup = gr.Markdown()

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
            method_question = gr.Textbox(label="Question for every method", value=DEFAULT_QUESTION, elem_id="method-question")
            compare_methods_button = gr.Button("Compare methods: kept patches, answers, selection and prefill times", elem_id="compare-methods")
            methods_sheet = gr.Image(label="Kept patches per method", interactive=False, show_label=False, elem_id="methods-sheet", alt_text="Kept patches per method, side by side", buttons=[], elem_classes="wide-sheet")
            methods_table = gr.Markdown(elem_id="methods-table", elem_classes="stats-table")
            methods_json = gr.JSON(visible=False)

        # The clip section: on when the chosen model takes clips (its own model, not a second one).
        # The file policy first, so that a refusal of a file never depends on the model chosen.
        check_clip = lambda index: (lambda values: allowed_clip(values[index]) if len(values) > index else None)
        analyze_video = on_model(lambda m: m.clips().analyze_video, unbound(VideoHandlers.analyze_video), check_clip(0), clip_widgets)
        chat_video = on_model(lambda m: m.clips().chat_video, unbound(VideoHandlers.chat_video), check_clip(2), clip_widgets)
        no_clip = lambda video, controls: (None, None, None, None, None, "")  # an image-only model: the page's clip view stays empty
        refresh_video = on_model(
            lambda m: m.clips().refresh_video if m.takes_clips else no_clip, unbound(VideoHandlers.refresh_video), widgets=clip_widgets,
        )
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
                        video = gr.Video(label="Clip", elem_id="input-video", height=240)
                        if example_videos():
                            gr.Examples(example_videos(), inputs=video, label="Example clip (generated, CC0)")
                        frame_budget = gr.Slider(*FRAME_BUDGET_RANGE, value=DEFAULT_FRAME_BUDGET, step=1, label=labels.frame_budget_label(first.vlm), elem_id="frame-budget")
                        video_dynamic = gr.Checkbox(False, label="Dynamic budget across frames (N'_f ∝ φ_f, total frames x N)", elem_id="video-dynamic")
                        # The clip's own K, lambda and grouping (not the image section's).
                        video_groups = gr.Slider(*GROUPS_RANGE, value=0, step=1, label=labels.frame_groups_label(first.vlm), elem_id="video-groups")
                        video_lam = gr.Slider(*LAM_RANGE, value=0, step=0.25, label=labels.frame_lam_label(first.vlm), elem_id="video-lam")
                        video_grouping = gr.Radio(GROUPING_CHOICES, value="psca", label="Grouping", elem_id="video-grouping")
                        video_button = gr.Button("Analyze the clip", variant="primary", elem_id="analyze-video")
                    with gr.Column(scale=3, min_width=420):
                        with gr.Tabs():
                            with gr.Tab("Kept"):
                                frames_kept = gr.Image(label="Kept patches, frame by frame", interactive=False, show_label=False, elem_id="frames-kept", alt_text="Kept patches of every frame of the clip", buttons=[], elem_classes="wide-sheet")
                            with gr.Tab("Groups"):
                                frames_groups = gr.Image(label="PSCA groups, frame by frame", interactive=False, show_label=False, elem_id="frames-groups", alt_text="PSCA groups of every frame of the clip", buttons=[], elem_classes="wide-sheet")
                            with gr.Tab("Survivors"):
                                frames_survivors = gr.Image(label="NMS survivors, frame by frame", interactive=False, show_label=False, elem_id="frames-survivors", alt_text="NMS survivors of every frame of the clip", buttons=[], elem_classes="wide-sheet")
                            with gr.Tab("ρ, φ, N'"):
                                frames_chart = gr.Image(label="Per-frame redundancy, information and budget", interactive=False, show_label=False, elem_id="frames-chart", alt_text="Chart per frame: redundancy, information and budget", buttons=[])
                        video_table = gr.Markdown(elem_id="video-stats", elem_classes="stats-table")
                        video_json = gr.JSON(visible=False)
                video_chatbot = gr.Chatbot(label="Answer about the clip", height=220, elem_id="video-chatbot")
                with gr.Row():
                    video_message = gr.Textbox(placeholder="Ask about the clip...", label="Question about the clip", show_label=False, scale=5, elem_id="video-message")
                    video_send = gr.Button("Send", variant="primary", scale=1, elem_id="video-send")
                    video_stop = gr.Button("Stop", variant="stop", scale=1, elem_id="video-stop", interactive=False)
                video_info = gr.Markdown(elem_id="video-reply-info")

        # Endpoints for API clients only (gradio_client): a stateless chat and the patch explanation.
        with gr.Row(visible=False):
            api_chat = gr.Button("chat")
            api_explain = gr.Button("explain")
            api_video_chat = gr.Button("chat_video")
            pixel_x = gr.Number(precision=0, label="x")
            pixel_y = gr.Number(precision=0, label="y")

        controls = [image, budget, groups, lam, grouping, dynamic]
        overlays = [groups_view, survivors_view, kept_view, quotas_view, stats_json, stats_table]
        hidden = {"api_visibility": "private"}  # page-only events: not offered to API clients
        # preprocess=False: the handlers read the uploaded file themselves, through
        # demo/files.py, which reads only files this app was given.
        raw = {"preprocess": False}
        model = {**raw, **MODEL_WORK}  # queued events that run the model
        analyze_button.click(analyze, controls, overlays, api_name="analyze", **model)
        # The page's own view: overlays, chart, stats and the explanation of the last clicked
        # pixel are one answer, so none of them is ever left at an older setting.
        clicked = gr.State(None)
        page_view = on_model(lambda m: m.handlers.page_view, handlers.page_view, widgets=image_widgets)
        page_click = on_model(lambda m: m.handlers.page_click, handlers.page_click, widgets=image_widgets)
        page_outputs = overlays + [explanation, explanation_json]
        analyze_button.click(page_view, controls + [clicked], page_outputs, **hidden, **model)
        # In the browser alone (no request): the line changes as the image does.
        image.change(None, image, overlays_hint, js=f"(picture) => picture ? {json.dumps(CLICK_HINT)} : {json.dumps(OVERLAYS_HINT)}", **hidden)
        image.change(lambda: None, None, clicked, queue=False, **hidden).then(page_view, controls + [clicked], page_outputs, **hidden, **model)
        # Live re-render while a control moves: one event for all of them, so only the latest
        # values run when busy and an older answer never lands after a newer one.
        gr.on(
            [control.change for control in (budget, groups, lam, grouping, dynamic)], page_view, controls + [clicked], page_outputs,
            trigger_mode="always_last", show_progress="hidden", **hidden, **model,
        )
        # A number typed into a slider's box is shown as the slider holds it (63.7 -> 64, -5 -> 8).
        for control, name, bounds, step in ((budget, "budget", BUDGET_RANGE, 1), (groups, "groups", GROUPS_RANGE, 1), (lam, "lam", LAM_RANGE, 0.25)):
            control.change(snapper(name, bounds, step), control, control, queue=False, show_progress="hidden", **hidden, **raw)
        for view in (kept_view, groups_view, survivors_view):
            view.select(page_click, controls, page_outputs + [clicked], **hidden, **model)
        page_pick = on_model(lambda m: m.handlers.page_pick, handlers.page_pick, widgets=image_widgets)
        pick_button.click(page_pick, controls + [pick_view, pick_row, pick_column], page_outputs + [clicked], **hidden, **model)
        api_explain.click(explain, controls + [pixel_x, pixel_y], [explanation, explanation_json], api_name="explain", **model)

        # The page's chat (demo/chat.py): sending is immediate and never waits for an answer.
        chat_outputs = [chatbot, chat_status, stats_json, stats_table]
        page_chat_outputs = chat_outputs + [stop]
        answering = {"trigger_mode": "multiple", "show_progress": "hidden", **hidden, **MODEL_WORK}
        # Queued (its own concurrency: never behind model work), because only a queued event's
        # gr.Error reaches the page with its message; outside the queue it is a bare "Error".
        sent = gr.on(
            [send.click, message.submit], sender(chats, image_widgets), [message] + controls, [message, chatbot, chat_status],
            queue=False, trigger_mode="multiple", show_progress="hidden", **hidden, **raw,
        )
        sent.failure(why_not_sent, None, chat_status, queue=False, show_progress="hidden", **hidden)  # not a refusal: those return
        sent.success(answer, None, page_chat_outputs, **answering)
        stop.click(stop_answer, None, None, queue=False, **hidden)
        chatbot.retry(retry, controls, chatbot, queue=False, **hidden, **raw).success(answer, None, page_chat_outputs, **answering)
        chatbot.undo(undo, None, [chatbot, message], queue=False, **hidden)
        chatbot.clear(new_chat, None, [chatbot, reply_info, stop], queue=False, **hidden)
        image.change(new_chat, None, [chatbot, reply_info, stop], queue=False, **hidden)  # a new image starts a new chat
        api_chat.click(chat, [message, chatbot] + controls, chat_outputs, api_name="chat", **model)

        compare_button.click(compare_groupings, [image, budget, groups, lam, dynamic], comparison, api_name="compare_groupings", **model)
        answers_button.click(
            compare_answers, [question, image, budget, groups, lam, grouping, dynamic],
            [full_answer, compressed_answer, speedup], api_name="compare_answers", **model,
        )

        method_inputs = [image, method, budget]
        method_outputs = [method_view, method_json, method_table]
        method_button.click(analyze_method, method_inputs, method_outputs, api_name="analyze_method", **model)
        # The method view follows the switch, the budget and a new image, like the overlays.
        for control in (method, budget):
            control.change(refresh_method, method_inputs, method_outputs, trigger_mode="always_last", show_progress="hidden", **hidden, **model)
        image.change(refresh_method, method_inputs, method_outputs, **hidden, **model)
        compare_methods_button.click(
            compare_methods, [image, method_question, budget], [methods_sheet, methods_table, methods_json],
            api_name="compare_methods", **model,
        )

        # The video controls: N per frame and the dynamic switch; K, lambda and grouping as for images.
        video_controls = [video, frame_budget, video_groups, video_lam, video_grouping, video_dynamic]
        video_outputs = [frames_groups, frames_survivors, frames_kept, frames_chart, video_json, video_table]
        video_button.click(analyze_video, video_controls, video_outputs, api_name="analyze_video", **model)
        video.change(refresh_video, video_controls, video_outputs, **hidden, **model)
        # The clip's controls re-render at once, as the image's do.
        gr.on(
            [control.change for control in (frame_budget, video_groups, video_lam, video_grouping, video_dynamic)],
            refresh_video, video_controls, video_outputs, trigger_mode="always_last", show_progress="hidden", **hidden, **model,
        )
        for control, name, bounds, step in ((frame_budget, "budget", FRAME_BUDGET_RANGE, 1), (video_groups, "groups", GROUPS_RANGE, 1), (video_lam, "lam", LAM_RANGE, 0.25)):
            control.change(snapper(name, bounds, step), control, control, queue=False, show_progress="hidden", **hidden, **raw)
        # A clip whose codec browsers do not play (MPEG-4 Part 2, MJPEG...) is swapped for a
        # VP8 copy of the same frames, within bounds (demo/playable.py); the analysis follows.
        video.upload(make_playable, video, video, show_progress="hidden", **hidden, **model)
        video_outputs_chat = [video_chatbot, video_info, video_json, video_table]
        api_video_chat.click(chat_video, [video_message, video_chatbot] + video_controls, video_outputs_chat, api_name="chat_video", **model)

        # The page's clip chat: the image chat's queue and events (demo/chat.py), on the clip.
        video_page_outputs = [video_chatbot, video_info, video_json, video_table, video_stop]
        video_sent = gr.on(
            [video_send.click, video_message.submit], sender(video_chats, clip_widgets), [video_message] + video_controls,
            [video_message, video_chatbot, video_info], queue=False, trigger_mode="multiple", show_progress="hidden", **hidden, **raw,
        )
        video_sent.failure(why_not_sent, None, video_info, queue=False, show_progress="hidden", **hidden)
        video_sent.success(video_answer, None, video_page_outputs, **answering)
        video_stop.click(video_stop_answer, None, None, queue=False, **hidden)
        video_chatbot.retry(video_retry, video_controls, video_chatbot, queue=False, **hidden, **raw).success(video_answer, None, video_page_outputs, **answering)
        video_chatbot.undo(video_undo, None, [video_chatbot, video_message], queue=False, **hidden)
        video_chatbot.clear(video_new_chat, None, [video_chatbot, video_info, video_stop], queue=False, **hidden)
        video.change(video_new_chat, None, [video_chatbot, video_info, video_stop], queue=False, **hidden)  # a new clip starts a new chat

        # The model picker: the session's own model (demo/models.py). Every panel follows it:
        # labels, banner, clip section; the chat, the clicked patch and the comparisons of the
        # previous model are cleared; then the overlays, the method view and the clip re-render.
        @on_gpu
        @user_errors
        def switch_model(model, request: gr.Request):
            served = slot.choose(request.session_hash, client_of(request), model)
            with contextlib.suppress(ValueError):  # an API client has no page chat
                chats.reset(request.session_hash, client_of(request))
                video_chats.reset(request.session_hash, client_of(request))
            vlm = served.vlm
            return (
                served.banner,
                gr.Slider(label=labels.budget_label(vlm)), gr.Slider(label=labels.groups_label(vlm)), gr.Slider(label=labels.lam_label(vlm)),
                gr.Markdown(visible=not served.takes_clips), gr.Button(visible=bool(clip_model) and not served.takes_clips),
                gr.Column(visible=served.takes_clips),
                served.videos.note if served.takes_clips else "",
                gr.Slider(label=labels.frame_budget_label(vlm)), gr.Slider(label=labels.frame_groups_label(vlm)),
                gr.Slider(label=labels.frame_lam_label(vlm)),
                [], "", EXPLAIN_HINT, None, None,  # the chat, its status, the clicked patch
                None, "", "", "", None, None, "",  # the comparisons of the previous model
                [], "",  # the chat about the clip
            )

        switch_outputs = [
            banner_box, budget, groups, lam, video_off, to_clips, video_on, video_note, frame_budget, video_groups, video_lam,
            chatbot, reply_info, explanation, explanation_json, clicked,
            comparison, full_answer, compressed_answer, speedup, methods_sheet, methods_json, methods_table,
            video_chatbot, video_info,
        ]

        def shown_model(request: gr.Request):
            # A refused switch (the limit, a model that cannot load): the picker shows the model still served.
            return slot.chosen(request.session_hash, client_of(request))

        @user_errors
        def methods_of_model(chosen, request: gr.Request):
            # The method switch offers what the session's model can run; a method it cannot
            # run is replaced by the first, and the note says why (never an error over the view).
            with slot.lease_for(request) as served:
                choices = offered(served.vlm)
                return gr.Radio(choices=choices, value=chosen if chosen in choices else choices[0]), unavailable_note(served.vlm)

        def after_switch(switched):
            switched.success(methods_of_model, method, [method, method_note], **hidden, **model).then(
                page_view, controls + [clicked], page_outputs, **hidden, **model,
            ).then(
                refresh_method, method_inputs, method_outputs, **hidden, **model,
            ).then(refresh_video, video_controls, video_outputs, **hidden, **model)
            switched.failure(shown_model, None, picker, queue=False, **hidden)

        # `input`, not `change`: the picker set back after a refusal must not switch again.
        after_switch(picker.input(switch_model, picker, switch_outputs, api_name="choose_model", **model))
        # The Video section's switch is the picker's: shown in the picker, the same choice, limits and re-render.
        after_switch(to_clips.click(lambda: clip_model, None, picker, queue=False, **hidden).then(switch_model, picker, switch_outputs, **hidden, **model))
        page.load(open_chat, None, None, queue=False, **hidden)
        page.load(None, None, None, js=A11Y_JS, queue=False, **hidden)
        page.unload(close_chat)
    # api_open=False: the model events run only through the queue (demo/admission.py admits
    # every door); its own bound is the policy's hard one, so Gradio never refuses first.
    page.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_HARD_SIZE, api_open=False)
    page.delete_cache = (300, UPLOAD_KEEP_S)  # uploads and outputs: deleted once this old
    return page


def said_why_not_sent(send):
    """A send event whose refusal is a message under the chat, never an error: the question
    stays in the box, the conversation stays as it was and usable (no "Error" badge over it)."""

    @functools.wraps(send)
    def sending(*args, **kwargs):
        try:
            return send(*args, **kwargs)
        except (ValueError, TypeError) as error:
            refused(send, error)  # one line in the log
            return gr.skip(), gr.skip(), f"⚠️ Not sent: {error}"

    return sending


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
