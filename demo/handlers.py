"""The app's event handlers: plain functions of the control values.

Every handler turns bad input into ``gr.Error`` with the library's own message, so a user
sees what was wrong and the server keeps serving everybody else. Every handler reads its
image through :func:`demo.files.read_image_bytes`: only files the app was given.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from typing import Iterator

import gradio as gr

import viz
from demo.controls import GROUPING_CHOICES, Controls, in_range, whole
from demo.files import allowed_path, example_images, read_image_bytes, requested_path  # noqa: F401  (example_images: app.py)
from demo.conversation import answers, chat_history, chat_turns, conversation, question, reply_markdown, reply_timings
from demo.limits import BUDGET_RANGE, PIXEL_RANGE
from demo.stats import image_stats, stats_markdown  # noqa: F401  (stats_markdown: the page's chat)
from prunesid import PruneSID
from prunesid.vlm import VLM
from viz.explain import explain_patch, locate
from viz.marks import CLICKED_EDGE, SUPPRESSOR_EDGE, number_groups, outline_patches, patch_box

EXPLAIN_HINT = "Click a patch on the Kept, Groups or Survivors overlay to see why PruneSID kept or dropped it."
MAX_NEW_TOKENS_LIMIT = 512  # whatever the command line says: one answer cannot hold a worker for long
log = logging.getLogger("prunesid.demo")


def user_errors(function):
    """Show ValueError / TypeError from the library as a visible gr.Error (keeps the
    signature, so the API's parameter names stay the handler's). A refused request is a
    user's mistake, not the server's: one line in the log, no traceback."""
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def streamed(*args, **kwargs):
            try:
                yield from function(*args, **kwargs)
            except (ValueError, TypeError) as error:
                raise refused(function, error) from error
            finally:
                release_memory()

        return streamed

    @functools.wraps(function)
    def returned(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (ValueError, TypeError) as error:
            raise refused(function, error) from error
        finally:
            release_memory()

    return returned


def release_memory() -> None:
    """Hand freed heap back to the system after a request (glibc keeps it otherwise: a
    large decode would leave the app gigabytes bigger for good). A few ms; no-op elsewhere."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc():
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def checked_controls(function, budget_range: tuple[int, int] = BUDGET_RANGE):
    """Hold a handler's ``budget`` to the slider's range and its ``question`` / ``message``
    to :func:`question`, before the handler runs (for handlers that do not check these
    themselves, as demo/methods.py's). Keeps the signature."""
    signature = inspect.signature(function)

    def check(args, kwargs) -> None:
        values = signature.bind_partial(*args, **kwargs).arguments
        if "budget" in values:
            in_range(whole(values["budget"], "budget"), "budget", budget_range)
        for name in ("question", "message"):
            if name in values:
                question(values[name], name)

    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def streamed(*args, **kwargs):
            check(args, kwargs)
            yield from function(*args, **kwargs)

        return streamed

    @functools.wraps(function)
    def returned(*args, **kwargs):
        check(args, kwargs)
        return function(*args, **kwargs)

    return returned


def refused(function, error: Exception) -> gr.Error:
    """The gr.Error a user sees for ``error``, logged as one line."""
    message = str(error)
    log.warning("refused %s: %s", getattr(function, "__name__", "request"), message.encode("utf-8", "replace").decode()[:300])
    return gr.Error(message, title="Cannot do that", print_exception=False)


