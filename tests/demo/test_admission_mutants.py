"""demo/admission.py's parts at their boundaries, without a server: the routes (doors), the
client address, the queue policy, the round-robin order, Gradio's session owners, the upload
budget, and the request-body helpers.

Written against the mutants ``make mutation MUTANTS='demo.admission*'`` left alive: each test
names the kind of bug it catches (a limit off by one, a per-client bound made global, a rate
window that never forgets or forgets too soon...). The middleware's own tests are in
test_admission_middleware_mutants.py.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, deque
from types import SimpleNamespace

import pytest

from demo import admission
from demo.admission import (
    CONTROL, DIRECT, QUEUE, READ, UPLOAD, AdmissionPolicy, Door, Refused, SessionOwners, UploadBudget, client_of, door_of,
    fair_order, queued_events,
)
from demo.limits import (
    BUSY_MESSAGE, CLIENT_RECORDS, CLIENT_SHARE, CROWDED_MESSAGE, FULL_MESSAGE, QUEUE_HARD_SIZE, QUEUE_SIZE, STATE_SESSIONS,
    STATE_SESSIONS_PER_CLIENT, UPLOAD_BYTES_APP, UPLOAD_BYTES_PER_CLIENT, UPLOAD_WINDOW_S, UPLOADS_AT_ONCE,
)

MB = 2**20


# --- doors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "kind"), [
    ("GET", "/", READ), ("HEAD", "/config", READ), ("GET", "/assets/a/b/index.js", READ), ("GET", "/pwa_icon/192", READ),
    ("GET", "/gradio_api/file=/tmp/x/y.png", READ), ("GET", "/gradio_api/call/analyze/abc", READ),
    ("POST", "/gradio_api/queue/join", QUEUE), ("POST", "/gradio_api/call/v2/analyze", QUEUE),
    ("POST", "/gradio_api/run/predict", DIRECT), ("POST", "/gradio_api/upload", UPLOAD), ("POST", "/gradio_api/cancel", CONTROL),
])
def test_each_route_goes_through_the_door_of_its_kind(method, path, kind):
    """Catches a door of the wrong kind (an upload read as a plain body, /run outside the
    policy) and a ``{name:path}`` part that no longer spans slashes."""
    door = door_of(method, path)
    assert door is not None and door.kind == kind and door.method == method


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/config"),  # a read route under another method
    ("DELETE", "/"),
    ("GET", "/faviconXico"),  # the route's dot is literal
    ("GET", "/pwa_icon/1/2"),  # a {name} part is one path segment
    ("POST", "/gradio_api/call/analyze/abc"),  # a (GET) result stream, not a POST door
    ("GET", "/config/extra"), ("GET", "/x/config"),  # anchored at both ends
    ("POST", "/gradio_api/run/"),  # a {name} part is never empty
])
def test_a_request_matching_no_door_exactly_has_none(method, path):
    """Catches a door matched by method alone (``or``), an unescaped route, a ``{name}`` that
    spans slashes, and an unanchored pattern: each would let a closed route reach Gradio."""
    assert door_of(method, path) is None


def test_a_doors_pattern_is_its_route_template():
    door = Door("GET", "/a.b/{x}/{rest:path}", READ)
    assert door.pattern.match("/a.b/1/2/3") and not door.pattern.match("/a.b//2") and not door.pattern.match("/aXb/1/2")
    assert door.pattern.pattern == r"^/a\.b/[^/]+/.*$"


# --- the client address ----------------------------------------------------------------------


def test_the_client_is_the_address_of_a_scope_or_a_request():
    """Catches the port taken for the address, a missing ``client`` raising instead of giving
    "" (ASGI allows it), and a host that is not a str left unconverted."""
    assert client_of({"client": ("198.51.100.7", 5678)}) == "198.51.100.7"
    assert client_of({"client": None}) == "" and client_of({}) == ""
    assert client_of(SimpleNamespace(client=SimpleNamespace(host="203.0.113.9"))) == "203.0.113.9"
    assert client_of(SimpleNamespace(client=SimpleNamespace(host=12345))) == "12345"
    assert client_of(SimpleNamespace(client=SimpleNamespace(host=None))) == ""
    assert client_of(SimpleNamespace(client=SimpleNamespace())) == ""
    assert client_of(SimpleNamespace(client=None)) == "" and client_of(SimpleNamespace()) == ""


# --- the policy ----------------------------------------------------------------------------


def test_the_policy_defaults_are_the_limits_module():
    policy = AdmissionPolicy()
    assert (policy.share, policy.queue_size, policy.hard_size) == (CLIENT_SHARE, QUEUE_SIZE, QUEUE_HARD_SIZE)


@pytest.mark.parametrize("sizes", [(0, 5, 5), (3, 2, 5), (1, 5, 4), (-1, 0, 0)])
def test_a_policy_whose_bounds_contradict_is_refused(sizes):
    """Catches the check loosened (a share above the queue would never refuse on fairness)."""
    with pytest.raises(ValueError, match=r"need 1 <= share <= queue_size <= hard_size, got "
                                         + ", ".join(str(n) for n in sizes) + "$"):
        AdmissionPolicy(*sizes)


@pytest.mark.parametrize("sizes", [(1, 1, 1), (2, 2, 2), (1, 2, 3)])
def test_a_policy_at_its_equal_bounds_is_accepted(sizes):
    """Catches ``<`` for ``<=`` in the check (a share equal to the queue refused)."""
    policy = AdmissionPolicy(*sizes)
    assert (policy.share, policy.queue_size, policy.hard_size) == sizes


SMALL = dict(share=3, queue_size=6, hard_size=9)


def test_a_client_is_busy_at_exactly_its_share_with_that_message():
    """Catches ``>`` for ``>=`` (a client getting its share + 1) and the busy check made
    after the full one (a client at its share told the app is full)."""
    policy = AdmissionPolicy(**SMALL)
    assert policy.refusal("me", Counter(me=2)) is None
    assert policy.refusal("me", Counter(me=3)) == BUSY_MESSAGE.format(count=3, share=3)
    assert policy.refusal("me", Counter(me=3, a=3, b=3)) == BUSY_MESSAGE.format(count=3, share=3)
    assert policy.refusal("other", Counter(me=3)) is None  # one client's share is its own


def test_nobody_is_admitted_at_exactly_the_hard_size():
    """Catches ``>`` for ``>=`` on the hard size (the queue growing one past its bound), and
    the hard bound applied below it."""
    policy = AdmissionPolicy(**SMALL)
    assert policy.refusal("me", Counter(a=3, b=3, c=2)) is None  # 8 in, me with nothing waiting
    assert policy.refusal("me", Counter(a=3, b=3, c=3)) == FULL_MESSAGE


def test_fairness_starts_at_exactly_the_queue_size():
    """Catches ``>`` for ``>=`` on the queue size, and fairness applied below it: at 5 in a
    client with 2 is admitted though its fair part would be 2; at 6 in it is held to it."""
    policy = AdmissionPolicy(**SMALL)
    assert policy.refusal("me", Counter(me=2, a=2, b=1)) is None
    assert policy.refusal("me", Counter(me=2, a=2, b=2)) == CROWDED_MESSAGE.format(count=2, share=2)
    assert policy.refusal("me", Counter(me=1, a=3, b=2)) is None  # under its part (6 // 3 = 2)


def test_the_fair_part_counts_the_other_clients_with_work_and_the_asker_once():
    """Catches clients with a zero count (a Counter keeps them) counted as active, the asker
    counted twice (or not at all), and the part computed by true division: each changes who
    is refused or the part the message names."""
    policy = AdmissionPolicy(**SMALL)
    assert policy.refusal("me", Counter(me=1, a=3, b=2, idle=0)) is None  # 3 active: part 2
    assert policy.refusal("a", Counter(me=1, a=2, b=3)) == CROWDED_MESSAGE.format(count=2, share=2)
    assert policy.refusal("new", Counter(a=3, b=3)) is None  # nothing waiting: admitted


def test_a_queue_shared_by_more_clients_than_places_still_gives_each_one():
    """Catches the part floored to 0 (``max(1, ...)`` dropped): a newcomer refused with
    nothing waiting. 7 clients hold one each (6 // 8 = 0 -> 1 each)."""
    policy = AdmissionPolicy(**SMALL)
    crowd = Counter({f"c{n}": 1 for n in range(7)})
    assert policy.refusal("me", crowd) is None
    assert policy.refusal("me", crowd + Counter(me=1)) == CROWDED_MESSAGE.format(count=1, share=1)


# --- the round-robin order -----------------------------------------------------------------


def _client(event):
    return event[0]


def test_each_clients_kth_request_goes_after_everyones_k_minus_first():
    """Catches first-come-first-served (a visitor behind a flooder's whole share) and a
    client's own order changed."""
    events = [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("c", 0)]
    assert fair_order(events, _client, Counter()) == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("a", 2)]


