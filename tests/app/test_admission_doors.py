"""Every route of the app is a door of demo/admission.py or closed, and the policy's rules.

In process: the page is built as app.py builds it, Gradio's FastAPI app is created around it
as ``launch`` does, and its routes are walked. A Gradio upgrade that adds a route fails
:func:`test_every_route_of_the_app_is_a_door_or_closed` until the route is judged (a door
with its kind, or closed); meanwhile the middleware answers it 404, since only doors pass.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from demo import admission
from demo.admission import CLOSED, DOORS, DIRECT, QUEUE, Admission, AdmissionPolicy, SessionOwners, UploadBudget, door_of, fair_order
from demo.chat import FULL, ChatQueue
from demo.limits import BUSY_MESSAGE, CLIENT_SHARE, MAX_SESSIONS, QUEUE_HARD_SIZE, QUEUE_SIZE, SESSIONS_PER_CLIENT


def _routes(routes, prefix=""):
    """(method, path template) of every route, through Gradio's included routers."""
    for route in routes:
        if hasattr(route, "path"):
            for method in sorted(getattr(route, "methods", None) or {"GET"}):
                yield method, prefix + route.path
        else:  # an included router (FastAPI's _IncludedRouter) or a mount
            inner = getattr(route, "original_router", None) or getattr(route, "app", None)
            context = getattr(route, "include_context", None)
            yield from _routes(getattr(inner, "routes", []), prefix + getattr(context, "prefix", ""))


@pytest.fixture(scope="module")
def gradio_app(tiny_vlm):
    import app
    from gradio.routes import App
    from demo.models import ModelSlot

    page = app.build(ModelSlot.starting_with(tiny_vlm, "banner"))
    return page, App.create_app(page)


def test_every_route_of_the_app_is_a_door_or_closed(gradio_app):
    """Catches a route Gradio adds (or a door removed from DOORS) that nobody judged."""
    _, server = gradio_app
    routes = set(_routes(server.routes))
    assert len(routes) > 60  # the walk reached the included router
    doors = {(door.method, door.route) for door in DOORS}
    unjudged = sorted(route for route in routes if route not in doors and route not in set(CLOSED))
    assert not unjudged, f"routes neither admitted nor closed in demo/admission.py: {unjudged}"
    assert not doors & set(CLOSED)
    # Every work door the issue names is admitted by the policy.
    for path in ("/gradio_api/queue/join", "/gradio_api/call/analyze", "/gradio_api/call/v2/analyze", "/gradio_api/run/predict",
                 "/gradio_api/run/analyze", "/gradio_api/call/analyze/"):
        assert door_of("POST", path).kind in (QUEUE, DIRECT), path
    for method, path in (("POST", "/gradio_api/api/analyze"), ("POST", "/gradio_api/component_server"), ("GET", "/gradio_api/deep_link"),
                         ("POST", "/gradio_api/stream/x"), ("GET", "/monitoring"), ("POST", "/gradio_api/anything-new")):
        assert door_of(method, path) is None, path


def test_the_model_events_never_run_outside_the_queue(gradio_app):
    """Catches api_open left on: /run/<api> would run model events outside the queue and its limit."""
    page, _ = gradio_app
    assert page.api_open is False
    assert page._queue.max_size == QUEUE_HARD_SIZE


def test_a_clients_share_and_the_fair_part_of_a_crowded_queue():
    """Catches the shares adding up past the queue: twelve clients at their full share must not
    lock out a visitor with nothing waiting, yet each is held to its share."""
    policy = AdmissionPolicy()
    assert policy.refusal("v", Counter({"v": CLIENT_SHARE})) == BUSY_MESSAGE.format(count=CLIENT_SHARE, share=CLIENT_SHARE)
    flooders = Counter({f"10.0.0.{n}": CLIENT_SHARE for n in range(12)})  # 72 > QUEUE_SIZE
    assert sum(flooders.values()) > QUEUE_SIZE
    assert policy.refusal("visitor", flooders) is None
    assert policy.refusal("visitor", flooders + Counter({"visitor": 4})) is not None  # its fair part: 64 // 13 = 4
    assert "your part of the queue now: 5" in policy.refusal("10.0.0.1", flooders - Counter({"10.0.0.1": 1}))  # 64 // 12
    crowd = Counter({f"c{n}": 1 for n in range(QUEUE_HARD_SIZE)})
    assert "too many visitors" in policy.refusal("visitor", crowd)