class Handlers:
    """Binds the handlers to one loaded model and its calibrated phi_ref."""

    def __init__(self, vlm: VLM, phi_ref: float | None = None, max_new_tokens: int = 96):
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise ValueError(f"max_new_tokens must be an integer in [1, {MAX_NEW_TOKENS_LIMIT}], got {max_new_tokens!r}")
        self.vlm = vlm
        self.phi_ref = phi_ref
        self.max_new_tokens = max_new_tokens  # per answer: enough for a demo, bounded for a shared server

    # --- settings ----------------------------------------------------------------------

    def press(self, controls: Controls) -> PruneSID:
        """The controls' press, with this model's calibrated phi_ref for the dynamic budget."""
        return controls.press(self.phi_ref)

    def encode(self, image):
        """The cached encoding of the image an event names (only files the app was given)."""
        return self.vlm.encode(read_image_bytes(image))

    # --- analyze: the overlays ------------------------------------------------------------

    def analyze(self, image, controls):
        """Overlays (groups, survivors, kept), the per-group budget chart of the first view
        and the stats of one image's selection."""
        _, _, layers, quotas, stats = self.selected(image, controls)
        return layers["groups"], layers["survivors"], layers["kept"], quotas, stats, stats_markdown(stats)

    def selected(self, image, controls):
        """``(encoded, selection, overlays, quota chart, stats)`` of the image under the controls."""
        press = self.press(controls)
        encoded = self.encode(image)
        start = time.perf_counter()
        selection = self.vlm.compress(encoded, press)[0]
        select_ms = (time.perf_counter() - start) * 1000
        layers = viz.render_all(encoded.image, selection, encoded.grids)
        stats = image_stats(self.vlm, encoded, selection, press, {"vision_ms": encoded.vision_ms, "select_ms": select_ms})
        quotas = viz.render_quotas(selection, view=stats["scope_view"])
        return encoded, selection, layers, quotas, stats

    def page_view(self, image, controls, point=None):
        """The page's overlays, chart, stats and explanation in one answer, so none of them can
        show another setting than the rest (every control held to its range, as everywhere;
        the page snaps a typed number back onto its slider, see app.py). ``point``, the
        last clicked pixel, is explained again under the new settings and outlined with its
        suppressor; the groups are numbered on the groups overlay."""
        if image is None:
            return None, None, None, None, None, "", EXPLAIN_HINT, None
        encoded, selection, layers, quotas, stats = self.selected(image, controls)
        layers["groups"] = number_groups(layers["groups"], encoded.image, selection, encoded.grids)
        text, why = EXPLAIN_HINT, None
        if point is not None:
            layers, text, why = explained(encoded, selection, layers, point)
        return layers["groups"], layers["survivors"], layers["kept"], quotas, stats, stats_markdown(stats), text, why

    def page_click(self, image, controls, evt: gr.SelectData):
        """A click on an overlay: the page view with that pixel explained; also hands back the
        pixel, which the page keeps so the next control change explains it again."""
        index = getattr(evt, "index", None)
        if not isinstance(index, (list, tuple)) or len(index) != 2:
            raise ValueError(f"the click carried no pixel position, got {index!r}")
        point = (whole(index[0], "x"), whole(index[1], "y"))
        return (*self.page_view(image, controls, point), point)

    def page_pick(self, image, controls, view, row, column):
        """The keyboard's way to click a patch: view, row and column (numbered from 0, as the
        explanation names them) -> the page view with that patch explained, and its pixel."""
        if image is None:
            raise ValueError("no image: upload one or pick an example, then pick a patch")
        encoded = self.encode(image)
        view = in_range(whole(view, "view"), "view", (0, encoded.num_views - 1))
        grid = encoded.grids[view]
        row = in_range(whole(row, "row"), "row", (0, grid.rows - 1))
        column = in_range(whole(column, "column"), "column", (0, grid.cols - 1))
        box = patch_box(encoded.image, encoded.grids, view, row * grid.cols + column)
        if box is None:
            raise ValueError(f"patch (row {row}, column {column}) of view {view} is not drawn on the overlay")
        point = ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2)
        return (*self.page_view(image, controls, point), point)

    def refresh(self, image, controls):
        """Like :meth:`analyze`, for events fired by the page itself: a cleared image (or
        none yet) clears the overlays instead of raising an error at the user."""
        if image is None:
            return None, None, None, None, None, ""
        return self.analyze(image, controls)

    def compare_groupings(self, image, budget, groups, lam, dynamic):
        """The three groupings side by side on the same image and budget."""
        presses = {name: self.press(Controls.read(budget, groups, lam, name, dynamic)) for name in GROUPING_CHOICES}
        encoded = self.encode(image)
        selections = {name: self.vlm.compress(encoded, press)[0] for name, press in presses.items()}
        return viz.compare(encoded.image, selections, encoded.grids, layer="kept")

    # --- why was this patch dropped? ---------------------------------------------------------

    def explain(self, image, controls, x, y) -> tuple[str, dict | None]:
        """Why the patch under pixel (x, y) of an overlay (groups, survivors or kept: they
        share one layout) was kept or dropped: markdown and the numbers as a dict."""
        if image is None:
            return "", None
        x, y = in_range(whole(x, "x"), "x", PIXEL_RANGE), in_range(whole(y, "y"), "y", PIXEL_RANGE)
        press = self.press(controls)
        encoded = self.encode(image)
        selection = self.vlm.compress(encoded, press)[0]
        where = locate(encoded.image, encoded.grids, x, y)
        if where.patch is None:
            return where.markdown(), where.to_dict()
        explanation = explain_patch(selection, encoded.features, where.view, where.patch, encoded.grids)
        return explanation.markdown(), explanation.to_dict()

    # --- chat ----------------------------------------------------------------------------

    def chat(self, message, history, image, controls) -> Iterator[tuple]:
        """Stream the compressed model's answer into the chat history; when it is done,
        refresh the stats with the measured prefill. Stateless: the API's chat."""
        question(message, "message", "type a question about the image")
        history = chat_history(history)
        yield from chat_turns(message, history, self.answer_stream(conversation(history, message), image, controls), stats_markdown)

    def answer_stream(self, messages: list[dict], image, controls: Controls, stop: threading.Event | None = None):
        """Yields ``(answer so far, None)`` while generating, then ``(answer, (info, stats))``.
        ``stop``, when set, ends the answer early (what is generated so far is kept)."""
        press = self.press(controls)
        data = read_image_bytes(image)
        encoded = self.vlm.encode(data)

        def finished(reply):
            return reply_markdown(reply), image_stats(self.vlm, encoded, reply.selections[0], press, reply_timings(encoded, reply))

        yield from answers(self.vlm, data, messages, press, self.max_new_tokens, stop, finished)

    def queued_answer(self, history: list, message: str, image, controls: Controls, stop: threading.Event):
        """One queued question of the page's chat (demo/chat.py): as :meth:`answer_stream`."""
        return self.answer_stream(conversation(history, message), image, controls, stop)

    def compare_answers(self, message, image, controls):
        """All visual tokens vs the compressed ones: both answers and the measured prefill speedup."""
        question(message, "question", "type a question about the image")
        press = self.press(controls)
        data = read_image_bytes(image)
        self.vlm.encode(data)
        full = self.vlm.chat(data, message, press=None, max_new_tokens=self.max_new_tokens)
        compressed = self.vlm.chat(data, message, press=press, max_new_tokens=self.max_new_tokens)
        speedup = full.timings["prefill_ms"] / max(compressed.timings["prefill_ms"], 1e-6)
        summary = (
            f"Prefill with **{full.visual_tokens[0]}** visual tokens: {full.timings['prefill_ms']:.0f} ms; "
            f"with **{compressed.visual_tokens[0]}**: {compressed.timings['prefill_ms']:.0f} ms "
            f"(**{speedup:.2f}x** faster, prompt {full.prompt_tokens} -> {compressed.prompt_tokens} tokens)."
        )
        return full.text, compressed.text, summary


