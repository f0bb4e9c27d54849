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

Sessions are opened by the page itself when it loads (``open``, with the browser session
Gradio gives and the client's address) and closed when it unloads (``forget``). A request
naming a session that was not opened, or opened from another address, is refused with one
message and creates nothing: made-up session ids neither make room for themselves nor reach
anybody's conversation. New sessions never push out active ones: when ``MAX_SESSIONS`` are
open, only one idle for ``SESSION_IDLE_S`` makes room, and a client over
``SESSIONS_PER_CLIENT`` closes its own least recent session. Each session may have
``MAX_PENDING`` questions waiting and send ``QUESTIONS_PER_WINDOW`` per ``QUESTION_WINDOW_S``.

Gradio-free: every method takes the session's key, so the rules are unit-tested directly.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from demo.limits import (
    MAX_PENDING, MAX_SESSIONS, MAX_TURNS, QUESTION_WINDOW_S, QUESTIONS_PER_WINDOW, SESSION_IDLE_S,
    SESSIONS_PER_CLIENT,
)

NO_SESSION = "this chat session is not open (the page was closed, or the server restarted): reload the page"
FULL = "the demo has too many open chats right now: try again in a few minutes"
STALE_WORKER_S = 120.0  # a worker silent this long is presumed gone (closed tab): another may take over


@dataclass
class Question:
    turn: dict  # the user message in the conversation (identity places its answer)
    image: object  # the image value at the time it was sent
    controls: object  # the section's Controls (demo/controls.py) at the time it was sent
    order: int = 0  # its place among the page's renders of the same view (demo/ordering.py)


@dataclass
class Conversation:
    turns: list = field(default_factory=list)
    pending: deque = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    worker: int = 0  # id of the worker answering, 0 = none
    beat: float = 0.0  # last sign of life of that worker
    generation: int = 0  # bumped by reset: a worker of an older generation stops
    client: str = ""  # the address that opened the session; only it may use it
    seen: float = 0.0  # last use by its client (monotonic clock)
    sent: deque = field(default_factory=deque)  # when the questions of the last window were sent


