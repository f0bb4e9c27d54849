"""demo/admission.py's ASGI middleware without a server: which door a request takes, what
reaches Gradio, how work is counted per client while it runs, the queue's round robin,
Gradio's session state, and uploads.

Written against the mutants ``make mutation MUTANTS='demo.admission*'`` left alive; each
test names the kind of bug it catches.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import Counter
from types import SimpleNamespace


from demo import admission
from demo.admission import Admission, AdmissionPolicy, SessionOwners, UploadBudget
from demo.limits import BODY_BYTES, BUSY_MESSAGE, DIRECT_LIMIT, MAX_UPLOAD_BYTES

MB = 2**20
CLIENT = "198.51.100.7"


class Gradio:
    """Stands for Gradio: records what it is sent (and the middleware's counts while it
    runs), then answers 200, or waits on ``gate`` first."""

    def __init__(self, middleware_counts=None, gate=None, read_all=False):
        self.scopes, self.bodies, self.seen = [], [], []
        self.middleware, self.gate, self.read_all = None, gate, read_all
        self.running = self.most_running = 0

    async def __call__(self, scope, receive, send):
        self.scopes.append(scope)
        message = await receive()
        body = message.get("body", b"")
        while self.read_all and message["type"] == "http.request" and message.get("more_body"):
            message = await receive()
            body += message.get("body", b"")
        self.bodies.append(body)
        if self.middleware is not None:
            self.seen.append((Counter(self.middleware.joining), Counter(self.middleware.direct),
                              Counter(self.middleware.uploads.in_progress)))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        if self.gate is not None:
            await self.gate.wait()
        self.running -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def _blocks(queue=None, holder=None):
    return SimpleNamespace(_queue=queue, state_holder=holder)


def _scope(method, path, client=CLIENT, headers=(), **extra):
    address = None if client is None else (client, 1234)
    return {"type": "http", "method": method, "path": path, "headers": list(headers), "client": address, **extra}


async def _request(middleware, scope, chunks):
    messages = [{"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1} for n, chunk in enumerate(chunks)]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


def _run(middleware, method, path, body=b"", client=CLIENT, headers=(), chunks=None, **extra):
    """One request through the middleware; returns (status, decoded reply or None)."""
    sent = asyncio.run(_request(middleware, _scope(method, path, client, headers, **extra), chunks or [body]))
    status = sent[0]["status"]
    payload = b"".join(message.get("body", b"") for message in sent[1:])
    return status, json.loads(payload) if payload else None


def _middleware(gradio=None, **options):
    gradio = gradio or Gradio()
    middleware = Admission(gradio, options.pop("blocks", _blocks()), **options)
    gradio.middleware = middleware
    return gradio, middleware


def _session_body(session):
    return json.dumps({"session_hash": session, "data": []}).encode()


# --- defaults and routing ------------------------------------------------------------------


def test_the_middleware_defaults_are_the_limits_module():
    """Catches a default bound replaced (a body cap of another size, no direct limit)."""
    _, middleware = _middleware()
    assert middleware.direct_limit == DIRECT_LIMIT and middleware.body_bytes == BODY_BYTES
    assert middleware.upload_bytes == MAX_UPLOAD_BYTES and middleware.claims == 0
    assert isinstance(middleware.policy, AdmissionPolicy) and middleware.policy.share == AdmissionPolicy().share
    assert isinstance(middleware.uploads, UploadBudget) and isinstance(middleware.sessions, SessionOwners)
    assert middleware.joining == Counter() and middleware.direct == Counter() and middleware.queue is None
    policy, uploads, sessions = AdmissionPolicy(1, 1, 1), UploadBudget(), SessionOwners()
    _, given = _middleware(policy=policy, uploads=uploads, sessions=sessions)
    assert (given.policy, given.uploads, given.sessions) == (policy, uploads, sessions)


def test_a_route_that_is_no_door_is_answered_404_and_never_reaches_gradio():
    gradio, middleware = _middleware()
    assert _run(middleware, "POST", "/gradio_api/api/analyze", b"{}") == (404, {"detail": "Not Found", "error": "Not Found"})
    assert _run(middleware, "GET", "/monitoring")[0] == 404
    assert gradio.scopes == []


def test_a_read_door_gets_gradio_the_request_and_its_body_as_sent():
    """Catches the scope, the replayed body or the reply channel lost on the way to Gradio."""
    gradio, middleware = _middleware()
    assert _run(middleware, "POST", "/gradio_api/cancel", b'{"event_id": "e"}') == (200, {})
    assert gradio.bodies == [b'{"event_id": "e"}'] and gradio.scopes[0]["path"] == "/gradio_api/cancel"


def test_the_root_path_of_a_proxy_is_taken_off_before_the_door_is_found():
    """Catches the root path ignored (every request behind a proxy 404), taken off paths it
    does not start, or its bare form not read as the page ("/")."""
    gradio, middleware = _middleware()
    assert _run(middleware, "GET", "/demo/config", root_path="/demo")[0] == 200
    assert _run(middleware, "GET", "/demo", root_path="/demo")[0] == 200
    assert _run(middleware, "GET", "/config", root_path="/demo")[0] == 200
    assert _run(middleware, "GET", "/demo/config", root_path="")[0] == 404
    assert _run(middleware, "GET", "/demo/config")[0] == 404
    assert len(gradio.scopes) == 3


def test_websockets_are_closed_as_a_policy_violation_and_lifespan_passes():
    """Catches a websocket reaching Gradio (no door admits it), and the app's start-up and
    shutdown (lifespan) stopped at the middleware."""
    gradio, middleware = _middleware()
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "lifespan.startup"}

    asyncio.run(middleware({"type": "websocket", "path": "/gradio_api/queue/join"}, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008}] and gradio.scopes == []

    seen = []

    async def lifespan_app(scope, receive_, send_):
        seen.append((scope, await receive_(), send_))

    middleware.app = lifespan_app
    asyncio.run(middleware({"type": "lifespan"}, receive, send))
    assert seen == [({"type": "lifespan"}, {"type": "lifespan.startup"}, send)]


def test_a_body_past_the_cap_is_refused_before_gradio_on_every_door():
    gradio, middleware = _middleware(body_bytes=10)
    assert _run(middleware, "POST", "/gradio_api/queue/join", b"x" * 11)[0] == 413
    assert _run(middleware, "POST", "/gradio_api/cancel", b"x" * 10)[0] == 200
    assert gradio.bodies == [b"x" * 10]


# --- work: counted while it runs, one share across doors ---------------------------------------


def test_a_join_counts_from_the_decision_until_gradio_is_done():
    """Catches the join counted for the wrong client, not at all (a burst slipping past the
    share), or never uncounted (a client locked out for good)."""
    gradio, middleware = _middleware()
    assert _run(middleware, "POST", "/gradio_api/queue/join", b"{}")[0] == 200
    assert gradio.seen == [(Counter({CLIENT: 1}), Counter(), Counter())]
    assert middleware.joining == Counter() and CLIENT not in middleware.joining
    assert gradio.bodies == [b"{}"]


def test_an_event_outside_the_queue_counts_while_it_runs():
    gradio, middleware = _middleware()
    assert _run(middleware, "POST", "/gradio_api/run/predict", b"{}")[0] == 200
    assert gradio.seen == [(Counter(), Counter({CLIENT: 1}), Counter())]
    assert middleware.direct == Counter() and CLIENT not in middleware.direct
    assert gradio.bodies == [b"{}"]


def test_work_counts_joins_events_outside_the_queue_and_the_queues_events_per_client():
    """Catches a door's count or the queue's events left out of a client's work."""
    event = lambda host: SimpleNamespace(request=SimpleNamespace(client=SimpleNamespace(host=host)))
    queue = SimpleNamespace(event_queue_per_concurrency_id={"model": SimpleNamespace(queue=[event("a"), event("b")])},
                            active_jobs=[[event("a")]])
    _, middleware = _middleware(blocks=_blocks(queue))
    middleware.joining["a"] = 1
    middleware.direct["c"] = 2
    assert middleware.work() == Counter(a=3, b=1, c=2)
    assert middleware.queue is queue


