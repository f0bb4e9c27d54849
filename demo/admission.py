"""One admission policy in front of every door into the app's work.

Gradio serves one app through many routes: the page's queue (``/queue/join``), the API's
(``/call/<api>``, ``/call/v2/<api>``), events run at once outside the queue (``/run/<api>``),
uploads, streams, and features this page never uses. :class:`Admission` is an ASGI
middleware in front of all of them:

- Every route is a :class:`Door` of :data:`DOORS`; a request matching none (a route this page
  does not need, or one a newer Gradio adds) gets 404. ``tests/app/test_admission_doors.py``
  walks the app's routes and fails on any that is neither a door nor listed as closed.
- Work doors (the queue's three doors, and ``/run`` for the page's events outside the queue)
  are admitted by one :class:`AdmissionPolicy`: a client's share (``CLIENT_SHARE`` requests
  waiting or running, whichever door they came through), the app-wide bound (past
  ``QUEUE_SIZE`` each client is held to its fair part of it, past ``QUEUE_HARD_SIZE`` nobody is
  admitted), and, for ``/run``, ``DIRECT_LIMIT`` at once app-wide. The model events are never
  run through ``/run`` (Gradio's ``api_open`` is off): they always queue, under the model's
  concurrency limit.
- The queue is served round robin between clients (:func:`fair_order`): a client's next
  request waits behind at most one request of each other client with work, never behind
  a flooder's whole share.
- Every request body is capped (``BODY_BYTES``; uploads ``MAX_UPLOAD_BYTES`` per file, two at
  once per client and ``UPLOAD_BYTES_PER_CLIENT`` per window).
- Gradio keeps state for every browser session id it is sent (:class:`SessionOwners`): a
  session belongs to the address that first used it, another address naming it is refused,
  and an address holds at most ``STATE_SESSIONS_PER_CLIENT`` of them (its oldest is dropped).

A client is its address as the server sees it (``request.client.host``). Behind a reverse
proxy every visitor has the proxy's address unless the proxy is trusted to say who the
visitor is: uvicorn honours ``X-Forwarded-For`` from the addresses in
``$FORWARDED_ALLOW_IPS`` (loopback by default). See docs/security.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass

from demo.limits import (
    BODY_BYTES, BUSY_MESSAGE, CLIENT_RECORDS, CLIENT_SHARE, CROWDED_MESSAGE, DIRECT_LIMIT, FULL_MESSAGE, MAX_UPLOAD_BYTES,
    QUEUE_HARD_SIZE, QUEUE_SIZE, STATE_SESSIONS, STATE_SESSIONS_PER_CLIENT, UPLOAD_BYTES_APP, UPLOAD_BYTES_PER_CLIENT,
    UPLOAD_WINDOW_S, UPLOADS_AT_ONCE,
)

log = logging.getLogger("prunesid.demo")

# What a door lets in. QUEUE and DIRECT start the app's work and are admitted by the policy.
QUEUE, DIRECT, UPLOAD, READ, CONTROL = "queue", "direct", "upload", "read", "control"
MULTIPART_SLACK = 64 * 1024  # a multipart body's boundaries and headers around the file
SESSION_TAKEN = "this session belongs to another connection: reload the page"
SWEEP_EVERY = 64  # session claims between two sweeps of Gradio's state for sessions nobody owns


@dataclass(frozen=True)
class Door:
    """A route the page (or an API client) needs: method, Gradio's path template, kind."""

    method: str
    route: str
    kind: str

    @property
    def pattern(self) -> re.Pattern:
        return _compiled(self.route)


def _compiled(route: str) -> re.Pattern:
    parts = re.split(r"(\{[^}]+\})", route)
    regex = "".join(
        (".*" if part.endswith(":path}") else "[^/]+") if part.startswith("{") else re.escape(part) for part in parts
    )
    return re.compile(f"^{regex}$")