def test_running_requests_count_first_and_a_client_with_none_running_counts_zero():
    """Catches the running count ignored or added wrongly, and a client absent from it counted
    as having one running (it would wait behind clients that already have work)."""
    events = [("a", 0), ("b", 0), ("b", 1)]
    assert fair_order(events, _client, Counter(a=1)) == [("b", 0), ("a", 0), ("b", 1)]
    assert fair_order(events, _client, Counter(b=1)) == [("a", 0), ("b", 0), ("b", 1)]
    assert fair_order(events, _client, Counter(a=2)) == [("b", 0), ("b", 1), ("a", 0)]
    assert fair_order([], _client, Counter()) == []


def test_ties_keep_their_arrival_order():
    """Catches ties broken by anything but arrival (the events themselves are not comparable)."""
    events = [SimpleNamespace(client=name) for name in "dcba"]
    assert fair_order(events, lambda event: event.client, Counter()) == events


# --- Gradio's session owners ---------------------------------------------------------------


def test_session_owner_defaults_are_the_limits_module():
    owners = SessionOwners()
    assert (owners.per_client, owners.total) == (STATE_SESSIONS_PER_CLIENT, STATE_SESSIONS)
    assert owners.owner == {} and owners.by_client == {} and len(owners) == 0


def test_an_address_keeps_exactly_its_number_of_sessions_and_loses_its_oldest():
    """Catches ``>=`` for ``>`` (an address losing a session at its bound), the newest
    dropped instead of the oldest, and a re-used session not counted as recent."""
    owners = SessionOwners(per_client=3, total=100)
    assert [owners.claim(f"s{n}", "a") for n in range(3)] == [(True, [])] * 3
    assert owners.claim("s0", "a") == (True, [])  # used again: now the newest
    assert owners.claim("s3", "a") == (True, ["s1"])
    assert list(owners.by_client["a"]) == ["s2", "s0", "s3"] and len(owners) == 3
    assert "s1" not in owners.owner