def test_a_refusal_is_429_with_the_policys_reason_and_is_logged(caplog):
    """Catches a refused request let through, answered with another status, or refused
    without a line in the log naming the door and the address."""
    gradio, middleware = _middleware(policy=AdmissionPolicy(1, 1, 1))
    middleware.direct[CLIENT] = 1
    busy = BUSY_MESSAGE.format(count=1, share=1)
    with caplog.at_level(logging.WARNING, logger="prunesid.demo"):
        assert _run(middleware, "POST", "/gradio_api/queue/join", b"{}") == (429, {"detail": busy, "error": busy})
        assert _run(middleware, "POST", "/gradio_api/run/predict", b"{}")[0] == 429
        middleware.direct[""] = 1
        assert _run(middleware, "POST", "/gradio_api/run/predict", b"{}", client=None)[0] == 429
    assert [record.getMessage() for record in caplog.records] == [
        f"refused a queue join from {CLIENT}: {busy}", f"refused an event outside the queue from {CLIENT}: {busy}",
        f"refused an event outside the queue from ?: {busy}"]
    assert gradio.scopes == [] and middleware.joining == Counter() and middleware.direct == Counter({CLIENT: 1, "": 1})


def test_events_outside_the_queue_run_at_most_the_direct_limit_at_once():
    """Catches the direct limit not applied (every /run event at once) or applied wrongly."""
    async def burst(limit, count):
        gate = asyncio.Event()
        gradio, middleware = _middleware(Gradio(gate=gate), direct_limit=limit)
        tasks = [asyncio.ensure_future(_request(middleware, _scope("POST", "/gradio_api/run/predict", f"10.0.0.{n}"), [b"{}"]))
                 for n in range(count)]
        for _ in range(20):
            await asyncio.sleep(0)
        counted = sum(middleware.direct.values())
        gate.set()
        await asyncio.gather(*tasks)
        return gradio.most_running, counted, middleware.direct

    assert asyncio.run(burst(1, 3)) == (1, 3, Counter())  # all three counted as waiting or running
    assert asyncio.run(burst(2, 3)) == (2, 3, Counter())