_API = "/gradio_api"
DOORS: tuple[Door, ...] = (
    # The page and its files.
    *(Door(method, route, READ) for method in ("GET", "HEAD") for route in ("/", "/config", "/config/")),
    *(Door("GET", route, READ) for route in (
        "/assets/{path:path}", "/static/{path:path}", "/svelte/{path:path}", "/favicon.ico", "/theme.css", "/robots.txt",
        "/manifest.json", "/pwa_icon", "/pwa_icon/{size}",
        f"{_API}/theme.css", f"{_API}/info", f"{_API}/info/", f"{_API}/openapi.json", f"{_API}/app_id", f"{_API}/app_id/",
        f"{_API}/user", f"{_API}/user/", f"{_API}/login_check", f"{_API}/login_check/", f"{_API}/startup-events",
        f"{_API}/heartbeat/{{session_hash}}", f"{_API}/queue/data", f"{_API}/queue/status", f"{_API}/upload_progress",
        f"{_API}/call/{{api_name}}/{{event_id}}", f"{_API}/call/v2/{{api_name}}/{{event_id}}",
    )),
    *(Door(method, f"{_API}/file={{path_or_url:path}}", READ) for method in ("GET", "HEAD")),
    # The app's work: the queue's doors, and the page's events outside the queue.
    *(Door("POST", route, QUEUE) for route in (
        f"{_API}/queue/join", f"{_API}/call/{{api_name}}", f"{_API}/call/{{api_name}}/",
        f"{_API}/call/v2/{{api_name}}", f"{_API}/call/v2/{{api_name}}/",
    )),
    *(Door("POST", route, DIRECT) for route in (f"{_API}/run/{{api_name}}", f"{_API}/run/{{api_name}}/")),
    Door("POST", f"{_API}/upload", UPLOAD),
    *(Door("POST", route, CONTROL) for route in (f"{_API}/cancel", f"{_API}/reset", f"{_API}/reset/")),
)
# Gradio's routes this page does not need: answered 404 (a request to a route in neither list
# is answered 404 too; the route test asks for every route to be in one of them).
CLOSED: tuple[tuple[str, str], ...] = (
    ("POST", "/login"), ("POST", "/login/"), ("GET", "/logout"),  # no login on this page
    ("GET", "/openapi.json"), ("HEAD", "/openapi.json"),  # FastAPI's schema of Gradio's routes (the API's is /gradio_api/info)
    ("GET", "/monitoring"), ("GET", "/monitoring/summary"), ("GET", "/monitoring/{key}"),  # queue analytics
    ("GET", "/gradio_api/deep_link"),  # another session's component values, by its id
    ("GET", "/gradio_api/token"), ("GET", "/gradio_api/token/"),  # the login token
    ("GET", "/gradio_api/dev/reload"),  # development reload
    ("GET", "/gradio_api/runs"), ("GET", "/gradio_api/runs/"), ("POST", "/gradio_api/run-history/connect"),
    ("GET", "/gradio_api/run-history/buckets"), ("GET", "/gradio_api/run-history/records"),
    ("GET", "/gradio_api/run-history/records/{endpoint}/{record_id}/assets/{asset_id}"),
    ("GET", "/gradio_api/custom_component/{id}/{environment}/{type}/{file_name}"),  # no custom components
    ("GET", "/gradio_api/proxy={url_path:path}"), ("HEAD", "/gradio_api/proxy={url_path:path}"),  # Spaces' proxy
    ("GET", "/gradio_api/file/{path:path}"),  # the deprecated file route (file= serves the page)
    ("POST", "/gradio_api/stream/{event_id}"), ("POST", "/gradio_api/stream/{event_id}/close"),  # streamed inputs
    ("GET", "/gradio_api/stream/{session_hash}/{run}/{component_id}/playlist.m3u8"),  # streamed outputs
    ("GET", "/gradio_api/stream/{session_hash}/{run}/{component_id}/{segment_id}.{ext}"),
    ("GET", "/gradio_api/stream/{session_hash}/{run}/{component_id}/playlist-file"),
    ("POST", "/gradio_api/api/{api_name}"), ("POST", "/gradio_api/api/{api_name}/"),  # /run under another name
    ("POST", "/gradio_api/component_server"), ("POST", "/gradio_api/component_server/"),  # no component has server functions here
    ("POST", "/gradio_api/process_recording"),  # screen recordings
    ("POST", "/gradio_api/vibe-edit"), ("POST", "/gradio_api/vibe-edit/"), ("POST", "/gradio_api/undo-vibe-edit"),
    ("POST", "/gradio_api/undo-vibe-edit/"), ("GET", "/gradio_api/vibe-code"), ("GET", "/gradio_api/vibe-code/"),
    ("POST", "/gradio_api/vibe-code"), ("POST", "/gradio_api/vibe-code/"), ("POST", "/gradio_api/vibe-starter-queries"),
    ("POST", "/gradio_api/vibe-starter-queries/"),  # the in-browser code editor
    ("GET", "/gradio_api/profiling/traces"), ("GET", "/gradio_api/profiling/summary"), ("POST", "/gradio_api/profiling/clear"),
)


