"""The page's event functions, on the model each session chose (demo/models.py).

app.py lays the page out and wires these to its components; here is what each event does:
the handlers of the session's model (:class:`PageEvents`), and the events of one chat queue
(:class:`ChatEvents`: send, answer, stop, retry, undo, a new conversation). The handlers
that take a section's :class:`~demo.controls.Controls` are given the widgets' values
(``image_widgets`` / ``clip_widgets``), so the API's parameters are the widgets'.
"""

from __future__ import annotations

import contextlib
import functools

import gradio as gr

from demo.admission import client_of
from demo.chat import ChatQueue
from demo.controls import clip_widgets, image_widgets
from demo.conversation import question
from demo.handlers import check_image_question, checked_controls, refused, user_errors
from demo.methods import offered, unavailable_note
from demo.models import ModelSlot, unbound
from demo.ordering import Tickets, newest_only
from demo.stats import stats_markdown, video_stats_markdown
from demo.video import VideoHandlers, allowed_clip, check_clip_question

try:  # ZeroGPU on Hugging Face Spaces: GPU work is decorated when the package exists.
    import spaces

    on_gpu = spaces.GPU
except ImportError:

    def on_gpu(function):
        return function


NOT_QUEUED = "⚠️ Not sent: the question could not be queued; try again"


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


def why_not_sent():
    return NOT_QUEUED


def no_clip(video, controls):
    """An image-only model: the page's clip view stays empty."""
    return None, None, None, None, None, ""


def clip_at(index: int):
    """The file policy on the clip among an event's values (before any model is asked)."""
    return lambda values: allowed_clip(values[index]) if len(values) > index else None


class ChatEvents:
    """The page's events of one chat queue (the image's, the clip's), on the session's model
    (``stream_of(served)``). The answer also says whether Stop can be pressed: only while an
    answer is being written."""

    def __init__(self, slot: ModelSlot, queue: ChatQueue, stream_of, stats_markdown_of, widgets, tickets: Tickets, view: str):
        self.slot, self.queue, self.stream_of, self.stats_markdown_of = slot, queue, stream_of, stats_markdown_of
        # A finished answer's stats are those of the controls it was asked with: not shown over
        # a render of the section's view newer than the question (demo/ordering.py).
        self.tickets, self.view = tickets, view
        # Each event wrapped for the page, under its method's name (Gradio names the page's events after it).
        self.send = said_why_not_sent(widgets(self.send_message))
        self.answer = on_gpu(user_errors(self.answer))
        self.stop_answer = user_errors(self.stop_answer)
        self.retry = user_errors(widgets(self.retry))
        self.undo = user_errors(self.undo)
        self.new_chat = user_errors(self.new_chat)

    def send_message(self, message, media, controls, request: gr.Request):
        order = self.tickets.take()
        return "", self.queue.send(request.session_hash, message, media, controls, client_of(request), order), "waiting for the answer..."

    def answer(self, request: gr.Request):
        last = None
        with self.slot.lease_for(request) as served:  # the session's model, kept loaded until the answers are written
            fresh = functools.partial(self.tickets.show, (request.session_hash, self.view))
            answers = self.queue.answer(request.session_hash, client_of(request), answer_stream=self.stream_of(served), fresh=fresh)
            for history, info, stats in answers:
                last = self._shown(history, info, stats)
                yield last
        if last is not None:  # the event's result: the finished conversation again, with Stop off
            yield (*last[:-1], gr.Button(interactive=False))
        else:  # another worker of this session is answering: it takes the question
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()

    def _shown(self, history, info, stats) -> tuple:
        if stats is None:  # info None: still writing; text: the answer failed or the chat was reset
            return history, "generating..." if info is None else info, gr.skip(), gr.skip(), gr.Button(interactive=info is None)
        return history, info, stats, self.stats_markdown_of(stats), gr.Button(interactive=False)

    def stop_answer(self, request: gr.Request):
        self.queue.stop(request.session_hash, client_of(request))

    def retry(self, media, controls, request: gr.Request):
        return self.queue.retry(request.session_hash, media, controls, client_of(request), self.tickets.take())

    def undo(self, request: gr.Request):
        return self.queue.undo(request.session_hash, client_of(request))

    def new_chat(self, request: gr.Request):
        return self.queue.reset(request.session_hash, client_of(request)), "", gr.Button(interactive=False)