# --- the queue's round robin -----------------------------------------------------------------


def _event(host, session="s"):
    return SimpleNamespace(request=SimpleNamespace(client=SimpleNamespace(host=host)), session_hash=session, host=host)


def test_a_join_reorders_every_waiting_list_round_robin_in_place():
    """Catches the reorder skipped after a join, a list of two left as it came, a new list
    put in place of Gradio's (its loop holds the old one), and the running events ignored."""
    model = [_event("a"), _event("a"), _event("b")]
    other = [_event("c"), _event("c"), _event("d")]
    queue = SimpleNamespace(event_queue_per_concurrency_id={"model": SimpleNamespace(queue=model),
                                                            "other": SimpleNamespace(queue=other)},
                            active_jobs=[None, [_event("d")]])
    _, middleware = _middleware(blocks=_blocks(queue))
    assert _run(middleware, "POST", "/gradio_api/queue/join", b"{}")[0] == 200
    assert queue.event_queue_per_concurrency_id["model"].queue is model
    assert [event.host for event in model] == ["a", "b", "a"]
    assert [event.host for event in other] == ["c", "c", "d"]  # d has one running already


def test_a_waiting_list_of_two_is_reordered():
    """Catches ``> 2`` for ``> 1``: two waiting events of one client and one of another's
    running would stay first-come-first-served."""
    waiting = [_event("a"), _event("b")]
    queue = SimpleNamespace(event_queue_per_concurrency_id={"model": SimpleNamespace(queue=waiting)},
                            active_jobs=[[_event("a")]])
    _, middleware = _middleware(blocks=_blocks(queue))
    middleware.reorder()
    assert [event.host for event in waiting] == ["b", "a"]
    _middleware()[1].reorder()  # no queue yet: nothing to do


# --- Gradio's session state ----------------------------------------------------------------


class Holder:
    def __init__(self, *sessions):
        self.lock = threading.Lock()
        self.session_data = {session: object() for session in sessions}
        self.time_last_used = {session: 0.0 for session in sessions}


def test_another_addresss_session_is_refused_403_and_logged(caplog):
    gradio, middleware = _middleware()
    assert _run(middleware, "POST", "/gradio_api/run/predict", _session_body("alice"))[0] == 200
    with caplog.at_level(logging.WARNING, logger="prunesid.demo"):
        for path in ("/gradio_api/queue/join", "/gradio_api/run/predict"):
            status, reply = _run(middleware, "POST", path, _session_body("alice"), client="203.0.113.66")
            assert (status, reply["error"]) == (403, admission.SESSION_TAKEN)
        _run(middleware, "POST", "/gradio_api/queue/join", _session_body("alice"), client=None)
    assert [record.getMessage() for record in caplog.records] == [
        "refused a request from 203.0.113.66 naming another address's session"] * 2 + [
        "refused a request from ? naming another address's session"]
    assert len(gradio.scopes) == 1


