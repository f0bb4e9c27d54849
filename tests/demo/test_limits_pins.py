"""The demo's limits at their boundaries (no server): a client's share of the model queue,
a conversation's turns, which sessions count as idle, the question-rate window, and the
model-switch limit (per client, real switches only).

Each test names the one-line bug it was written against; each was run with that bug in
place and failed.
"""

from __future__ import annotations

import re
from collections import deque
from types import SimpleNamespace

from collections import Counter

import pytest

import demo.chat as chat_module
from demo.admission import AdmissionPolicy
from demo.chat import FULL, NO_SESSION, ChatQueue
from demo.limits import CLIENT_SHARE, MODEL_SWITCHES, QUESTION_WINDOW_S, QUESTIONS_PER_WINDOW, SESSION_IDLE_S
from demo.models import ModelSlot
from tests.demo.test_hostile_chat import CONTROLS, Clock, answers

CLIENT = "198.51.100.1"


# --- the model queue's share per client (demo/admission.py) -------------------------------


def test_a_client_gets_exactly_its_share_of_the_queue_and_not_one_more():
    """Bug caught: ``mine > self.share`` (a client getting its share + 1)."""
    policy = AdmissionPolicy()
    others = {"192.0.2.9": CLIENT_SHARE - 1}
    assert policy.refusal(CLIENT, Counter({CLIENT: CLIENT_SHARE, **others})) is not None
    assert policy.refusal(CLIENT, Counter({CLIENT: CLIENT_SHARE - 1, **others})) is None
    assert policy.refusal("192.0.2.10", Counter({CLIENT: CLIENT_SHARE, **others})) is None  # nobody else is refused on its account


# --- the chat (demo/chat.py) -------------------------------------------------------------


def test_a_conversation_stops_at_its_turn_limit_exactly(monkeypatch):
    """Bug caught: ``len(turns) > MAX_TURNS`` in send (a conversation growing past its
    limit). Five messages at most: two answered questions (4) then one more (5), no sixth."""
    monkeypatch.setattr(chat_module, "MAX_TURNS", 5)
    chats = ChatQueue(answers)
    chats.open("s", CLIENT)
    for n in range(2):
        chats.send("s", f"q{n}", "img", CONTROLS, CLIENT)
        list(chats.answer("s", CLIENT))
    assert chats.refusal("s", "q2", "img", CONTROLS, CLIENT) == ""
    assert len(chats.send("s", "q2", "img", CONTROLS, CLIENT)) == 5
    message = "this conversation is long enough: clear the chat to start a new one"
    assert chats.refusal("s", "q3", "img", CONTROLS, CLIENT) == message
    with pytest.raises(ValueError, match=message):
        chats.send("s", "q3", "img", CONTROLS, CLIENT)


def test_a_session_with_a_question_waiting_is_not_idle_even_when_it_is_the_oldest(monkeypatch):
    """Bug caught: ``_idle`` without ``not conversation.pending`` (a session whose question
    waits counted as idle and pushed out). The waiting session is the least recently used, so
    it would be the first to go."""
    monkeypatch.setattr(chat_module, "MAX_SESSIONS", 3)
    clock = Clock()
    chats = ChatQueue(answers, clock=clock)
    for n in range(3):
        chats.open(f"s{n}", f"198.51.100.{n}")
    chats.send("s0", "waiting", "img", CONTROLS, "198.51.100.0")
    chats.history("s1", "198.51.100.1")
    chats.history("s2", "198.51.100.2")  # s0 is now the least recent
    clock.now += SESSION_IDLE_S + 1
    chats.open("newcomer", "192.0.2.1")
    chats.history("s0", "198.51.100.0")  # kept: its question still waits
    with pytest.raises(ValueError, match=re.escape(NO_SESSION)):
        chats.history("s1", "198.51.100.1")


def test_a_session_is_idle_only_after_its_time(monkeypatch):
    """Bug caught: ``>=`` for ``>`` in ``_idle`` (a session exactly SESSION_IDLE_S old pushed
    out); one second later it makes room."""
    monkeypatch.setattr(chat_module, "MAX_SESSIONS", 2)
    clock = Clock()
    chats = ChatQueue(answers, clock=clock)
    for n in range(2):
        chats.open(f"s{n}", f"198.51.100.{n}")
    clock.now += SESSION_IDLE_S
    with pytest.raises(ValueError, match=re.escape(FULL)):
        chats.open("newcomer", "192.0.2.1")
    clock.now += 1
    chats.open("newcomer", "192.0.2.1")


def test_the_refusal_counts_only_the_questions_inside_the_rate_window():
    """Bug caught: ``refusal()`` counting every question sent (not only those of the last
    QUESTION_WINDOW_S): after the window the page would show a refusal while send() takes
    the question."""
    clock = Clock()
    chats = ChatQueue(answers, clock=clock)
    chats.open("s", CLIENT)
    for n in range(QUESTIONS_PER_WINDOW):
        chats.send("s", f"q{n}", "img", CONTROLS, CLIENT)
        list(chats.answer("s", CLIENT))
    assert "is the most one chat may ask" in chats.refusal("s", "more", "img", CONTROLS, CLIENT)
    clock.now += QUESTION_WINDOW_S + 1
    assert chats.refusal("s", "later", "img", CONTROLS, CLIENT) == ""
    chats.send("s", "later", "img", CONTROLS, CLIENT)


# --- the model picker's switch limit (demo/models.py) ----------------------------------------


def _slot(clock):
    return ModelSlot(SimpleNamespace(name="a"), ["a", "b", "c"], load=lambda name: SimpleNamespace(name=name), free=lambda: None, clock=clock)


def test_re_selecting_ones_own_model_is_not_a_switch():
    """Bug caught: every choose() counted as a switch (``if name != previous`` dropped):
    a page re-sending its current choice would lock its visitor out."""
    clock = Clock()
    slot = _slot(clock)
    slot.choose("fresh", CLIENT, "a")  # the start-up model, never chosen before: no switch
    slot.choose("session", CLIENT, "b")
    for _ in range(2 * MODEL_SWITCHES):
        slot.choose("session", CLIENT, "b")
    slot.choose("session", CLIENT, "c")  # still allowed: two switches so far
    assert list(slot._switches[CLIENT]) == [clock.now, clock.now]


def test_the_switch_limit_is_per_client_not_global():
    """Bug caught: the switch count kept under one key for everybody (one visitor's switches
    block everyone). Another client's *real* switch (to a model other than the default) goes
    through while the first is held back."""
    clock = Clock()
    slot = _slot(clock)
    for turn in range(MODEL_SWITCHES):
        slot.choose("session", CLIENT, "bc"[turn % 2])
    with pytest.raises(ValueError, match=f"{MODEL_SWITCHES} model switches a minute"):
        slot.choose("session", CLIENT, "a")
    assert slot.choose("other", "192.0.2.50", "b").name == "b"
    assert slot.choose("other", "192.0.2.50", "c").name == "c"
    assert isinstance(slot._switches["192.0.2.50"], deque) and len(slot._switches["192.0.2.50"]) == 2