def test_the_queue_is_served_round_robin_between_clients():
    """Catches first-come-first-served: a visitor behind a flooder's whole share."""
    events = [("a", n) for n in range(5)] + [("b", n) for n in range(5)] + [("visitor", 0)]
    order = fair_order(events, lambda event: event[0], running=Counter({"a": 1, "b": 1}))
    assert order.index(("visitor", 0)) == 0  # a and b each have one running already
    order = fair_order(events, lambda event: event[0], running=Counter())
    assert order[:3] == [("a", 0), ("b", 0), ("visitor", 0)]
    assert [event for event in order if event[0] == "a"] == [("a", n) for n in range(5)]  # a client's own order kept


def test_gradio_sessions_are_bounded_per_address_and_in_all_and_owned():
    """Catches made-up session ids growing Gradio's state without bound, and one address
    using another's session."""
    owners = SessionOwners(per_client=3, total=5)
    dropped = []
    for n in range(5):
        allowed, gone = owners.claim(f"s{n}", "stranger")
        assert allowed
        dropped += gone
    assert dropped == ["s0", "s1"] and len(owners) == 3
    assert owners.claim("v1", "visitor") == (True, [])
    assert owners.claim("v2", "visitor") == (True, [])
    assert owners.claim("v3", "visitor") == (True, ["s2"])  # past the total: the address holding most gives one up
    assert owners.claim("v1", "stranger") == (False, [])


def test_uploads_are_bounded_per_client_and_in_all():
    """Catches one address filling the disk with uploads."""
    clock = [0.0]
    budget = UploadBudget(per_client=100, total=150, window=60, at_once=1, records=2, clock=lambda: clock[0])
    assert budget.refusal("a", 60) is None
    budget.spend("a", 60)
    assert "the most one visitor may" in budget.refusal("a", 60)
    budget.spend("b", 80)
    assert "too many uploads" in budget.refusal("c", 20)
    clock[0] = 61.0
    assert budget.refusal("a", 60) is None
    budget.spend("c", 1)
    assert len(budget.sent) == 2  # the records are bounded
    budget.in_progress["d"] += 1
    assert "in progress" in budget.refusal("d", 1)