def test_a_sessions_dropped_by_the_bound_lose_their_gradio_state():
    """Catches the dropped sessions' state kept in Gradio's holder (the bound on sessions
    would bound nothing), and the state of sessions still owned removed."""
    holder = Holder("s0", "s1", "s2", "unrelated")
    _, middleware = _middleware(blocks=_blocks(holder=holder), sessions=SessionOwners(per_client=2, total=100))
    for session in ("s0", "s1", "s2"):
        assert _run(middleware, "POST", "/gradio_api/queue/join", _session_body(session))[0] == 200
    assert set(holder.session_data) == set(holder.time_last_used) == {"s1", "s2", "unrelated"}
    assert middleware.claims == 3


def test_without_a_session_or_a_state_holder_nothing_is_claimed_or_counted():
    _, middleware = _middleware()
    _run(middleware, "POST", "/gradio_api/queue/join", b'{"data": []}')
    assert len(middleware.sessions) == 0 and middleware.claims == 0
    _run(middleware, "POST", "/gradio_api/queue/join", _session_body("s"))
    assert middleware.sessions.owner == {"s": CLIENT} and middleware.claims == 0


def test_the_state_nobody_owns_is_swept_every_sweep_every_claims(monkeypatch):
    """Catches the sweep run on the wrong claim (or never), and a sweep that drops the state of
    an owned session or of an event still in the queue."""
    monkeypatch.setattr(admission, "SWEEP_EVERY", 3)
    holder = Holder("orphan", "queued")
    queue = SimpleNamespace(event_queue_per_concurrency_id={"model": SimpleNamespace(queue=[_event("x", "queued")])},
                            active_jobs=[])
    _, middleware = _middleware(blocks=_blocks(queue, holder))
    for n in range(2):
        _run(middleware, "POST", "/gradio_api/queue/join", _session_body(f"s{n}"))
        holder.session_data[f"s{n}"] = holder.time_last_used[f"s{n}"] = 1
    assert "orphan" in holder.session_data and "orphan" in holder.time_last_used
    _run(middleware, "POST", "/gradio_api/run/predict", _session_body("s2"))
    assert set(holder.session_data) == {"queued", "s0", "s1"} and set(holder.time_last_used) == {"queued", "s0", "s1"}


def test_a_sweep_without_a_state_holder_does_nothing():
    _, middleware = _middleware()
    middleware.sweep_states()


# --- uploads ---------------------------------------------------------------------------------

UPLOAD = "/gradio_api/upload"


def test_an_upload_declared_past_its_cap_is_refused_before_gradio():
    """Catches the multipart slack left out (a file of exactly the limit refused) or
    counted twice, and the refusal's sizes misreported."""
    gradio, middleware = _middleware(upload_bytes=2 * MB)
    cap = 2 * MB + admission.MULTIPART_SLACK
    status, reply = _run(middleware, "POST", UPLOAD, b"x", headers=[(b"content-length", str(cap + 1).encode())])
    assert (status, reply["error"]) == (413, "the upload is 2.1 MB; the largest accepted is 2 MB")
    assert _run(middleware, "POST", UPLOAD, b"x", headers=[(b"content-length", str(cap).encode())])[0] == 200
    assert len(gradio.scopes) == 1


def test_an_upload_is_counted_in_progress_and_its_received_bytes_are_spent():
    """Catches the upload not counted while it runs (more than two at once), the count kept
    after (a client locked out), and the declared length spent instead of what came."""
    gradio, middleware = _middleware(Gradio(read_all=True))
    assert _run(middleware, "POST", UPLOAD, chunks=[b"abc", b"defg"], headers=[(b"content-length", b"3")]) == (200, {})
    assert gradio.bodies == [b"abcdefg"] and gradio.seen == [(Counter(), Counter(), Counter({CLIENT: 1}))]
    assert middleware.uploads.in_progress == Counter() and [size for _, size in middleware.uploads.sent[CLIENT]] == [7]


