"""Newest answer wins: a page view never goes back to an older setting.

Model work runs CONCURRENCY_LIMIT events at once (demo/limits.py), so two renders of one
session's view can finish in either order: a re-render after a model switch (started at
N = 64) may finish after the render of the N = 8 the visitor set meanwhile, and would put
64 back. Gradio keeps the order per event, not across events that write the same outputs.

Here each render of a view takes a ticket when it starts (a session's events of one
concurrency group start in the order they were triggered, with the values of that moment)
and shows its answer only if no later ticket's answer has been shown; an older answer
arriving late is skipped (``gr.skip()``). Renders and the events that reset the view (a model
switch, which clears the clicked patch) share a view's tickets.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections import OrderedDict

import gradio as gr

MAX_SESSIONS = 10_000  # views remembered (the least recent is forgotten); each is two integers


class Tickets:
    """Per (session, view): the order renders started in and the newest one shown."""

    def __init__(self, max_sessions: int = MAX_SESSIONS):
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._shown: OrderedDict[tuple, int] = OrderedDict()  # least recently shown first
        self._max = max_sessions

    def take(self) -> int:
        return next(self._counter)

    def show(self, key: tuple, ticket: int) -> bool:
        """Whether the answer of ``ticket`` may be shown; if so it becomes the newest shown."""
        with self._lock:
            if ticket < self._shown.get(key, 0):
                return False
            self._shown[key] = ticket
            self._shown.move_to_end(key)
            while len(self._shown) > self._max:
                self._shown.popitem(last=False)
            return True

    def forget(self, session) -> None:
        with self._lock:
            for key in [key for key in self._shown if key[0] == session]:
                del self._shown[key]


def newest_only(tickets: Tickets, view: str, outputs: int):
    """Wraps a page event whose last argument is the gr.Request: its answer is skipped when a
    later render of ``view`` in the same session has already been shown. Generators are not
    supported (a render returns once)."""

    def wrap(function):
        @functools.wraps(function)
        def rendered(*args, **kwargs):
            request = kwargs.get("request", args[-1] if args else None)
            key = (getattr(request, "session_hash", None), view)
            ticket = tickets.take()
            answer = function(*args, **kwargs)
            if tickets.show(key, ticket):
                return answer
            return gr.skip() if outputs == 1 else tuple(gr.skip() for _ in range(outputs))

        rendered.view = view  # which view's order it keeps (the page's tests read it)
        return rendered

    return wrap