def test_past_the_total_the_address_holding_most_loses_its_oldest():
    """Catches the total checked with ``>=``, the wrong address paying (the asker, or the
    one holding least), and the bound per address taken for the total."""
    owners = SessionOwners(per_client=10, total=4)
    for session in ("a0", "a1", "a2"):
        owners.claim(session, "a")
    assert owners.claim("b0", "b") == (True, [])  # exactly the total
    assert owners.claim("c0", "c") == (True, ["a0"])
    assert len(owners) == 4 and set(owners.by_client) == {"a", "b", "c"}


def test_an_address_whose_last_session_goes_is_forgotten():
    """Catches an emptied address kept in ``by_client``: it would be picked as "holding
    most" with nothing to drop, and the table of addresses would grow without bound."""
    owners = SessionOwners(per_client=1, total=1)
    owners.claim("a0", "a")
    assert owners.claim("b0", "b") == (True, ["a0"])
    assert owners.by_client.keys() == {"b"} and owners.owner == {"b0": "b"}
    owners.claim("b1", "b")
    assert owners.owner == {"b1": "b"} and list(owners.by_client["b"]) == ["b1"]


def test_a_session_belongs_to_the_address_that_first_used_it():
    """Catches another address taking over (or being handed) a session's state."""
    owners = SessionOwners(per_client=2, total=10)
    owners.claim("s", "a")
    assert owners.claim("s", "b") == (False, [])
    assert owners.owner == {"s": "a"} and "b" not in owners.by_client