def test_a_full_chat_table_makes_room_for_a_new_address():
    """Catches 32 addresses x 8 sessions locking every newcomer out for 30 minutes."""
    chats = ChatQueue(lambda *args: iter(()))
    for n in range(MAX_SESSIONS // SESSIONS_PER_CLIENT):
        for k in range(SESSIONS_PER_CLIENT):
            chats.open(f"{n}-{k}", f"10.0.0.{n}")
    assert chats.open_sessions == MAX_SESSIONS
    chats.open("visitor", "198.51.100.7")  # not "too many open chats"
    assert chats.open_sessions == MAX_SESSIONS
    assert chats.history("visitor", "198.51.100.7") == []
    # When every address holds one, there is no fairer room to make: full.
    crowded = ChatQueue(lambda *args: iter(()))
    for n in range(MAX_SESSIONS):
        crowded.open(f"s{n}", f"c{n}")
    with pytest.raises(ValueError, match=FULL):
        crowded.open("late", "newcomer")


def _run(middleware, method: str, path: str, body: bytes = b"", headers=(), client="10.0.0.1"):
    """One request through the middleware alone; returns (status, JSON body)."""
    scope = {"type": "http", "method": method, "path": path, "headers": list(headers), "client": (client, 1234)}
    chunks = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    status = sent[0]["status"]
    payload = b"".join(message.get("body", b"") for message in sent[1:])
    return status, json.loads(payload) if payload else None


class _Inner:
    """Stands for Gradio: answers 200 and remembers what it was sent."""

    def __init__(self):
        self.bodies = []

    async def __call__(self, scope, receive, send):
        message = await receive()
        self.bodies.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


class _Blocks:
    _queue = None
    state_holder = None


def test_the_middleware_closes_unknown_routes_and_caps_every_body():
    """Catches a route outside DOORS reaching Gradio, and a 256 MB JSON body being read."""
    inner = _Inner()
    middleware = Admission(inner, _Blocks(), body_bytes=1000)
    assert _run(middleware, "POST", "/gradio_api/api/analyze", b"{}")[0] == 404
    assert _run(middleware, "POST", "/gradio_api/vibe-edit", b"{}")[0] == 404
    assert _run(middleware, "GET", "/config")[0] == 200
    status, reply = _run(middleware, "POST", "/gradio_api/call/v2/analyze", b"x" * 2000)
    assert status == 413 and "largest accepted is 1000 bytes" in reply["error"]
    status, _ = _run(middleware, "POST", "/gradio_api/run/predict", b"x" * 10, headers=[(b"content-length", b"999999999")])
    assert status == 413
    assert inner.bodies == [b""]  # only the page's config reached Gradio


def test_the_middleware_admits_every_work_door_by_one_count():
    """Catches a door outside the share: /run, /call and /call/v2 requests count together."""
    middleware = Admission(_Inner(), _Blocks())
    middleware.direct["10.0.0.1"] = CLIENT_SHARE - 1
    assert _run(middleware, "POST", "/gradio_api/call/v2/analyze", b"{}")[0] == 200
    middleware.joining["10.0.0.1"] = 1  # one join being handled: the share is reached
    for path in ("/gradio_api/call/v2/analyze", "/gradio_api/call/analyze", "/gradio_api/queue/join", "/gradio_api/run/predict"):
        status, reply = _run(middleware, "POST", path, b'{"data": []}')
        assert status == 429 and f"at most {CLIENT_SHARE} at once" in reply["error"], path
    assert _run(middleware, "POST", "/gradio_api/run/predict", b"{}", client="10.0.0.2")[0] == 200


def test_the_middleware_refuses_another_addresss_session():
    """Catches one address using (and growing) the state of a session another address opened."""
    middleware = Admission(_Inner(), _Blocks())
    body = json.dumps({"session_hash": "alice", "data": [], "fn_index": 1}).encode()
    assert _run(middleware, "POST", "/gradio_api/run/predict", body, client="198.51.100.7")[0] == 200
    status, reply = _run(middleware, "POST", "/gradio_api/queue/join", body, client="203.0.113.66")
    assert status == 403 and "another connection" in reply["error"]


def test_the_limits_module_lists_the_admission_limits():
    assert admission.UploadBudget().per_client >= admission.MAX_UPLOAD_BYTES


def test_state_of_sessions_nobody_owns_is_swept():
    """Catches a dropped session's state made again by its queued event and kept for good."""
    import threading

    class Holder:
        lock = threading.Lock()

        def __init__(self):
            self.session_data = {f"orphan{n}": object() for n in range(100)}
            self.time_last_used = {}

    blocks = _Blocks()
    blocks.state_holder = Holder()
    middleware = Admission(_Inner(), blocks)
    for n in range(admission.SWEEP_EVERY):
        body = json.dumps({"session_hash": f"s{n}", "data": []}).encode()
        assert _run(middleware, "POST", "/gradio_api/run/predict", body)[0] == 200
    assert not [key for key in blocks.state_holder.session_data if key.startswith("orphan")]
