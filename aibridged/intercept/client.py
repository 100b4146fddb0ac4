"""The client side of an exchange over raw ASGI: what was sent, and whether the client left.

hypercorn does not cancel a raw ASGI handler when its client goes away, so `run_watched` runs the
exchange beside a task that waits for `http.disconnect` and cancels the exchange at once (the
upstream request with it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from aibridged.intercept.wire import WireFormat

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
TEXT_HEADERS = [(b"content-type", b"text/plain; charset=utf-8")]


@dataclass(slots=True)
class RelayOutcome:
    """What happened to one response, as the finishing code (metrics, log, record) needs it."""

    status: int = 0
    bytes_out: int = 0
    events: int = 0
    pings: int = 0
    error: str = ""
    client_gone: bool = False
    first_byte_at: float | None = None
    started: bool = False  # the response's status line went out
    # Set just before the final body message: hypercorn reports `http.disconnect` from inside
    # that last send, which is the normal end of an exchange, not the client leaving.
    complete: bool = False
    parse_abandoned: bool = False  # events grew past the limit: relayed as bytes, unparsed
    wire_format: WireFormat | None = None  # of the route, once known (errors speak it)


async def start_response(
    send: Send, outcome: RelayOutcome, status: int, headers: list[tuple[bytes, bytes]]
) -> None:
    outcome.status = status
    outcome.started = True
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def send_simple(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    outcome: RelayOutcome | None = None,
    before_end: Callable[[], None] | None = None,
) -> None:
    """A whole response in two messages; `before_end` runs just before its last byte goes."""
    outcome = outcome if outcome is not None else RelayOutcome()
    await start_response(send, outcome, status, headers or JSON_HEADERS)
    outcome.complete = True
    outcome.bytes_out += len(body)
    if before_end is not None:
        before_end()
    await send({"type": "http.response.body", "body": body})


async def run_watched(
    receive: Receive, outcome: RelayOutcome, exchange: Callable[[], Awaitable[None]]
) -> None:
    """Run `exchange()`, cancelled at once if the client disconnects before it completes."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_disconnect, receive, nursery.cancel_scope, outcome)
        await exchange()
        nursery.cancel_scope.cancel()


async def _watch_disconnect(
    receive: Receive, scope: trio.CancelScope, outcome: RelayOutcome
) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not outcome.complete:
                outcome.client_gone = True
                scope.cancel()
            return