def test_forgetting_a_session_frees_its_place_and_its_address():
    """Catches forget() leaving the session counted, or its emptied address behind."""
    owners = SessionOwners(per_client=2, total=10)
    owners.claim("s0", "a")
    owners.claim("s1", "a")
    owners.forget("s0")
    assert owners.owner == {"s1": "a"} and list(owners.by_client["a"]) == ["s1"]
    owners.forget("unknown")
    owners.forget("s1")
    assert owners.owner == {} and owners.by_client == {} and len(owners) == 0
    assert owners.claim("s0", "b") == (True, [])  # a forgotten session may be claimed again


# --- the upload budget -----------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_upload_budget_defaults_are_the_limits_module():
    budget = UploadBudget()
    assert (budget.per_client, budget.total, budget.window, budget.at_once, budget.records) == (
        UPLOAD_BYTES_PER_CLIENT, UPLOAD_BYTES_APP, UPLOAD_WINDOW_S, UPLOADS_AT_ONCE, CLIENT_RECORDS)
    assert budget.sent == {} and not budget.everyone and budget.in_progress == Counter()


def _budget(clock, **bounds):
    return UploadBudget(**{**dict(per_client=3 * MB, total=5 * MB, window=120.0, at_once=2, records=3), **bounds}, clock=clock)


def test_a_client_may_upload_exactly_its_bytes_in_the_window_and_not_one_more():
    """Catches ``>=`` for ``>`` (the last byte of the allowance refused) and the bytes of
    this upload left out of the sum."""
    budget = _budget(Clock())
    budget.spend("a", 2 * MB)
    assert budget.refusal("a", MB) is None
    assert budget.refusal("a", MB + 1) == ("you uploaded 3 MB in the last 2 minutes, the most one visitor may: try again "
                                           "later")
    assert budget.refusal("b", 3 * MB) is None  # per client, not global


def test_all_clients_together_may_upload_exactly_the_total():
    """Catches the app-wide bound off by one, or summed over one client only."""
    budget = _budget(Clock())
    budget.spend("a", 2 * MB)
    budget.spend("b", 2 * MB)
    assert budget.refusal("c", MB) is None
    assert budget.refusal("c", MB + 1) == "the demo has received too many uploads in the last minutes: try again later"


def test_the_window_keeps_an_upload_exactly_its_length_and_forgets_it_after():
    """Catches ``>=`` for ``>`` (an upload forgotten a tick early), a window that never
    forgets, and the app-wide record not pruned with the client's."""
    clock = Clock()
    budget = _budget(clock)
    budget.spend("a", 3 * MB)
    budget.spend("b", 2 * MB)
    clock.now += 120.0
    assert budget.refusal("a", 1) is not None and budget.refusal("c", 1) is not None
    clock.now += 0.5
    assert budget.refusal("a", 3 * MB) is None and budget.refusal("c", 3 * MB) is None
    assert not budget.everyone and not budget.sent["a"]


def test_only_the_uploads_past_the_window_are_forgotten():
    clock = Clock()
    budget = _budget(clock)
    budget.spend("a", 2 * MB)
    clock.now += 60
    budget.spend("a", MB)
    clock.now += 61  # the first upload is past the window, the second is not
    assert budget.refusal("a", 2 * MB) is None and budget.refusal("a", 2 * MB + 1) is not None
    assert [size for _, size in budget.sent["a"]] == [MB] and [size for _, size in budget.everyone] == [MB]