class ChatQueue:
    """Conversations of all sessions. ``answer_stream(history, message, image, controls, stop)``
    yields ``(answer so far, None)`` then ``(answer, (info, stats))`` (see
    :meth:`demo.handlers.Handlers.queued_answer`)."""

    def __init__(self, answer_stream, validate=None, check_message=None, clock=time.monotonic):
        self._answer_stream = answer_stream
        self._validate = validate  # (image, controls) -> None or raises ValueError
        self._check_message = check_message  # (message) -> None or raises ValueError
        self._clock = clock
        self._sessions: OrderedDict[str, Conversation] = OrderedDict()
        self._lock = threading.Lock()
        self._next_worker = 0

    # --- sessions ----------------------------------------------------------------------------

    def open(self, session: str, client: str = "") -> list[dict]:
        """Open the session of a page that has just loaded (or find it again); returns its
        history. ValueError when no room can be made without closing an active session."""
        if not isinstance(session, str) or not session:
            raise ValueError(NO_SESSION)
        now = self._clock()
        closed = []
        with self._lock:
            conversation = self._sessions.get(session)
            if conversation is not None and conversation.client != client:
                raise ValueError(NO_SESSION)
            if conversation is None:
                own = [key for key, other in self._sessions.items() if other.client == client]
                if len(own) >= SESSIONS_PER_CLIENT:  # the client's own least recent session makes room
                    closed.append(self._sessions.pop(own[0]))
                elif len(self._sessions) >= MAX_SESSIONS:
                    room = self._room_for(client, len(own), now)
                    if room is None:
                        raise ValueError(FULL)
                    closed.append(self._sessions.pop(room))
                conversation = self._sessions[session] = Conversation(client=client)
            conversation.seen = now
            self._sessions.move_to_end(session)
        for old in closed:
            _close(old)
        with conversation.lock:
            return _copy(conversation.turns)

    def conversation(self, session: str, client: str = "") -> Conversation:
        """The open session's conversation; ValueError if it is not open for this client."""
        with self._lock:
            conversation = self._sessions.get(session) if isinstance(session, str) else None
            if conversation is None or conversation.client != client:
                raise ValueError(NO_SESSION)
            conversation.seen = self._clock()
            self._sessions.move_to_end(session)
            return conversation

    def forget(self, session: str, client: str | None = None) -> None:
        """Close a session (the page unloaded); with ``client``, only that client's session."""
        with self._lock:
            conversation = self._sessions.get(session) if isinstance(session, str) else None
            if conversation is None or (client is not None and conversation.client != client):
                return
            del self._sessions[session]
        if conversation is not None:
            _close(conversation)

    @property
    def open_sessions(self) -> int:
        with self._lock:
            return len(self._sessions)

    def history(self, session: str, client: str = "") -> list[dict]:
        conversation = self.conversation(session, client)
        with conversation.lock:
            return _copy(conversation.turns)

    def busy(self, session: str, client: str = "") -> bool:
        conversation = self.conversation(session, client)
        with conversation.lock:
            return self._working(conversation)

    def _room_for(self, client: str, own: int, now: float) -> str | None:
        """The session to close for a newcomer when all are open (under ``self._lock``): an idle
        one, else the least recent of the address holding most, if it holds more than the
        newcomer's address. So addresses filling the table share it; an ordinary visitor is
        never told "full" unless there are as many addresses as places."""
        idle = next((key for key, other in self._sessions.items() if self._idle(other, now)), None)
        if idle is not None:
            return idle
        held: dict[str, list[str]] = {}
        for key, other in self._sessions.items():  # least recent first
            held.setdefault(other.client, []).append(key)
        heaviest = max(held, key=lambda c: len(held[c]))
        return held[heaviest][0] if len(held[heaviest]) > own + 1 else None

    def _idle(self, conversation: Conversation, now: float) -> bool:
        return now - conversation.seen > SESSION_IDLE_S and not conversation.pending and not self._working(conversation)

    # --- events ----------------------------------------------------------------------------

    def send(self, session: str, message, image, controls, client: str = "", order: int = 0) -> list[dict]:
        """Queue a question; returns the history to show (the question included). ``order``:
        the question's ticket among the renders of its view (see :meth:`answer`)."""
        conversation = self._asked(session, message, image, controls, client)
        now = self._clock()
        with conversation.lock:
            while conversation.sent and now - conversation.sent[0] > QUESTION_WINDOW_S:  # only the window's are kept
                conversation.sent.popleft()
            reason = _full(conversation, now)
            if reason is not None:
                raise ValueError(reason)
            conversation.sent.append(now)
            turn = {"role": "user", "content": message}
            conversation.turns.append(turn)
            conversation.pending.append(Question(turn, image, controls, order))
            return _copy(conversation.turns)

    def refusal(self, session: str, message, image, controls, client: str = "") -> str:
        """Why :meth:`send` would refuse this question now ("" if it would take it): the same
        checks, nothing queued."""
        try:
            conversation = self._asked(session, message, image, controls, client)
        except (ValueError, TypeError) as error:
            return str(error)
        now = self._clock()
        with conversation.lock:
            return _full(conversation, now) or ""

    def _asked(self, session: str, message, image, controls, client: str) -> Conversation:
        """A question's checks before its conversation's: the message, the controls and the
        file, then the session; returns the session's conversation."""
        if not isinstance(message, str) or not message.strip():
            raise ValueError("the message is empty: type a question about the image")
        if self._check_message is not None:
            self._check_message(message)
        if self._validate is not None:
            self._validate(image, controls)
        return self.conversation(session, client)

    def answer(self, session: str, client: str = "", answer_stream=None, fresh=None):
        """Answer this session's queued questions in order. Yields ``(history, info, stats)``:
        ``info`` and ``stats`` None while streaming; ``info`` "" and ``stats`` None when an answer
        failed (the reason is in the history) or the conversation was reset. Returns at once when another worker is
        answering for this session. ``answer_stream`` replaces the queue's own for this call (the
        session's model). ``fresh(order)``, when given, says whether a finished answer's stats
        may still be shown: not when the page has shown a render newer than the question
        (the controls moved while it was answered); then ``stats`` is None."""
        answer_stream = answer_stream or self._answer_stream
        conversation = self.conversation(session, client)
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
                    for text, finished in answer_stream(context, question.turn["content"], question.image, question.controls, conversation.stop):
                        with conversation.lock:
                            if conversation.generation != generation:
                                conversation.stop.set()
                                # Reset (new image, cleared chat): the page's last word is the new
                                # conversation and an empty status, never this answer's "generating".
                                history = _copy(conversation.turns)
                                ended = True
                            else:
                                ended = False
                        if ended:
                            yield history, "", None
                            return
                        with conversation.lock:
                            stopped = finished is not None and conversation.stop.is_set()
                            reply["content"] = text + (" ⏹ (stopped)" if stopped else "")
                            conversation.beat = time.monotonic()
                            history = _copy(conversation.turns)
                        if finished is not None and fresh is not None and finished[1] is not None and not fresh(question.order):
                            finished = (finished[0], None)
                        yield (history, *finished) if finished is not None else (history, None, None)
                except (ValueError, TypeError) as error:  # e.g. a file that cannot be decoded
                    with conversation.lock:
                        reply["content"] = f"⚠️ Cannot answer: {error}"
                        reply["metadata"] = {"title": "error"}
                        history = _copy(conversation.turns)
                    yield history, "", None  # the reason is in the chat; the status is cleared
        finally:
            with conversation.lock:
                if conversation.worker == me:
                    conversation.worker = 0

    def stop(self, session: str, client: str = "") -> bool:
        """End the answer being written; True if there was one."""
        conversation = self.conversation(session, client)
        with conversation.lock:
            working = self._working(conversation)
            if working:
                conversation.stop.set()
            return working

    def retry(self, session: str, image, controls, client: str = "", order: int = 0) -> list[dict]:
        """Ask the last question again, with the current image and controls."""
        if self._validate is not None:
            self._validate(image, controls)
        conversation = self.conversation(session, client)
        with conversation.lock:
            self._idle_or_refuse(conversation, "retry")
            last = _last_user(conversation.turns)
            if last is None:
                raise ValueError("there is no question to retry yet")
            previous = conversation.turns[last]
            del conversation.turns[last + 1:]
            conversation.pending.append(Question(previous, image, controls, order))
            return _copy(conversation.turns)

    def undo(self, session: str, client: str = "") -> tuple[list[dict], str]:
        """Remove the last question and its answer; returns the history and the question's
        text (for the message box)."""
        conversation = self.conversation(session, client)
        with conversation.lock:
            self._idle_or_refuse(conversation, "undo")
            last = _last_user(conversation.turns)
            if last is None:
                return _copy(conversation.turns), ""
            text = conversation.turns[last]["content"]
            del conversation.turns[last:]
            return _copy(conversation.turns), text

    def reset(self, session: str, client: str = "") -> list[dict]:
        """A new conversation: the answer being written stops, queued questions are dropped."""
        conversation = self.conversation(session, client)
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


def _full(conversation: Conversation, now: float) -> str | None:
    """Why the conversation takes no more questions now (its lock held), None when it does."""
    if len(conversation.pending) >= MAX_PENDING:
        return f"{MAX_PENDING} questions are already waiting: let them be answered first"
    if len(conversation.turns) >= MAX_TURNS:
        return "this conversation is long enough: clear the chat to start a new one"
    recent = sum(1 for sent in conversation.sent if now - sent <= QUESTION_WINDOW_S)
    if recent >= QUESTIONS_PER_WINDOW:
        return f"{QUESTIONS_PER_WINDOW} questions in {QUESTION_WINDOW_S / 60:.0f} minutes is the most one chat may ask: wait a few minutes"
    return None


def _close(conversation: Conversation) -> None:
    """A closed session's worker stops and its waiting questions are dropped."""
    with conversation.lock:
        conversation.generation += 1
        conversation.pending.clear()
        conversation.stop.set()


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
