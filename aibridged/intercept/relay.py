"""Relaying one upstream exchange to the client over raw ASGI, byte for byte, as bytes arrive.

The response is parsed incrementally *on the side* (SSE events or the blocking JSON body) and handed
to an `Observer`, so recording hooks in without touching what reaches the client. A client
disconnect cancels the upstream request at once: hypercorn does not do it for a raw ASGI handler,
so a watcher task waits for `http.disconnect`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx2
import structlog
import trio

from aibridged.intercept import sse
from aibridged.intercept.headers import client_response_headers, stream_headers
from aibridged.intercept.shapes import error_body, looks_like_provider_error
from aibridged.intercept.upstream import translate
from aibridged.intercept.wire import WireFormat

log = structlog.get_logger("aibridged.relay")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_ERROR_BODY_BYTES = 1 << 20
_JSON = [(b"content-type", b"application/json")]


class Observer(Protocol):
    """What recording sees of a response. Called inline: must be quick and must not raise."""

    def on_event(self, event: sse.SSEEvent) -> None: ...

    def on_body(self, body: bytes) -> None: ...


@dataclass(slots=True)
class RelayOutcome:
    status: int = 0
    bytes_out: int = 0
    events: int = 0
    pings: int = 0
    error: str = ""
    client_gone: bool = False
    first_byte_at: float | None = None
    # Set just before the final body message: hypercorn reports `http.disconnect` from inside
    # that last send, which is the normal end of an exchange, not the client leaving.
    complete: bool = False


@dataclass(slots=True)
class Exchange:
    """One upstream call to relay."""

    wire_format: WireFormat
    method: str
    url: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    stream: bool
    ping_interval_s: float | None = None  # Anthropic streams only
    outcome: RelayOutcome = field(default_factory=RelayOutcome)


async def send_simple(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    outcome: RelayOutcome | None = None,
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or _JSON})
    if outcome is not None:
        outcome.complete = True
    await send({"type": "http.response.body", "body": body})


async def relay_exchange(
    client: httpx2.AsyncClient,
    exchange: Exchange,
    receive: Receive,
    send: Send,
    observer: Observer | None,
) -> RelayOutcome:
    outcome = exchange.outcome
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_disconnect, receive, nursery.cancel_scope, outcome)
        await _relay(client, exchange, send, observer)
        nursery.cancel_scope.cancel()
    return outcome


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


async def _relay(
    client: httpx2.AsyncClient, exchange: Exchange, send: Send, observer: Observer | None
) -> None:
    outcome = exchange.outcome
    fmt = exchange.wire_format
    try:
        request = client.build_request(
            exchange.method, exchange.url, headers=exchange.headers, content=exchange.body
        )
    except httpx2.InvalidURL as exc:  # the route checks should make this unreachable
        outcome.status, outcome.error = 400, f"invalid upstream URL: {exc}"
        await send_simple(send, 400, error_body(fmt, 400, outcome.error), None, outcome)
        return
    try:
        response = await client.send(request, stream=True)
    except httpx2.HTTPError as exc:
        error = translate(exc)
        status = 504 if isinstance(exc, httpx2.TimeoutException) else 502
        outcome.status, outcome.error = status, str(error)
        body = error_body(fmt, status, f"upstream request failed: {error}")
        await send_simple(send, status, body, None, outcome)
        return
    try:
        outcome.status = response.status_code
        if response.status_code >= 400:
            await _relay_error(response, fmt, send, outcome)
        elif exchange.stream and response.headers.get("content-type", "").startswith(
            "text/event-stream"
        ):
            await _relay_stream(response, exchange, send, observer)
        else:
            await _relay_body(response, fmt, send, observer, outcome)
    finally:
        with trio.CancelScope(shield=True):
            await response.aclose()


async def _relay_error(
    response: httpx2.Response, fmt: WireFormat, send: Send, outcome: RelayOutcome
) -> None:
    """An upstream error before any byte reached the client: its status, in the provider's shape."""
    body = bytearray()
    try:
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > MAX_ERROR_BODY_BYTES:
                break
    except httpx2.HTTPError as exc:
        outcome.error = str(translate(exc))
    outcome.error = outcome.error or f"upstream status {response.status_code}"
    if looks_like_provider_error(fmt, bytes(body)):
        headers = client_response_headers(response.headers.raw)
        await send_simple(send, response.status_code, bytes(body), headers, outcome)
        return
    text = bytes(body[:500]).decode("utf-8", "replace").strip() or response.reason_phrase
    shaped = error_body(fmt, response.status_code, f"upstream error: {text}")
    await send_simple(send, response.status_code, shaped, None, outcome)


