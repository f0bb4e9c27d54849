"""Chat sessions against made-up ids and floods (demo/chat.py, no server): sessions exist
only once the page opened them, belong to the address that opened them, are never pushed
out while active, and each may ask a bounded number of questions."""

from __future__ import annotations

import re

import pytest

import demo.chat as chat_module
from demo.chat import FULL, NO_SESSION, ChatQueue
from demo.controls import Controls
from demo.limits import MAX_PENDING, QUESTION_WINDOW_S, QUESTIONS_PER_WINDOW, SESSION_IDLE_S, SESSIONS_PER_CLIENT

CONTROLS = Controls()  # the page's first settings


def answers(history, message, image, controls, stop):
    yield f"answer to {message}", ("info", {})


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_made_up_session_reaches_nothing_and_creates_nothing():
    chats = ChatQueue(answers)
    chats.open("real", "198.51.100.1")
    chats.send("real", "mine", "img", CONTROLS, "198.51.100.1")
    for made_up in [f"fake{n}" for n in range(40)]:
        with pytest.raises(ValueError, match=re.escape(NO_SESSION)):
            chats.send(made_up, "flood", "img", CONTROLS, "203.0.113.7")
        with pytest.raises(ValueError, match=re.escape(NO_SESSION)):
            list(chats.answer(made_up, "203.0.113.7"))
    assert chats.open_sessions == 1


def test_another_address_cannot_use_or_close_a_session():
    chats = ChatQueue(answers)
    chats.open("alice", "198.51.100.1")
    chats.send("alice", "private question", "img", CONTROLS, "198.51.100.1")
    list(chats.answer("alice", "198.51.100.1"))
    mallory = "203.0.113.7"
    for attempt in (
        lambda: chats.history("alice", mallory), lambda: chats.send("alice", "x", "img", CONTROLS, mallory),
        lambda: chats.undo("alice", mallory), lambda: chats.reset("alice", mallory), lambda: chats.stop("alice", mallory),
        lambda: chats.retry("alice", "img", CONTROLS, mallory), lambda: chats.open("alice", mallory),
    ):
        with pytest.raises(ValueError, match=re.escape(NO_SESSION)):
            attempt()
    chats.forget("alice", mallory)  # an unload from another address closes nothing
    assert [turn["content"] for turn in chats.history("alice", "198.51.100.1")] == ["private question", "answer to private question"]


def test_a_client_over_its_session_count_closes_its_own_oldest_session_only():
    chats = ChatQueue(answers)
    chats.open("bob", "198.51.100.2")
    for n in range(SESSIONS_PER_CLIENT + 5):
        chats.open(f"mallory{n}", "203.0.113.7")
    assert chats.open_sessions == SESSIONS_PER_CLIENT + 1
    chats.history("bob", "198.51.100.2")  # still open
    with pytest.raises(ValueError, match=re.escape(NO_SESSION)):
        chats.history("mallory0", "203.0.113.7")
    chats.history(f"mallory{SESSIONS_PER_CLIENT + 4}", "203.0.113.7")


def test_new_sessions_never_push_out_active_ones(monkeypatch):
    monkeypatch.setattr(chat_module, "MAX_SESSIONS", 3)
    clock = Clock()
    chats = ChatQueue(answers, clock=clock)
    for n in range(3):
        chats.open(f"s{n}", f"198.51.100.{n}")
    chats.send("s0", "waiting", "img", CONTROLS, "198.51.100.0")  # s0 has a question waiting
    with pytest.raises(ValueError, match=re.escape(FULL)):
        chats.open("newcomer", "192.0.2.1")
    clock.now += SESSION_IDLE_S + 1  # s0, s1 and s2 idle since; s0 still has its question waiting
    chats.open("newcomer", "192.0.2.1")
    chats.history("s0", "198.51.100.0")  # never pushed out while it has work
    with pytest.raises(ValueError, match=re.escape(NO_SESSION)):
        chats.history("s1", "198.51.100.1")  # the least recent idle one made room


def test_a_flood_of_questions_from_one_session_is_limited():
    clock = Clock()
    chats = ChatQueue(answers, clock=clock)
    chats.open("s", "198.51.100.1")
    for n in range(MAX_PENDING):
        chats.send("s", f"q{n}", "img", CONTROLS, "198.51.100.1")
    with pytest.raises(ValueError, match=f"{MAX_PENDING} questions are already waiting"):
        chats.send("s", "one too many", "img", CONTROLS, "198.51.100.1")
    list(chats.answer("s", "198.51.100.1"))
    sent = MAX_PENDING
    while sent < QUESTIONS_PER_WINDOW:
        chats.send("s", f"q{sent}", "img", CONTROLS, "198.51.100.1")
        list(chats.answer("s", "198.51.100.1"))
        sent += 1
    with pytest.raises(ValueError, match=f"{QUESTIONS_PER_WINDOW} questions in 10 minutes is the most one chat may ask"):
        chats.send("s", "over the rate", "img", CONTROLS, "198.51.100.1")
    clock.now += QUESTION_WINDOW_S + 1
    chats.send("s", "later", "img", CONTROLS, "198.51.100.1")


def test_a_closed_session_stops_its_worker_and_drops_its_questions():
    started = []

    def slow(history, message, image, controls, stop):
        started.append(message)
        yield "partial", None
        yield "done", ("info", {})

    chats = ChatQueue(slow)
    chats.open("s", "198.51.100.1")
    chats.send("s", "first", "img", CONTROLS, "198.51.100.1")
    chats.send("s", "second", "img", CONTROLS, "198.51.100.1")
    worker = chats.answer("s", "198.51.100.1")
    next(worker)
    chats.forget("s", "198.51.100.1")
    list(worker)
    assert started == ["first"]  # the waiting question was never asked