def door_of(method: str, path: str) -> Door | None:
    """The door a request comes through, None for a closed route."""
    for door in DOORS:
        if door.method == method and door.pattern.match(path):
            return door
    return None


def client_of(request) -> str:
    """The client address of a Starlette / Gradio request (or an ASGI scope)."""
    if isinstance(request, dict):
        client = request.get("client")
        return str(client[0]) if client else ""
    client = getattr(request, "client", None)
    return str(getattr(client, "host", "") or "") if client is not None else ""


# --- the policy ----------------------------------------------------------------------------


class AdmissionPolicy:
    """Who may start more work, given every client's work waiting or running.

    A client is refused when it has ``share`` requests already (busy); when the app has
    ``queue_size`` and the client already holds its fair part of them (``queue_size`` divided
    among the clients with work, at least 1); and when the app has ``hard_size`` whoever asks.
    So with any number of clients at their full share an ordinary visitor with nothing
    waiting is admitted, as long as fewer than ``hard_size`` requests are in."""

    def __init__(self, share: int = CLIENT_SHARE, queue_size: int = QUEUE_SIZE, hard_size: int = QUEUE_HARD_SIZE):
        if not 1 <= share <= queue_size <= hard_size:
            raise ValueError(f"need 1 <= share <= queue_size <= hard_size, got {share}, {queue_size}, {hard_size}")
        self.share, self.queue_size, self.hard_size = share, queue_size, hard_size

    def refusal(self, client: str, work: Counter) -> str | None:
        """Why ``client`` may not start one more request now (None: it may)."""
        mine, total = work.get(client, 0), sum(work.values())
        if mine >= self.share:
            return BUSY_MESSAGE.format(count=mine, share=self.share)
        if total >= self.hard_size:
            return FULL_MESSAGE
        if total >= self.queue_size:
            active = len([c for c, n in work.items() if n > 0 and c != client]) + 1
            fair = max(1, self.queue_size // active)
            if mine >= fair:
                return CROWDED_MESSAGE.format(count=mine, share=fair)
        return None


def fair_order(events: list, client_of_event, running: Counter) -> list:
    """The waiting events in round-robin order between clients: each client's k-th waiting
    event (counting its running ones first) goes after every client's (k-1)-th; ties keep
    their arrival order. So a newcomer waits behind one request per active client at most."""
    seen: Counter = Counter()
    keyed = []
    for position, event in enumerate(events):
        client = client_of_event(event)
        keyed.append((running.get(client, 0) + seen[client], position, event))
        seen[client] += 1
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in keyed]


class SessionOwners:
    """Which address each Gradio session id belongs to, bounded per address and in all.

    ``claim`` returns the ids to drop (their state is deleted from Gradio's holder): the
    address's oldest past ``per_client``, and past ``total`` the oldest of the address holding
    most. False when the id belongs to another address."""

    def __init__(self, per_client: int = STATE_SESSIONS_PER_CLIENT, total: int = STATE_SESSIONS):
        self.per_client, self.total = per_client, total
        self.owner: dict[str, str] = {}
        self.by_client: dict[str, OrderedDict] = {}

    def claim(self, session: str, client: str) -> tuple[bool, list[str]]:
        owner = self.owner.get(session)
        if owner is not None and owner != client:
            return False, []
        mine = self.by_client.setdefault(client, OrderedDict())
        mine[session] = True
        mine.move_to_end(session)
        self.owner[session] = client
        dropped = []
        while len(mine) > self.per_client:
            dropped.append(self._drop(client))
        while len(self.owner) > self.total:
            heaviest = max(self.by_client, key=lambda c: len(self.by_client[c]))
            dropped.append(self._drop(heaviest))
        return True, dropped

    def forget(self, session: str) -> None:
        client = self.owner.pop(session, None)
        if client is not None:
            self.by_client[client].pop(session, None)
            if not self.by_client[client]:
                del self.by_client[client]

    def _drop(self, client: str) -> str:
        session, _ = self.by_client[client].popitem(last=False)
        self.owner.pop(session, None)
        if not self.by_client[client]:
            del self.by_client[client]
        return session

    def __len__(self) -> int:
        return len(self.owner)