def test_a_client_may_have_exactly_its_uploads_in_progress():
    """Catches ``>`` for ``>=`` on the uploads at once, and the count kept for everyone."""
    budget = _budget(Clock())
    budget.in_progress["a"] = 1
    assert budget.refusal("a", 1) is None
    budget.in_progress["a"] = 2
    assert budget.refusal("a", 1) == "you already have 2 uploads in progress (at most 2 at once)"
    assert budget.refusal("b", 1) is None


def test_the_client_records_are_bounded_and_the_least_recent_goes():
    """Catches records growing without bound, the newest dropped, and a client uploading
    again not made the most recent. The app-wide total still counts a forgotten client."""
    budget = _budget(Clock())
    for client in ("a", "b", "c", "a", "d"):
        budget.spend(client, 1)
    assert list(budget.sent) == ["c", "a", "d"]
    assert [size for _, size in budget.sent["a"]] == [1, 1]
    assert len(budget.everyone) == 5 and {time for time, _ in budget.everyone} == {1000.0}


# --- the request helpers ---------------------------------------------------------------------


def test_a_refusal_carries_its_status_and_message():
    refused = Refused(418, "teapot")
    assert (refused.status, refused.message, str(refused)) == (418, "teapot", "teapot")


def test_a_count_at_zero_is_removed():
    """Catches ``<`` for ``<=``: zero counts left behind would make idle clients "active"."""
    counter = Counter(a=2, b=1)
    admission._drop_count(counter, "a")
    admission._drop_count(counter, "b")
    assert counter == Counter(a=1) and "b" not in counter


def test_the_content_length_header_is_read_or_refused():
    """Catches the header looked up under another name, and a malformed one let through."""
    assert admission._content_length({"headers": [(b"host", b"x"), (b"content-length", b"42")]}) == 42
    assert admission._content_length({"headers": [(b"host", b"x")]}) is None and admission._content_length({}) is None
    with pytest.raises(Refused) as refused:
        admission._content_length({"headers": [(b"content-length", b"lots")]})
    assert (refused.value.status, refused.value.message) == (400, "bad Content-Length header")