def explained(encoded, selection, layers: dict, point) -> tuple[dict, str, dict]:
    """The clicked pixel's explanation (markdown and numbers), and the overlays with the patch
    outlined, and the survivor that suppressed it."""
    x, y = (in_range(whole(value, name), name, PIXEL_RANGE) for value, name in zip(point, "xy"))
    where = locate(encoded.image, encoded.grids, x, y)
    if where.patch is None:
        return layers, where.markdown(), where.to_dict()
    explanation = explain_patch(selection, encoded.features, where.view, where.patch, encoded.grids)
    text = explanation.markdown()
    marks = [(where.view, where.patch, CLICKED_EDGE)]
    if explanation.suppressor is not None:
        marks.append((where.view, explanation.suppressor, SUPPRESSOR_EDGE))
    text += "\n\n<small>Outlined on the overlays: this patch in blue" + (
        ", the survivor that suppressed it in magenta.</small>" if explanation.suppressor is not None else ".</small>"
    )
    outlined = {name: outline_patches(layer, encoded.image, encoded.grids, marks) for name, layer in layers.items()}
    return outlined, text, explanation.to_dict()


def check_image_question(image, controls: Controls) -> None:
    """The image chat's check when a question is sent (the controls are read already): the
    file, model-independent."""
    allowed_path(requested_path(image))