class UploadBudget:
    """Bytes uploaded per client and in all over the last ``window`` seconds, and uploads in
    progress per client. The per-client records are bounded (``records``; the oldest goes)."""

    def __init__(self, per_client: int = UPLOAD_BYTES_PER_CLIENT, total: int = UPLOAD_BYTES_APP, window: float = UPLOAD_WINDOW_S,
                 at_once: int = UPLOADS_AT_ONCE, records: int = CLIENT_RECORDS, clock=time.monotonic):
        self.per_client, self.total, self.window, self.at_once, self.records = per_client, total, window, at_once, records
        self.clock = clock
        self.sent: OrderedDict[str, deque] = OrderedDict()  # client -> (time, bytes) of recent uploads
        self.everyone: deque = deque()
        self.in_progress: Counter = Counter()

    def refusal(self, client: str, size: int) -> str | None:
        now = self.clock()
        recent = self._recent(self.sent.get(client, deque()), now)
        self._recent(self.everyone, now)
        if self.in_progress[client] >= self.at_once:
            return f"you already have {self.in_progress[client]} uploads in progress (at most {self.at_once} at once)"
        if sum(n for _, n in recent) + size > self.per_client:
            return (f"you uploaded {self.per_client // 2**20} MB in the last {self.window / 60:.0f} minutes, the most one "
                    "visitor may: try again later")
        if sum(n for _, n in self.everyone) + size > self.total:
            return "the demo has received too many uploads in the last minutes: try again later"
        return None

    def spend(self, client: str, size: int) -> None:
        now = self.clock()
        self.sent.setdefault(client, deque()).append((now, size))
        self.sent.move_to_end(client)
        self.everyone.append((now, size))
        while len(self.sent) > self.records:
            self.sent.popitem(last=False)

    def _recent(self, entries: deque, now: float) -> deque:
        while entries and now - entries[0][0] > self.window:
            entries.popleft()
        return entries


# --- the middleware ------------------------------------------------------------------------


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Admission:
    """ASGI middleware: every request through a :class:`Door`, work by the policy."""

    def __init__(self, app, blocks, policy: AdmissionPolicy | None = None, direct_limit: int = DIRECT_LIMIT,
                 body_bytes: int = BODY_BYTES, upload_bytes: int = MAX_UPLOAD_BYTES, uploads: UploadBudget | None = None,
                 sessions: SessionOwners | None = None):
        self.app, self.blocks = app, blocks
        self.policy = policy or AdmissionPolicy()
        self.direct_limit = direct_limit
        self.body_bytes, self.upload_bytes = body_bytes, upload_bytes
        self.uploads = uploads or UploadBudget()
        self.sessions = sessions if sessions is not None else SessionOwners()  # an empty one is falsy (__len__)
        self.claims = 0
        self.joining: Counter = Counter()  # queue joins being handled, per client
        self.direct: Counter = Counter()  # events outside the queue waiting or running, per client
        self._direct_slots: asyncio.Semaphore | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # lifespan; websockets are not used by the page
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "") or ""
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        door = door_of(scope.get("method", ""), path)
        try:
            if door is None:
                raise Refused(404, "Not Found")
            if door.kind == UPLOAD:
                await self._upload(scope, receive, send)
                return
            body = await _read_body(scope, receive, self.body_bytes)
            replay = _replaying(body, receive)
            if door.kind == QUEUE:
                await self._join(scope, body, replay, send)
            elif door.kind == DIRECT:
                await self._direct(scope, body, replay, send)
            else:
                await self.app(scope, replay, send)
        except Refused as refused:
            await _reply(send, refused.status, refused.message)

    # --- work ------------------------------------------------------------------------------

    def work(self) -> Counter:
        """Requests waiting or running per client, whichever door they came through."""
        counts = Counter(self.joining) + Counter(self.direct)
        for event in queued_events(self.queue):
            counts[client_of(event.request)] += 1
        return counts

    @property
    def queue(self):
        return getattr(self.blocks, "_queue", None)

    def _admit(self, client: str, door: str) -> None:
        reason = self.policy.refusal(client, self.work())
        if reason is not None:
            log.warning("refused %s from %s: %s", door, client or "?", reason)
            raise Refused(429, reason)

    async def _join(self, scope, body: bytes, receive, send):
        client = client_of(scope)
        self._claim_session(client, body)
        self._admit(client, "a queue join")
        self.joining[client] += 1  # counted from the decision on: no burst slips past it
        try:
            await self.app(scope, receive, send)
        finally:
            _drop_count(self.joining, client)
            self.reorder()

    async def _direct(self, scope, body: bytes, receive, send):
        client = client_of(scope)
        self._claim_session(client, body)
        self._admit(client, "an event outside the queue")
        self.direct[client] += 1
        try:
            if self._direct_slots is None:
                self._direct_slots = asyncio.Semaphore(self.direct_limit)
            async with self._direct_slots:
                await self.app(scope, receive, send)
        finally:
            _drop_count(self.direct, client)

    def reorder(self) -> None:
        """Round robin between clients in every waiting list of the queue (synchronous: the
        queue's own loop cannot pop in between)."""
        queue = self.queue
        if queue is None:
            return
        running = Counter(client_of(event.request) for job in list(queue.active_jobs) if job for event in job)
        for event_queue in list(queue.event_queue_per_concurrency_id.values()):
            if len(event_queue.queue) > 1:
                event_queue.queue[:] = fair_order(list(event_queue.queue), lambda event: client_of(event.request), running)

    # --- sessions --------------------------------------------------------------------------

    def _claim_session(self, client: str, body: bytes) -> None:
        session = _session_of(body)
        if session is None:
            return
        allowed, dropped = self.sessions.claim(session, client)
        if not allowed:
            log.warning("refused a request from %s naming another address's session", client or "?")
            raise Refused(403, SESSION_TAKEN)
        holder = getattr(self.blocks, "state_holder", None)
        if holder is None:
            return
        with holder.lock:
            _forget_states(holder, dropped)
        self.claims += 1
        if self.claims % SWEEP_EVERY == 0:
            self.sweep_states()

    def sweep_states(self) -> None:
        """Drop Gradio's state of sessions nobody owns any more (a queued event of a dropped
        session makes its state again when it runs), except those of events still in the queue."""
        holder = getattr(self.blocks, "state_holder", None)
        if holder is None:
            return
        in_use = {getattr(event, "session_hash", None) for event in queued_events(self.queue)}
        with holder.lock:
            _forget_states(holder, [key for key in holder.session_data if key not in self.sessions.owner and key not in in_use])

    # --- uploads ---------------------------------------------------------------------------

    async def _upload(self, scope, receive, send):
        client = client_of(scope)
        cap = self.upload_bytes + MULTIPART_SLACK
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            raise Refused(413, f"the upload is {declared / 2**20:.1f} MB; the largest accepted is {self.upload_bytes / 2**20:.0f} MB")
        reason = self.uploads.refusal(client, declared or 0)
        if reason is not None:
            log.warning("refused an upload from %s: %s", client or "?", reason)
            raise Refused(429, reason)
        self.uploads.in_progress[client] += 1
        received = 0
        over = False
        responded = False

        async def counted():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message):
            nonlocal responded
            if over and not responded:
                return  # the refusal below answers instead
            responded = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        finally:
            _drop_count(self.uploads.in_progress, client)
            self.uploads.spend(client, received)
        if over and not responded:
            raise Refused(413, f"the upload is over {self.upload_bytes / 2**20:.0f} MB, the largest accepted")