def _receiver(*chunks):
    messages = [{"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1} for n, chunk in enumerate(chunks)]
    messages.append({"type": "http.disconnect"})

    async def receive():
        return messages.pop(0)

    return receive


def _read(scope, receive, cap):
    return asyncio.run(admission._read_body({"method": "POST", "headers": [], **scope}, receive, cap))


def test_a_body_of_exactly_the_cap_is_read_and_one_byte_more_is_refused():
    """Catches the cap off by one, on the declared length and on the bytes that come."""
    assert _read({"headers": [(b"content-length", b"10")]}, _receiver(b"12345", b"67890"), 10) == b"1234567890"
    with pytest.raises(Refused) as declared:
        _read({"headers": [(b"content-length", b"11")]}, _receiver(b"x"), 10)
    assert (declared.value.status, declared.value.message) == (
        413, "the request body is 11 bytes; the largest accepted is 10 bytes")
    with pytest.raises(Refused) as streamed:
        _read({}, _receiver(b"123456", b"78901"), 10)
    assert (streamed.value.status, streamed.value.message) == (
        413, "the request body is over 10 bytes; the largest accepted is 10 bytes")


def test_a_body_is_read_to_its_last_chunk_or_the_disconnect():
    """Catches reading past the last chunk (it would wait for the disconnect) and a chunk
    without a body."""
    assert _read({}, _receiver(b"ab", b"cd"), 100) == b"abcd"
    assert _read({}, _receiver(), 100) == b""

    async def disconnect_mid_body(messages=[{"type": "http.request", "body": b"ab", "more_body": True},
                                           {"type": "http.request", "more_body": True}, {"type": "http.disconnect"}]):
        return messages.pop(0)

    assert _read({}, disconnect_mid_body, 100) == b"ab"

    async def never_again():
        raise AssertionError("read past the last chunk")

    calls = iter([{"type": "http.request", "body": b"x"}])

    async def one_chunk():
        return next(calls, None) or await never_again()

    assert _read({}, one_chunk, 100) == b"x"


def test_a_get_without_a_body_is_not_read():
    """Catches a GET's receive() awaited: it would wait for the client to disconnect."""
    async def never():
        raise AssertionError("a GET without a body was read")

    assert _read({"method": "GET"}, never, 10) == b""
    assert _read({"method": "HEAD", "headers": [(b"content-length", b"0")]}, never, 10) == b""
    assert _read({"method": "GET", "headers": [(b"content-length", b"2")]}, _receiver(b"hi"), 10) == b"hi"


def test_the_replayed_body_comes_once_then_the_clients_own_messages():
    """Catches the body replayed forever (Gradio would never see the disconnect) or never."""
    async def receive():
        return {"type": "http.disconnect"}

    replay = admission._replaying(b"body", receive)

    async def three():
        return [await replay() for _ in range(3)]

    assert asyncio.run(three()) == [{"type": "http.request", "body": b"body", "more_body": False},
                                    {"type": "http.disconnect"}, {"type": "http.disconnect"}]


@pytest.mark.parametrize(("body", "session"), [
    (b'{"session_hash": "abc", "data": []}', "abc"), (b'{"data": []}', None), (b'{"session_hash": ""}', None),
    (b'{"session_hash": 7}', None), (b'["session_hash"]', None), (b'session_hash{', None), (b"", None),
])
def test_the_session_of_a_body_is_its_non_empty_string_session_hash(body, session):
    """Catches a malformed body raising (a 500 instead of no session), and a number or an
    empty string taken for a session id."""
    assert admission._session_of(body) == session


def test_a_body_without_the_word_session_hash_is_not_parsed(monkeypatch):
    """Catches every body parsed as JSON (the check is what keeps plain bodies cheap)."""
    monkeypatch.setattr(admission.json, "loads", lambda body: pytest.fail("parsed"))
    assert admission._session_of(b'{"data": [1, 2]}') is None


def _replied(status, message):
    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(admission._reply(send, status, message))
    return sent


def test_a_refusal_is_answered_as_json_with_its_length_and_a_retry_hint_when_busy():
    """Catches a wrong Content-Length (clients would hang or cut the reply), the message
    missing from ``detail`` or ``error``, and Retry-After on answers that are not 429."""
    start, body = _replied(429, "busy")
    payload = json.dumps({"detail": "busy", "error": "busy"}).encode()
    assert start == {"type": "http.response.start", "status": 429, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), (b"retry-after", b"5")]}
    assert body == {"type": "http.response.body", "body": payload}
    start, body = _replied(404, "Not Found")
    assert start["status"] == 404 and (b"retry-after", b"5") not in start["headers"] and len(start["headers"]) == 2
    assert json.loads(body["body"]) == {"detail": "Not Found", "error": "Not Found"}


def test_the_queue_holds_its_waiting_events_of_every_group_and_its_running_ones():
    """Catches a concurrency group or the running jobs left out of a client's count."""
    queue = SimpleNamespace(
        event_queue_per_concurrency_id={"model": SimpleNamespace(queue=["w1", "w2"]), "other": SimpleNamespace(queue=["w3"])},
        active_jobs=[["r1", "r2"], None, ["r3"]],
    )
    assert list(queued_events(queue)) == ["w1", "w2", "w3", "r1", "r2", "r3"]
    assert list(queued_events(None)) == []


def test_deque_is_what_the_window_prunes():
    # _recent prunes in place from the left: the record of a client is the deque itself.
    budget = _budget(Clock())
    entries = deque([(0.0, 1), (900.0, 2), (999.0, 3)])
    assert budget._recent(entries, 1000.0) is entries and list(entries) == [(900.0, 2), (999.0, 3)]