def test_an_upload_the_budget_refuses_is_429_and_logged(caplog):
    gradio, middleware = _middleware(uploads=UploadBudget(per_client=10, total=100, window=60, at_once=1))
    middleware.uploads.spend(CLIENT, 8)
    with caplog.at_level(logging.WARNING, logger="prunesid.demo"):
        status, reply = _run(middleware, "POST", UPLOAD, b"x", headers=[(b"content-length", b"3")])
        assert _run(middleware, "POST", UPLOAD, b"x", headers=[(b"content-length", b"2")])[0] == 200
        middleware.uploads.in_progress[""] = 1
        assert _run(middleware, "POST", UPLOAD, b"x", client=None)[0] == 429
    assert (status, reply["error"]) == (429, "you uploaded 0 MB in the last 1 minutes, the most one visitor may: try again later")
    assert [record.getMessage() for record in caplog.records] == [
        f"refused an upload from {CLIENT}: {reply['error']}",
        "refused an upload from ?: you already have 1 uploads in progress (at most 1 at once)"]
    assert len(gradio.scopes) == 1


def test_an_upload_streaming_past_its_cap_is_cut_off_and_refused_413():
    """Catches an undeclared (chunked) upload read to its end, the cut made one byte late,
    Gradio's own answer sent after the refusal, and the bytes received not spent."""
    gradio, middleware = _middleware(Gradio(read_all=True), upload_bytes=10)
    cap = 10 + admission.MULTIPART_SLACK
    over = [b"x" * (cap // 2), b"x" * (cap - cap // 2), b"y", b"never read"]
    sent = asyncio.run(_request(middleware, _scope("POST", UPLOAD), over))
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"] == "the upload is over 0 MB, the largest accepted"
    assert gradio.bodies == [b"x" * cap]  # the byte past the cap never reached Gradio
    assert [size for _, size in middleware.uploads.sent[CLIENT]] == [cap + 1]
    exact = [b"x" * (cap // 2), b"x" * (cap - cap // 2)]
    assert asyncio.run(_request(middleware, _scope("POST", UPLOAD, "10.0.0.2"), exact))[0]["status"] == 200


def test_gradios_answer_already_sent_stands_when_the_upload_then_runs_over():
    """Catches a second answer (the 413) sent after Gradio's: the server would fail on it."""
    class AnswersFirst:
        async def __call__(self, scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            while (await receive())["type"] == "http.request":
                pass
            await send({"type": "http.response.body", "body": b"{}"})

    middleware = Admission(AnswersFirst(), _blocks(), upload_bytes=0)
    sent = asyncio.run(_request(middleware, _scope("POST", UPLOAD), [b"x" * admission.MULTIPART_SLACK, b"y", b"z"]))
    assert [message.get("status") for message in sent] == [200, None]


# --- survivors of the first mutation run ---------------------------------------------------------


def test_gradio_gets_the_scope_on_every_work_door_and_upload():
    """Catches Gradio handed no scope on the queue's door, /run or the upload door."""
    gradio, middleware = _middleware()
    for path in ("/gradio_api/queue/join", "/gradio_api/run/predict", UPLOAD):
        assert _run(middleware, "POST", path, b"{}")[0] == 200
    assert [scope["path"] for scope in gradio.scopes] == ["/gradio_api/queue/join", "/gradio_api/run/predict", UPLOAD]


def test_after_the_replayed_body_gradio_hears_the_clients_disconnect():
    """Catches the client's receive lost behind the replay: Gradio listens for the disconnect
    of a streamed answer (and would fail, not hear it)."""
    heard = []

    async def listens(scope, receive, send):
        heard.extend([await receive(), await receive()])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = Admission(listens, _blocks())
    for path in ("/gradio_api/queue/join", "/gradio_api/run/predict", "/gradio_api/cancel"):
        assert _run(middleware, "POST", path, b"{}")[0] == 200
    assert heard == [{"type": "http.request", "body": b"{}", "more_body": False}, {"type": "http.disconnect"}] * 3


def test_concurrent_requests_of_one_client_all_count():
    """Catches ``= 1`` for ``+= 1``: a client's second join, event or upload while the first
    runs not counted, so a burst slips past its share (and the upload bound)."""
    async def two_at_once(path):
        gate = asyncio.Event()
        gradio, middleware = _middleware(Gradio(gate=gate))
        tasks = [asyncio.ensure_future(_request(middleware, _scope("POST", path), [b"{}"])) for _ in range(2)]
        for _ in range(20):
            await asyncio.sleep(0)
        counts = (Counter(middleware.joining), Counter(middleware.direct), Counter(middleware.uploads.in_progress))
        gate.set()
        await asyncio.gather(*tasks)
        return counts

    two = Counter({CLIENT: 2})
    assert asyncio.run(two_at_once("/gradio_api/queue/join")) == (two, Counter(), Counter())
    assert asyncio.run(two_at_once("/gradio_api/run/predict")) == (Counter(), two, Counter())
    assert asyncio.run(two_at_once(UPLOAD)) == (Counter(), Counter(), two)


def test_an_undeclared_upload_is_checked_as_zero_bytes_so_far():
    """Catches an upload without Content-Length checked as one byte: a client exactly at its
    allowance could not even start one (its bytes are counted as they come)."""
    gradio, middleware = _middleware(uploads=UploadBudget(per_client=10, total=100, window=60, at_once=1))
    middleware.uploads.spend(CLIENT, 10)
    assert _run(middleware, "POST", UPLOAD, b"")[0] == 200


def test_the_upload_refusals_name_their_sizes_in_mb_and_minutes():
    """Catches the MB and minute conversions of the refusals (a wrong figure told to the
    visitor): a 3 MB cap, a 60 minute window."""
    budget = UploadBudget(per_client=3 * MB, total=100 * MB, window=3600.0, at_once=1)
    budget.spend("a", 3 * MB)
    assert budget.refusal("a", 1) == "you uploaded 3 MB in the last 60 minutes, the most one visitor may: try again later"
    gradio, middleware = _middleware(Gradio(read_all=True), upload_bytes=3 * MB)
    cap = 3 * MB + admission.MULTIPART_SLACK
    sent = asyncio.run(_request(middleware, _scope("POST", UPLOAD), [b"x" * cap, b"y"]))
    assert json.loads(sent[1]["body"])["error"] == "the upload is over 3 MB, the largest accepted"


def test_an_upload_cut_off_tells_gradio_the_client_disconnected():
    """Catches the cut-off told to Gradio as a message type it does not know: Starlette's
    request stream raises ClientDisconnect on ``http.disconnect`` only, and would read on."""
    told = []

    async def starlette_like(scope, receive, send):
        while True:  # as Starlette's Request.stream: a type it does not know is skipped
            message = await receive()
            told.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body", True):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})

    middleware = Admission(starlette_like, _blocks(), upload_bytes=0)
    asyncio.run(_request(middleware, _scope("POST", UPLOAD), [b"x" * admission.MULTIPART_SLACK, b"y", b"z"]))
    assert told == ["http.request", "http.disconnect"]


def test_blocks_without_a_state_holder_or_a_queue_are_served():
    """Catches the state holder (or queue) read without a default: an app whose Blocks
    keeps no per-session state would fail every request naming a session."""
    _, middleware = _middleware(blocks=SimpleNamespace())
    assert _run(middleware, "POST", "/gradio_api/queue/join", _session_body("s"))[0] == 200
    middleware.sweep_states()
    assert middleware.work() == Counter()


def test_a_dropped_session_gradio_kept_no_state_for_is_dropped_quietly(monkeypatch):
    """Catches the dropped session's state popped without a default: a session Gradio never
    made state for (or made no timestamp for) would fail the request with a KeyError. The
    sweep likewise tolerates state without a timestamp."""
    monkeypatch.setattr(admission, "SWEEP_EVERY", 2)
    holder = Holder()
    holder.session_data["s1"] = object()  # state without a timestamp
    holder.session_data["orphan"] = object()
    _, middleware = _middleware(blocks=_blocks(holder=holder), sessions=SessionOwners(per_client=1, total=100))
    for session in ("s0", "s1", "s2"):  # s0 (no state at all), then s1, are dropped
        assert _run(middleware, "POST", "/gradio_api/queue/join", _session_body(session))[0] == 200
    assert holder.session_data == {} and middleware.sessions.owner == {"s2": CLIENT}
