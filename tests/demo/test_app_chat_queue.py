"""The page's chat queue (demo/chat.py), without a browser: questions sent during an answer
are answered next, in order; stop, retry, undo, reset; nothing sent is ever lost."""

from __future__ import annotations

import threading

import pytest

from demo.chat import MAX_PENDING, ChatQueue
from demo.controls import Controls

CONTROLS = Controls()  # the page's first settings


class FakeModel:
    """Answers "answer to <question>" in pieces; each piece waits for a go-ahead when
    ``paced`` so a test can act in the middle of an answer."""

    def __init__(self, paced: bool = False):
        self.paced = paced
        self.go = threading.Semaphore(0)
        self.calls: list[tuple[list, str]] = []

    def __call__(self, history, message, image, controls, stop):
        if message == "fail":
            raise ValueError("the image could not be decoded")
        self.calls.append(([turn["content"] for turn in history], message))
        text = ""
        for word in f"answer to {message}".split():
            if self.paced:
                self.go.acquire(timeout=10)
            if stop.is_set():
                break
            text += word + " "
            yield text, None
        yield text.strip(), ("info", {"visual_tokens": 64})


def drain(generator) -> list:
    return list(generator)


def test_a_question_sent_during_an_answer_is_answered_next_in_order():
    model = FakeModel(paced=True)
    chats = ChatQueue(model)
    chats.open("s")
    chats.send("s", "first", "img", CONTROLS)
    worker = chats.answer("s")
    model.go.release()
    history, info, stats = next(worker)  # the first answer is streaming
    assert history[-1] == {"role": "assistant", "content": "answer "} and stats is None
    assert chats.busy("s")
    shown = chats.send("s", "second", "img", CONTROLS)  # typed and sent meanwhile
    assert [turn["content"] for turn in shown] == ["first", "answer ", "second"]
    assert drain(chats.answer("s")) == []  # a second worker leaves it to the first
    for _ in range(20):
        model.go.release()
    updates = drain(worker)
    final = updates[-1][0]
    assert [(turn["role"], turn["content"]) for turn in final] == [
        ("user", "first"), ("assistant", "answer to first"), ("user", "second"), ("assistant", "answer to second"),
    ]
    assert model.calls == [([], "first"), (["first", "answer to first"], "second")]  # each with its own context
    assert not chats.busy("s")


def test_a_question_sent_just_as_the_worker_ends_is_answered_by_the_next_worker():
    model = FakeModel()
    chats = ChatQueue(model)
    chats.open("s")
    chats.send("s", "first", "img", CONTROLS)
    drain(chats.answer("s"))
    chats.send("s", "second", "img", CONTROLS)  # the worker has gone: the next one answers
    drain(chats.answer("s"))
    assert [turn["content"] for turn in chats.history("s")] == ["first", "answer to first", "second", "answer to second"]


def test_stop_ends_the_current_answer_and_the_queue_goes_on():
    model = FakeModel(paced=True)
    chats = ChatQueue(model)
    chats.open("s")
    chats.send("s", "a long question", "img", CONTROLS)
    worker = chats.answer("s")
    model.go.release()
    next(worker)
    chats.send("s", "next one", "img", CONTROLS)
    assert chats.stop("s") is True
    for _ in range(20):
        model.go.release()
    final = drain(worker)[-1][0]
    assert final[1]["content"] == "answer ⏹ (stopped)"
    assert final[3]["content"] == "answer to next one"  # the stop did not cancel what was queued
    assert chats.stop("s") is False  # nothing being written now


def test_retry_asks_the_last_question_again_and_undo_gives_it_back():
    model = FakeModel()
    chats = ChatQueue(model)
    chats.open("s")
    chats.send("s", "first", "img", CONTROLS)
    drain(chats.answer("s"))
    chats.send("s", "second", "img", CONTROLS)
    drain(chats.answer("s"))
    assert [turn["content"] for turn in chats.retry("s", "img", CONTROLS)] == ["first", "answer to first", "second"]
    drain(chats.answer("s"))
    assert len(chats.history("s")) == 4 and model.calls[-1] == (["first", "answer to first"], "second")
    history, text = chats.undo("s")
    assert text == "second" and [turn["content"] for turn in history] == ["first", "answer to first"]


def test_retry_and_undo_wait_while_an_answer_is_written():
    model = FakeModel(paced=True)
    chats = ChatQueue(model)
    chats.open("s")
    chats.send("s", "first", "img", CONTROLS)
    worker = chats.answer("s")
    model.go.release()
    next(worker)
    with pytest.raises(ValueError, match="an answer is being written"):
        chats.retry("s", "img", CONTROLS)
    with pytest.raises(ValueError, match="an answer is being written"):
        chats.undo("s")
    for _ in range(10):
        model.go.release()
    drain(worker)


def test_reset_stops_the_answer_and_drops_the_conversation():
    model = FakeModel(paced=True)
    chats = ChatQueue(model)
    chats.open("s")
    chats.send("s", "first", "img", CONTROLS)
    chats.send("s", "second", "img", CONTROLS)
    worker = chats.answer("s")
    model.go.release()
    next(worker)
    assert chats.reset("s") == []
    for _ in range(10):
        model.go.release()
    drain(worker)
    assert chats.history("s") == [] and not chats.busy("s")
    assert model.calls == [([], "first")]


def test_an_answer_that_fails_shows_why_and_stays_out_of_the_context():
    model = FakeModel()
    chats = ChatQueue(model)
    chats.open("s")
    chats.send("s", "fail", "img", CONTROLS)
    chats.send("s", "then this", "img", CONTROLS)
    final = drain(chats.answer("s"))[-1][0]
    assert final[1]["content"] == "⚠️ Cannot answer: the image could not be decoded" and final[1]["metadata"] == {"title": "error"}
    assert model.calls == [([], "then this")]


def test_bad_questions_are_refused_before_they_are_queued():
    def validate(image, controls):
        if image is None:
            raise ValueError("no image: upload one or pick an example")

    chats = ChatQueue(FakeModel(), validate=validate)
    chats.open("s")
    with pytest.raises(ValueError, match="message is empty"):
        chats.send("s", "   ", "img", CONTROLS)
    with pytest.raises(ValueError, match="no image"):
        chats.send("s", "what is it?", None, CONTROLS)
    assert chats.history("s") == []
    for n in range(MAX_PENDING):
        chats.send("s", f"q{n}", "img", CONTROLS)
    with pytest.raises(ValueError, match="already waiting"):
        chats.send("s", "one too many", "img", CONTROLS)


def test_sessions_do_not_share_a_conversation():
    chats = ChatQueue(FakeModel())
    chats.open("alice", "1.1.1.1")
    chats.open("bob", "2.2.2.2")
    chats.send("alice", "mine", "img", CONTROLS, "1.1.1.1")
    drain(chats.answer("bob", "2.2.2.2"))
    assert chats.history("bob", "2.2.2.2") == [] and len(chats.history("alice", "1.1.1.1")) == 1
