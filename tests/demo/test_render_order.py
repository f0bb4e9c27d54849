"""Newest answer wins (demo/ordering.py): two renders of one session's view that finish out of
order never leave the older one on the page.

The bug these pin: with two model events running at once, a model switch's re-render (started
at N = 64) finished after the render of the N = 8 the visitor had set meanwhile, and the page
showed 64 again (seen in the browser test of every family's numbers). Removing the wrapper
from the page view's events in app.py, or comparing tickets with ``<=``/``>`` the other way,
fails these tests.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import gradio as gr
import pytest

from demo.ordering import Tickets, newest_only


def _request(session: str):
    return SimpleNamespace(session_hash=session, client=SimpleNamespace(host="198.51.100.7"), headers={})


def _skipped(answer) -> bool:
    parts = answer if isinstance(answer, tuple) else (answer,)
    return all(part == gr.skip() for part in parts)


def test_an_older_ticket_is_not_shown_after_a_newer_one_but_is_before_it():
    tickets = Tickets()
    first, second = tickets.take(), tickets.take()
    assert first < second
    assert tickets.show(("s", "image"), second)
    assert not tickets.show(("s", "image"), first)
    # The newest may be shown again (a render that returns twice), and a third one after it.
    assert tickets.show(("s", "image"), second)
    third = tickets.take()
    assert tickets.show(("s", "image"), third)
    # In order, every answer is shown.
    fresh = Tickets()
    a, b = fresh.take(), fresh.take()
    assert fresh.show(("s", "image"), a) and fresh.show(("s", "image"), b)


def test_sessions_and_views_keep_their_own_order():
    tickets = Tickets()
    oldest, old, new = tickets.take(), tickets.take(), tickets.take()
    assert tickets.show(("s", "image"), new)
    assert tickets.show(("t", "image"), old)  # another session
    assert tickets.show(("s", "methods"), old)  # another view of the same session
    tickets.forget("s")
    assert tickets.show(("s", "image"), old)  # a closed page's order is forgotten
    assert not tickets.show(("t", "image"), oldest)  # another session's is not


def test_the_remembered_views_are_bounded_and_the_least_recent_goes_first():
    tickets = Tickets(max_sessions=2)
    t1, t2, t3, t4, late = (tickets.take() for _ in range(5))
    assert tickets.show(("a", "image"), t3)
    assert tickets.show(("b", "image"), t2)
    assert tickets.show(("a", "image"), t4)  # "a" used again: now "b" is the least recent
    assert tickets.show(("c", "image"), late)  # three views, room for two: "b" is forgotten
    assert not tickets.show(("a", "image"), t1)  # "a" is still remembered
    assert tickets.show(("b", "image"), t1)  # "b" is not


def _racing(render, request_of=_request):
    """Runs ``render("slow")`` and, while it waits, ``render("fast")`` (the gr.Request last, as
    Gradio passes it): the slow one started first and finishes last. Returns both answers."""
    started, release = threading.Event(), threading.Event()

    def run(name):
        return render(name, started, release, request_of("session-1"))

    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(run, "slow")
        assert started.wait(10)
        fast = pool.submit(run, "fast").result(timeout=10)
        release.set()
        return slow.result(timeout=10), fast


def test_a_render_that_finishes_after_a_later_one_is_skipped_with_one_skip_per_output():
    tickets = Tickets()

    @newest_only(tickets, "image", outputs=3)
    def render(name, started, release, request):
        if name == "slow":
            started.set()
            release.wait(10)
        return (name, name, name)

    slow, fast = _racing(render)
    assert fast == ("fast", "fast", "fast")
    assert isinstance(slow, tuple) and len(slow) == 3 and _skipped(slow)

    @newest_only(Tickets(), "image", outputs=1)
    def single(name, started, release, request):
        if name == "slow":
            started.set()
            release.wait(10)
        return name

    slow, fast = _racing(single)
    assert fast == "fast" and _skipped(slow) and not isinstance(slow, tuple)


def test_renders_of_other_sessions_do_not_skip_each_other():
    tickets = Tickets()
    sessions = iter(["session-1", "session-2"])

    @newest_only(tickets, "image", outputs=1)
    def render(name, started, release, request):
        if name == "slow":
            started.set()
            release.wait(10)
        return name

    slow, fast = _racing(render, request_of=lambda _: _request(next(sessions)))
    assert (slow, fast) == ("slow", "fast")


def test_an_error_shows_nothing_and_does_not_count_as_shown():
    tickets = Tickets()

    @newest_only(tickets, "image", outputs=1)
    def render(value, request):
        if value is None:
            raise gr.Error("no image")
        return value

    first = tickets.take()  # a render that started before the failing one
    with pytest.raises(gr.Error):
        render(None, _request("s"))
    assert tickets.show(("s", "image"), first)  # the failure did not mark a newer answer as shown


@pytest.fixture()
def picture_path():
    from tests.demo.test_demo_handlers import picture_path as made

    yield from made.__wrapped__()


@pytest.fixture(scope="module")
def built_page(tiny_vlm):
    import app
    from demo.models import ModelSlot

    slot = ModelSlot.starting_with(tiny_vlm, "banner")
    return app.build(slot), slot


def _page_fn(page, name: str):
    functions = [fn for fn in page.fns.values() if getattr(fn.fn, "__name__", "") == name]
    assert functions, name
    return functions


def test_every_event_that_renders_the_image_view_shares_its_order(built_page):
    """The page view's events (a control moved, a new image, the Analyze button, the chain after
    a model switch) are one wrapped function, and a click and the patch picker take tickets of
    the same view: so none of them can land over a newer one."""
    page, _ = built_page
    views = _page_fn(page, "page_view")
    assert len(views) >= 4 and len({id(fn.fn) for fn in views}) == 1
    for name in ("page_view", "page_click", "page_pick"):
        for fn in _page_fn(page, name):
            assert getattr(fn.fn, "view", None) == "image", name
    assert {getattr(fn.fn, "view", None) for fn in _page_fn(page, "refresh")} == {"methods"}  # MethodHandlers.refresh
    assert {getattr(fn.fn, "view", None) for fn in _page_fn(page, "refresh_video")} == {"clip"}


def test_the_app_s_page_view_skips_the_older_of_two_renders_that_finish_out_of_order(built_page, picture_path, monkeypatch):
    """Through the built app's own event function: N = 64 started first and held, N = 8 shown,
    then the N = 64 answer arrives and is skipped; the stats on the page stay at N = 8."""
    page, slot = built_page
    page_view = _page_fn(page, "page_view")[0].fn
    handlers = slot.first.handlers
    original = handlers.page_view
    gate = {}

    def held(image, controls, point=None):
        if controls.budget == 64:
            gate["started"].set()
            gate["release"].wait(30)
        return original(image, controls, point)

    monkeypatch.setattr(handlers, "page_view", held)

    def render(name, started, release, request):
        gate.update(started=started, release=release)
        budget = 64 if name == "slow" else 8
        return page_view(picture_path, budget, 0, 0, "psca", False, None, request)

    slow, fast = _racing(render)
    assert _skipped(slow) and len(slow) == len(fast)
    stats = next(part for part in fast if isinstance(part, dict) and "budget" in part)
    assert stats["budget"] == 8


def test_a_model_switch_skips_what_the_previous_model_was_still_rendering(built_page, picture_path, monkeypatch):
    """A render started before the switch and finished after it would put the previous model's
    overlays and explanation back: it is skipped."""
    page, slot = built_page
    page_view = _page_fn(page, "page_view")[0].fn
    switch = _page_fn(page, "switch_model")[0].fn
    handlers = slot.first.handlers
    original = handlers.page_view
    started, release = threading.Event(), threading.Event()

    def held(image, controls, point=None):
        started.set()
        release.wait(30)
        return original(image, controls, point)

    monkeypatch.setattr(handlers, "page_view", held)
    request = _request("session-switch")
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(page_view, picture_path, 64, 0, 0, "psca", False, None, request)
        assert started.wait(10)
        switched = switch(slot.default, request)  # the same model: the switch still resets the page
        release.set()
        assert switched[0] == "banner"
        assert _skipped(pending.result(timeout=30))


def test_a_finished_answer_s_stats_are_not_shown_over_a_render_newer_than_its_question():
    """The chat's answer writes the section's stats too: asked at N = 64, it finishes after the
    visitor moved N to 8 and that render was shown, and would put N = 64's stats back. Its
    stats are left out then (the answer and its info are shown); a question newer than every
    render shows its stats. Dropping the ``fresh`` check in ChatQueue.answer fails this."""
    from demo.chat import ChatQueue
    from demo.controls import Controls
    from tests.demo.test_app_chat_queue import FakeModel

    tickets = Tickets()
    key = ("s", "image")
    chats = ChatQueue(FakeModel())
    chats.open("s")
    asked = []

    def fresh(order):
        asked.append(order)
        return tickets.show(key, order)

    question = tickets.take()
    chats.send("s", "first", "img", Controls(), order=question)
    assert tickets.show(key, tickets.take())  # the render of the new N, shown while it is answered
    *_, (history, info, stats) = list(chats.answer("s", fresh=fresh))
    assert asked == [question] and stats is None and info == "info"
    assert history[-1]["content"] == "answer to first"
    later = tickets.take()  # a question after that render: its stats are shown
    chats.send("s", "second", "img", Controls(), order=later)
    *_, (_, _, stats) = list(chats.answer("s", fresh=fresh))
    assert stats == {"visual_tokens": 64} and asked == [question, later]
    # A retry is a new question: it takes its place when it is asked again.
    assert tickets.show(key, tickets.take())
    chats.retry("s", "img", Controls(), order=tickets.take())
    *_, (_, _, stats) = list(chats.answer("s", fresh=fresh))
    assert stats == {"visual_tokens": 64}


def test_the_image_chat_s_answer_leaves_the_stats_to_a_newer_render(tiny_vlm, picture_path):
    """Through the page's own chat events on the tiny model: a question, then a render of the
    image view shown while it waits; the answer is shown, its stats are not (one skip each
    for the stats JSON and table). The next question's stats are shown."""
    from demo.controls import Controls
    from demo.events import PageEvents
    from demo.models import ModelSlot

    events = PageEvents(ModelSlot.starting_with(tiny_vlm, "banner"))
    assert events.image_chat.tickets is events.tickets is events.clip_chat.tickets
    assert (events.image_chat.view, events.clip_chat.view) == ("image", "clip")
    chat, request = events.image_chat, _request("session-chat")
    events.open_chat(request)
    chat.send_message("What is this?", picture_path, Controls.read(64, 0, 0, "psca", False), request)
    assert events.tickets.show(("session-chat", "image"), events.tickets.take())  # the render of a new N
    *_, last = list(chat.answer(request))
    history, info, stats, table, _ = last
    assert history[-1]["role"] == "assistant" and history[-1]["content"]
    assert _skipped(stats) and _skipped(table)
    chat.send_message("And now?", picture_path, Controls.read(8, 0, 0, "psca", False), request)
    *_, last = list(chat.answer(request))
    assert last[2]["budget"] == 8 and "8" in last[3]
    events.close_chat(request)
