"""A fair share of the model queue for every client: one client's burst cannot fill it.

Gradio's queue is one list for everybody (``QUEUE_SIZE`` places): a script that joins it a
hundred times would leave every other visitor with "queue is full". :class:`QueueShare`
stands in front of the queue's two doors (``/queue/join`` for the page, ``/call/<api>`` for
API clients) and counts, for the client asking, the events of its address that are waiting
or running. A client with ``CLIENT_SHARE`` of them gets HTTP 429 and :data:`BUSY_MESSAGE`
for the next one; nobody else is refused on its account.

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

from demo.limits import BUSY_MESSAGE, CLIENT_SHARE

QUEUE_DOORS = re.compile(r"/(queue/join|call/[^/]+)/?$")
log = logging.getLogger("prunesid.demo")


def client_of(request) -> str:
    """The client address of a Starlette / Gradio request (or an ASGI scope)."""
    if isinstance(request, dict):
        client = request.get("client")
        return str(client[0]) if client else ""
    client = getattr(request, "client", None)
    return str(getattr(client, "host", "") or "") if client is not None else ""


def queued_events(queue):
    """Every event Gradio's queue holds: waiting (per concurrency group) and running."""
    for event_queue in list(queue.event_queue_per_concurrency_id.values()):
        yield from list(event_queue.queue)
    for job in list(queue.active_jobs):
        if job:
            yield from job


class QueueShare:
    """ASGI middleware: refuses a client's join beyond ``share`` events waiting or running.

    ``blocks`` is the Gradio app whose queue is counted. One client's joins are admitted one
    at a time (a lock per address), so a burst cannot slip past the count; other clients'
    joins do not wait for it.
    """

    def __init__(self, app, blocks, share: int = CLIENT_SHARE):
        self.app = app
        self.blocks = blocks
        self.share = share
        self._locks: dict[str, list] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or not QUEUE_DOORS.search(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        client = client_of(scope)
        entry = self._locks.setdefault(client, [asyncio.Lock(), 0])  # [lock, requests using it]
        entry[1] += 1
        try:
            async with entry[0]:
                count = self.load(client)
                if count >= self.share:
                    message = BUSY_MESSAGE.format(count=count, share=self.share)
                    log.warning("refused a queue join from %s: %d requests waiting or running", client or "?", count)
                    await _reply(send, 429, {"detail": message, "error": message})
                    return
                await self.app(scope, receive, send)
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(client, None)

    def load(self, client: str) -> int:
        """Events of ``client`` waiting or running now."""
        queue = getattr(self.blocks, "_queue", None)
        if queue is None:
            return 0
        return sum(1 for event in queued_events(queue) if client_of(event.request) == client)


async def _reply(send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), (b"retry-after", b"5")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