async def _relay_body(
    response: httpx2.Response,
    fmt: WireFormat,
    send: Send,
    observer: Observer | None,
    outcome: RelayOutcome,
) -> None:
    declared = _declared_length(response)
    # HEAD answers and 204/304 declare a length but carry no body.
    bodyless = response.request.method == "HEAD" or response.status_code in (204, 304)
    length = None if bodyless else declared
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": client_response_headers(
                response.headers.raw, keep_length=declared is not None
            ),
        }
    )
    collected = bytearray() if observer is not None else None
    try:
        async for chunk in response.aiter_raw():
            if outcome.first_byte_at is None:
                outcome.first_byte_at = trio.current_time()
            outcome.bytes_out += len(chunk)
            if collected is not None:
                collected += chunk
            last = outcome.bytes_out == length
            if last:  # the whole declared body: end the response with this very message
                outcome.complete = True
            await send({"type": "http.response.body", "body": chunk, "more_body": not last})
    except httpx2.HTTPError as exc:
        # Headers are out: all we can do is end the body early; the client sees it truncated.
        outcome.error = str(translate(exc))
        log.warning("relay.upstream_failed_mid_body", error=outcome.error)
    if outcome.error or (length is not None and outcome.bytes_out != length):
        # A cut body: leaving the response unfinished makes the server drop the connection,
        # which is how the client learns the body is incomplete (a proper end would pass off the
        # truncated JSON as whole).
        outcome.error = outcome.error or "upstream body shorter than its Content-Length"
        return
    if not outcome.complete:
        outcome.complete = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    if observer is not None and collected is not None and not outcome.error:
        observer.on_body(bytes(collected))


def _declared_length(response: httpx2.Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None or not value.isdigit() or "transfer-encoding" in response.headers:
        return None
    return int(value)


class _StreamWriter:
    """Serialises writes from the relay and the pinger, and knows when a ping is safe."""

    def __init__(self, send: Send, outcome: RelayOutcome) -> None:
        self._send = send
        self._lock = trio.Lock()
        self.outcome = outcome
        self.parser = sse.SSEParser()
        self.last_write = trio.current_time()

    async def write(self, chunk: bytes) -> list[sse.SSEEvent]:
        """Send `chunk`; returns the events it completes. The parser is fed under the lock, so
        the pinger never sees an event boundary the client has not received yet."""
        async with self._lock:
            events = self.parser.feed(chunk)
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
            self.last_write = trio.current_time()
            return events

    async def ping_if_idle(self, interval_s: float) -> bool:
        async with self._lock:
            idle = trio.current_time() - self.last_write >= interval_s
            if not idle or self.parser.pending_bytes:
                return False  # mid-event: a ping here would corrupt the event
            await self._send(
                {"type": "http.response.body", "body": sse.anthropic_ping(), "more_body": True}
            )
            self.last_write = trio.current_time()
            self.outcome.pings += 1
            return True


async def _relay_stream(
    response: httpx2.Response, exchange: Exchange, send: Send, observer: Observer | None
) -> None:
    outcome = exchange.outcome
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": stream_headers(client_response_headers(response.headers.raw)),
        }
    )
    writer = _StreamWriter(send, outcome)
    async with trio.open_nursery() as nursery:
        if exchange.ping_interval_s:
            nursery.start_soon(_ping_when_idle, writer, exchange.ping_interval_s)
        try:
            async for chunk in response.aiter_raw():
                if outcome.first_byte_at is None:
                    outcome.first_byte_at = trio.current_time()
                outcome.bytes_out += len(chunk)
                events = await writer.write(chunk)
                if events:
                    outcome.events += len(events)
                    if observer is not None:
                        for event in events:
                            observer.on_event(event)
        except httpx2.HTTPError as exc:
            outcome.error = str(translate(exc))
            log.warning("relay.upstream_failed_mid_stream", error=outcome.error)
            await writer.write(_stream_error(exchange.wire_format, writer.parser, outcome.error))
        nursery.cancel_scope.cancel()
    outcome.complete = True
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _ping_when_idle(writer: _StreamWriter, interval_s: float) -> None:
    while True:
        await trio.sleep_until(writer.last_write + interval_s)
        if not await writer.ping_if_idle(interval_s):
            await trio.sleep(min(0.05, interval_s))  # mid-event or just written: look again soon


def _stream_error(fmt: WireFormat, parser: sse.SSEParser, reason: str) -> bytes:
    # A half-sent event is closed first so the error event parses on its own.
    prefix = b"\n\n" if parser.pending_bytes else b""
    message = f"upstream stream failed: {reason}"
    if fmt is WireFormat.ANTHROPIC:
        return prefix + sse.anthropic_error_event("api_error", message)
    return prefix + sse.openai_error_event(message)