def queued_events(queue):
    """Every event Gradio's queue holds: waiting (per concurrency group) and running."""
    if queue is None:
        return
    for event_queue in list(queue.event_queue_per_concurrency_id.values()):
        yield from list(event_queue.queue)
    for job in list(queue.active_jobs):
        if job:
            yield from job


def _forget_states(holder, sessions: list[str]) -> None:
    """Delete these sessions' state from Gradio's holder (its lock held by the caller)."""
    for session in sessions:
        holder.session_data.pop(session, None)
        holder.time_last_used.pop(session, None)


def _drop_count(counter: Counter, client: str) -> None:
    counter[client] -= 1
    if counter[client] <= 0:
        del counter[client]


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise Refused(400, "bad Content-Length header") from None
    return None


async def _read_body(scope, receive, cap: int) -> bytes:
    """The whole body (small by the cap), or :class:`Refused` 413 past it."""
    declared = _content_length(scope)
    if declared is not None and declared > cap:
        raise Refused(413, f"the request body is {declared} bytes; the largest accepted is {cap} bytes")
    if scope.get("method") in ("GET", "HEAD") and not declared:
        return b""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise Refused(413, f"the request body is over {cap} bytes; the largest accepted is {cap} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then the client's disconnect, when it comes

    return replay


def _session_of(body: bytes) -> str | None:
    if b"session_hash" not in body:
        return None
    try:
        session = json.loads(body).get("session_hash")
    except (ValueError, AttributeError):
        return None
    return session if isinstance(session, str) and session else None


async def _reply(send, status: int, message: str) -> None:
    payload = json.dumps({"detail": message, "error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if status == 429:
        headers.append((b"retry-after", b"5"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