class PageEvents:
    """Every handler of the page bound to the model its session chose, the two chats, and the
    session's own events (open, close, the method switch following a model switch)."""

    def __init__(self, slot: ModelSlot):
        self.slot = slot
        self.tickets = Tickets()  # which render of each session's views was shown last
        first, handlers = slot.first, slot.first.handlers
        on_model = self.on_model
        self.analyze_method = on_model(lambda m: checked_controls(m.methods.analyze), first.methods.analyze)
        self.refresh_method = on_model(lambda m: checked_controls(m.methods.refresh), first.methods.refresh)
        self.compare_methods = on_model(lambda m: checked_controls(m.methods.compare), first.methods.compare)
        self.compare_groupings = on_model(lambda m: m.handlers.compare_groupings, handlers.compare_groupings)
        self.analyze = on_model(lambda m: m.handlers.analyze, handlers.analyze, widgets=image_widgets)
        self.chat = on_model(lambda m: m.handlers.chat, handlers.chat, widgets=image_widgets)
        self.compare_answers = on_model(lambda m: m.handlers.compare_answers, handlers.compare_answers, widgets=image_widgets)
        self.explain = on_model(lambda m: m.handlers.explain, handlers.explain, widgets=image_widgets)
        self.page_view = on_model(lambda m: m.handlers.page_view, handlers.page_view, widgets=image_widgets)
        self.page_click = on_model(lambda m: m.handlers.page_click, handlers.page_click, widgets=image_widgets)
        self.page_pick = on_model(lambda m: m.handlers.page_pick, handlers.page_pick, widgets=image_widgets)
        # The clip's events check the file policy first, so that a refusal of a file never depends on the model chosen.
        self.analyze_video = on_model(lambda m: m.clips().analyze_video, unbound(VideoHandlers.analyze_video), clip_at(0), clip_widgets)
        self.chat_video = on_model(lambda m: m.clips().chat_video, unbound(VideoHandlers.chat_video), clip_at(2), clip_widgets)
        self.refresh_video = on_model(
            lambda m: m.clips().refresh_video if m.takes_clips else no_clip, unbound(VideoHandlers.refresh_video), widgets=clip_widgets,
        )
        chats = ChatQueue(handlers.queued_answer, validate=check_image_question, check_message=question)
        clip_chats = ChatQueue(None, validate=check_clip_question, check_message=question)
        self.image_chat = ChatEvents(slot, chats, lambda served: served.handlers.queued_answer, stats_markdown, image_widgets, self.tickets, "image")
        self.clip_chat = ChatEvents(slot, clip_chats, lambda served: served.clips().queued_answer, video_stats_markdown, clip_widgets, self.tickets, "clip")
        self.open_chat = user_errors(self.open_chat)
        self.methods_of_model = user_errors(self.methods_of_model)

    def on_model(self, pick, reference, check=None, widgets=None):
        """An event running ``pick(served)`` on the session's model, with ``reference``'s API;
        with ``widgets``, the handler's Controls come from the widgets' values."""
        if widgets is not None:
            pick, reference = (lambda served, picked=pick: widgets(picked(served))), widgets(reference)
        return on_gpu(user_errors(self.slot.bind(pick, reference, check)))

    def newest(self, view: str, function, outputs: list):
        """``function`` (a render of ``view`` into ``outputs``) whose answer never replaces the
        answer of a later render of that view in the same session (demo/ordering.py)."""
        return newest_only(self.tickets, view, len(outputs))(function)

    def reset_view(self, view: str, request: gr.Request) -> None:
        """An event that resets ``view`` (a model switch): renders started before it are not shown."""
        self.tickets.show((getattr(request, "session_hash", None), view), self.tickets.take())

    @property
    def queues(self) -> tuple[ChatQueue, ChatQueue]:
        return self.image_chat.queue, self.clip_chat.queue

    # The chat's session is the browser session Gradio gives, opened when the page loads and
    # tied to the client's address (demo/chat.py): an id made up in a request reaches nothing.
    def open_chat(self, request: gr.Request):
        for queue in self.queues:
            queue.open(request.session_hash, client_of(request))

    def close_chat(self, request: gr.Request):
        for queue in self.queues:
            queue.forget(request.session_hash, client_of(request))
        self.slot.forget(request.session_hash, client_of(request))
        self.tickets.forget(request.session_hash)

    def reset_chats(self, request: gr.Request) -> None:
        """A model switch: both conversations of the previous model end."""
        with contextlib.suppress(ValueError):  # an API client has no page chat
            for queue in self.queues:
                queue.reset(request.session_hash, client_of(request))

    def shown_model(self, request: gr.Request):
        """A refused switch (the limit, a model that cannot load): the picker shows the model still served."""
        return self.slot.chosen(request.session_hash, client_of(request))

    def methods_of_model(self, chosen, request: gr.Request):
        """The method switch offers what the session's model can run; a method it cannot run
        is replaced by the first, and the note says why (never an error over the view)."""
        with self.slot.lease_for(request) as served:
            choices = offered(served.vlm)
            return gr.Radio(choices=choices, value=chosen if chosen in choices else choices[0]), unavailable_note(served.vlm)
