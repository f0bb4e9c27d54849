"""The page's chat: questions are queued per browser session and answered in order.

The server owns each session's conversation, so nothing the browser shows can overwrite a
question typed meanwhile:

- ``send`` (runs at once, outside the model queue) checks the question, appends it to the
  conversation, clears the box, and queues it;
- ``answer`` (on the model queue) answers queued questions one after the other, streaming;
  if a worker is already answering for this session it returns at once: that worker takes
  the new question when it is done with the current one;
- ``stop`` ends the answer being written (questions already sent are still answered);
- ``retry`` / ``undo`` act on the last question when nothing is being answered;
- ``reset`` (new image, clear button) ends everything and starts a new conversation.

Gradio-free: every method takes the session's key, so the rules are unit-tested directly.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

MAX_SESSIONS = 256  # conversations kept in memory; the least recently used go first
MAX_TURNS = 200  # messages per conversation; sending more asks for a new chat
MAX_PENDING = 8  # questions waiting at once in one session
STALE_WORKER_S = 120.0  # a worker silent this long is presumed gone (closed tab): another may take over


@dataclass
class Question:
    turn: dict  # the user message in the conversation (identity places its answer)
    image: object  # the image value at the time it was sent
    controls: tuple  # (budget, groups, lam, grouping, dynamic) at the time it was sent


@dataclass
class Conversation:
    turns: list = field(default_factory=list)
    pending: deque = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    worker: int = 0  # id of the worker answering, 0 = none
    beat: float = 0.0  # last sign of life of that worker
    generation: int = 0  # bumped by reset: a worker of an older generation stops


class ChatQueue:
    """Conversations of all sessions. ``answer_stream(history, message, image, controls, stop)``
    yields ``(answer so far, None)`` then ``(answer, (info, stats))`` (see
    :meth:`demo.handlers.Handlers.queued_answer`)."""

    def __init__(self, answer_stream, validate=None):
        self._answer_stream = answer_stream
        self._validate = validate  # (image, controls) -> None or raises ValueError
        self._sessions: OrderedDict[str, Conversation] = OrderedDict()
        self._lock = threading.Lock()
        self._next_worker = 0

    def conversation(self, session: str) -> Conversation:
        with self._lock:
            conversation = self._sessions.get(session)
            if conversation is None:
                conversation = self._sessions[session] = Conversation()
            self._sessions.move_to_end(session)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
            return conversation

    def forget(self, session: str) -> None:
        with self._lock:
            conversation = self._sessions.pop(session, None)
        if conversation is not None:
            conversation.stop.set()

    def history(self, session: str) -> list[dict]:
        conversation = self.conversation(session)
        with conversation.lock:
            return _copy(conversation.turns)

    def busy(self, session: str) -> bool:
        conversation = self.conversation(session)
        with conversation.lock:
            return self._working(conversation)

    # --- events ----------------------------------------------------------------------------

    def send(self, session: str, message, image, controls: tuple) -> list[dict]:
        """Queue a question; returns the history to show (the question included)."""
        if not isinstance(message, str) or not message.strip():
            raise ValueError("the message is empty: type a question about the image")
        if self._validate is not None:
            self._validate(image, controls)
        conversation = self.conversation(session)
        with conversation.lock:
            if len(conversation.pending) >= MAX_PENDING:
                raise ValueError(f"{MAX_PENDING} questions are already waiting: let them be answered first")
            if len(conversation.turns) >= MAX_TURNS:
                raise ValueError("this conversation is long enough: clear the chat to start a new one")
            turn = {"role": "user", "content": message}
            conversation.turns.append(turn)
            conversation.pending.append(Question(turn, image, tuple(controls)))
            return _copy(conversation.turns)

    def answer(self, session: str):
        """Answer this session's queued questions in order. Yields ``(history, info, stats)``
        (``info`` / ``stats`` None while streaming). Returns at once when another worker is
        answering for this session."""
        conversation = self.conversation(session)
        with conversation.lock:
            if self._working(conversation) or not conversation.pending:
                return
            with self._lock:
                self._next_worker += 1
                me = self._next_worker
            conversation.worker, conversation.beat = me, time.monotonic()
            generation = conversation.generation
        try:
            while True:
                with conversation.lock:
                    if conversation.worker != me or conversation.generation != generation or not conversation.pending:
                        return
                    question = conversation.pending.popleft()
                    conversation.stop.clear()
                    reply = {"role": "assistant", "content": ""}
                    context = _context(conversation.turns, question.turn)
                    conversation.turns.insert(_index(conversation.turns, question.turn) + 1, reply)
                try:
                    for text, finished in self._answer_stream(context, question.turn["content"], question.image, question.controls, conversation.stop):
                        with conversation.lock:
                            if conversation.generation != generation:
                                conversation.stop.set()
                                return
                            stopped = finished is not None and conversation.stop.is_set()
                            reply["content"] = text + (" ⏹ (stopped)" if stopped else "")
                            conversation.beat = time.monotonic()
                            history = _copy(conversation.turns)
                        yield (history, *finished) if finished is not None else (history, None, None)
                except (ValueError, TypeError) as error:  # e.g. a file that cannot be decoded
                    with conversation.lock:
                        reply["content"] = f"⚠️ Cannot answer: {error}"
                        reply["metadata"] = {"title": "error"}
                        history = _copy(conversation.turns)
                    yield history, None, None
        finally:
            with conversation.lock:
                if conversation.worker == me:
                    conversation.worker = 0

    def stop(self, session: str) -> bool:
        """End the answer being written; True if there was one."""
        conversation = self.conversation(session)
        with conversation.lock:
            working = self._working(conversation)
            if working:
                conversation.stop.set()
            return working

    def retry(self, session: str, image, controls: tuple) -> list[dict]:
        """Ask the last question again, with the current image and controls."""
        if self._validate is not None:
            self._validate(image, controls)
        conversation = self.conversation(session)
        with conversation.lock:
            self._idle_or_refuse(conversation, "retry")
            last = _last_user(conversation.turns)
            if last is None:
                raise ValueError("there is no question to retry yet")
            previous = conversation.turns[last]
            del conversation.turns[last + 1:]
            conversation.pending.append(Question(previous, image, tuple(controls)))
            return _copy(conversation.turns)

    def undo(self, session: str) -> tuple[list[dict], str]:
        """Remove the last question and its answer; returns the history and the question's
        text (for the message box)."""
        conversation = self.conversation(session)
        with conversation.lock:
            self._idle_or_refuse(conversation, "undo")
            last = _last_user(conversation.turns)
            if last is None:
                return _copy(conversation.turns), ""
            text = conversation.turns[last]["content"]
            del conversation.turns[last:]
            return _copy(conversation.turns), text

    def reset(self, session: str) -> list[dict]:
        """A new conversation: the answer being written stops, queued questions are dropped."""
        conversation = self.conversation(session)
        with conversation.lock:
            conversation.generation += 1
            conversation.stop.set()
            conversation.pending.clear()
            conversation.turns.clear()
            conversation.worker = 0
            return []

    # --- helpers --------------------------------------------------------------------------

    def _working(self, conversation: Conversation) -> bool:
        return conversation.worker != 0 and time.monotonic() - conversation.beat < STALE_WORKER_S

    def _idle_or_refuse(self, conversation: Conversation, what: str) -> None:
        if self._working(conversation) or conversation.pending:
            raise ValueError(f"an answer is being written: wait for it (or press Stop) before you {what}")


def _copy(turns: list[dict]) -> list[dict]:
    return copy.deepcopy(turns)


def _index(turns: list[dict], turn: dict) -> int:
    for position, candidate in enumerate(turns):
        if candidate is turn:
            return position
    raise ValueError("the question is no longer in the conversation")


def _last_user(turns: list[dict]) -> int | None:
    for position in range(len(turns) - 1, -1, -1):
        if turns[position]["role"] == "user":
            return position
    return None


def _context(turns: list[dict], question: dict) -> list[dict]:
    """The answered exchanges before ``question`` (errors and unanswered questions left out)."""
    before = turns[: _index(turns, question)]
    context = []
    for position, turn in enumerate(before):
        if turn["role"] != "user":
            continue
        answer = before[position + 1] if position + 1 < len(before) else None
        if answer is None or answer["role"] != "assistant" or answer.get("metadata", {}).get("title") == "error":
            continue
        context.extend([turn, answer])
    return _copy(context)
