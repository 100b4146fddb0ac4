"""Relaying a successful upstream answer to the client over raw ASGI, as it arrives.

Three ways, chosen by the answer's content type:

- **SSE, bytes** (the fast path): what arrives goes out unchanged, with one rule: only whole
  events go out. The unfinished tail of a chunk waits until its event completes, so a stream that
  breaks mid-event never hands the client half an event; it ends with the provider's error event
  instead, which the official SDKs raise as their API error. A side parser hands each event to
  the `Observer` (recording) without touching the bytes.
- **events** (asked for by a provider or feature with a `StreamTranscoder`): the upstream stream
  is parsed into events, transformed, and re-encoded as SSE for the client (Bedrock's event
  stream, the MCP inner loop).
- **a body** (JSON, or anything on a passthrough route): relayed as it arrives, keeping the
  upstream's Content-Length; the observer gets it whole.

On an intercepted route a 2xx answer the relay does not understand (say,
`application/vnd.amazon.eventstream` without a transcoder for it) is refused with
`UpstreamProtocolError` before anything is sent: it is never passed off as SSE or JSON. A 3xx is
relayed as it is (redirects are never followed: a provider key never goes to another host).

Memory is bounded: an event (or an observed body) larger than `max_event_bytes` stops the side
parsing; the bytes keep flowing, and the outcome says so (`parse_abandoned`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
import trio

from aibridged.errors import UpstreamError, UpstreamProtocolError
from aibridged.intercept import sse
from aibridged.intercept.client import RelayOutcome, Send, start_response
from aibridged.intercept.headers import client_response_headers, is_json_media, stream_headers
from aibridged.intercept.upstream import UpstreamResponse
from aibridged.intercept.wire import WireFormat

log = structlog.get_logger("aibridged.relay")

SSE_MEDIA_TYPE = "text/event-stream"
DEFAULT_MAX_EVENT_BYTES = 16 << 20


class Observer(Protocol):
    """What recording sees of a response. Called inline: must be quick and must not raise."""

    def on_event(self, event: sse.SSEEvent) -> None: ...

    def on_body(self, body: bytes) -> None: ...


class StreamTranscoder(Protocol):
    """The event path: upstream stream bytes in, the client's SSE events out.

    `feed` returns the events the chunk completed (already transformed); `finish` is called when
    the upstream ended normally and returns what was still held. Either may raise
    `UpstreamProtocolError` for input it cannot read.
    """

    media_type: str  # the upstream content type it reads

    def feed(self, chunk: bytes) -> list[sse.SSEEvent]: ...

    def finish(self) -> list[sse.SSEEvent]: ...


@dataclass(frozen=True, slots=True)
class RelayPlan:
    wire_format: WireFormat
    intercepted: bool  # an intercepted API (content types are checked) or a passthrough
    head_request: bool = False  # the answer declares a length but has no body
    ping_interval_s: float | None = None  # Anthropic streams: pings during upstream silences
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    transcoder: StreamTranscoder | None = None


async def relay_response(
    response: UpstreamResponse,
    plan: RelayPlan,
    send: Send,
    outcome: RelayOutcome,
    *,
    observer: Observer | None,
    before_end: Callable[[], None],
) -> None:
    """Relay `response`; `before_end` runs once, just before the response's last message."""
    media = response.media_type
    relay = _Relay(response, plan, send, outcome, observer, before_end)
    if plan.transcoder is not None and media == plan.transcoder.media_type:
        await relay.transcoded(plan.transcoder)
    elif media == SSE_MEDIA_TYPE:
        await relay.events()
    elif plan.intercepted and response.status < 300 and not is_json_media(media):
        raise UpstreamProtocolError(
            f"upstream answered with content type {media or 'none'!r}, "
            "which the gateway cannot relay on this route"
        )
    else:
        await relay.whole()


@dataclass(slots=True)
class _Relay:
    response: UpstreamResponse
    plan: RelayPlan
    send: Send
    outcome: RelayOutcome
    observer: Observer | None
    before_end: Callable[[], None]

    async def _end(self, body: bytes = b"") -> None:
        self.outcome.complete = True
        self.outcome.bytes_out += len(body)
        self.before_end()
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    def _received(self) -> None:
        if self.outcome.first_byte_at is None:
            self.outcome.first_byte_at = trio.current_time()

    def _abandon_parsing(self, size: int) -> None:
        self.outcome.parse_abandoned = True
        log.warning(
            "relay.parse_abandoned",
            bytes=size,
            limit=self.plan.max_event_bytes,
            reason="an event or body grew past ai_gateway.max_event_size; relayed unparsed",
        )

    # -- a body ---------------------------------------------------------------------------------

    async def whole(self) -> None:
        response, outcome = self.response, self.outcome
        declared = response.declared_length
        # HEAD answers and 204/304 declare a length but carry no body.
        bodyless = response.status in (204, 304) or self.plan.head_request
        length = None if bodyless else declared
        headers = client_response_headers(response.headers, keep_length=declared is not None)
        await start_response(self.send, outcome, response.status, headers)
        collected: bytearray | None = bytearray() if self.observer is not None else None
        relayed = 0
        try:
            while chunk := await response.receive_some():
                self._received()
                relayed += len(chunk)
                if collected is not None:
                    collected += chunk
                    if len(collected) > self.plan.max_event_bytes:
                        self._abandon_parsing(len(collected))
                        collected = None
                if relayed == length:  # the whole declared body: end the response with it
                    self._observe_body(collected)
                    await self._end(chunk)
                    await self._read_to_the_end()
                    return
                outcome.bytes_out += len(chunk)
                await self.send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UpstreamError as exc:
            # Headers are out: all we can do is end the body early; the client sees it truncated.
            outcome.error = str(exc)
            log.warning("relay.upstream_failed_mid_body", error=outcome.error)
        if outcome.error or (length is not None and relayed != length):
            # A cut body: leaving the response unfinished makes the server drop the connection,
            # which is how the client learns the body is incomplete (a proper end would pass off
            # the truncated JSON as whole).
            outcome.error = outcome.error or "upstream body shorter than its Content-Length"
            return
        self._observe_body(collected)
        await self._end()

    def _observe_body(self, collected: bytearray | None) -> None:
        """The whole body to the observer, before the response ends (and the interception
        with it), so what recording learns from it comes first."""
        if collected is not None and self.observer is not None:
            self.observer.on_body(bytes(collected))

    async def _read_to_the_end(self) -> None:
        """Read on past the declared length to the end of the message: only then can the
        connection be reused. The client has its whole answer already."""
        try:
            while await self.response.receive_some():
                pass
        except UpstreamError:
            pass  # the connection is discarded; nothing else is affected

    # -- SSE, bytes -----------------------------------------------------------------------------

    async def events(self) -> None:
        response, outcome, limit = self.response, self.outcome, self.plan.max_event_bytes
        headers = stream_headers(client_response_headers(response.headers))
        await start_response(self.send, outcome, response.status, headers)
        writer = _StreamWriter(self.send, outcome, self.plan.ping_interval_s)
        parser: sse.SSEParser | None = sse.SSEParser()
        tail = bytearray()  # the unfinished event: not sent until it is whole
        try:
            while chunk := await writer.next_chunk(response):
                self._received()
                if not writer.aligned:
                    await writer.write(chunk)
                    continue
                if tail:
                    searched = max(0, len(tail) - 3)  # a boundary may straddle the old end
                    tail += chunk
                    end = sse.last_event_end(tail, searched)
                    if end:
                        await writer.write(bytes(tail[:end]))
                        del tail[:end]
                else:
                    end = sse.last_event_end(chunk)
                    if end:
                        await writer.write(chunk if end == len(chunk) else chunk[:end])
                    tail += chunk[end:]
                if parser is not None:
                    self._observe(parser.feed(chunk))
                if len(tail) > limit:  # give up on events: relay bytes as they come
                    self._abandon_parsing(len(tail))
                    writer.aligned, parser = False, None
                    await writer.write(bytes(tail))
                    tail.clear()
        except UpstreamError as exc:
            outcome.error = str(exc)
            log.warning("relay.upstream_failed_mid_stream", error=outcome.error)
            # The held tail is half an event: dropped. The error event parses on its own.
            prefix = b"" if writer.aligned else b"\n\n"
            await writer.write(prefix + _stream_error(self.plan.wire_format, outcome.error))
        else:
            if tail:  # the upstream ended cleanly on an unterminated event: relay it as is
                await writer.write(bytes(tail))
        await self._end()

    def _observe(self, events: list[sse.SSEEvent]) -> None:
        if events:
            self.outcome.events += len(events)
            if self.observer is not None:
                for event in events:
                    self.observer.on_event(event)

    # -- events ---------------------------------------------------------------------------------

    async def transcoded(self, transcoder: StreamTranscoder) -> None:
        response, outcome = self.response, self.outcome
        headers = [
            (k, v) for k, v in client_response_headers(response.headers) if k != b"content-type"
        ]
        headers.append((b"content-type", b"text/event-stream; charset=utf-8"))
        await start_response(self.send, outcome, response.status, stream_headers(headers))
        writer = _StreamWriter(self.send, outcome, self.plan.ping_interval_s)
        try:
            while chunk := await writer.next_chunk(response):
                self._received()
                await self._emit(writer, transcoder.feed(chunk))
            await self._emit(writer, transcoder.finish())
        except UpstreamError as exc:
            outcome.error = str(exc)
            log.warning("relay.upstream_failed_mid_stream", error=outcome.error)
            await writer.write(_stream_error(self.plan.wire_format, outcome.error))
        await self._end()

    async def _emit(self, writer: _StreamWriter, events: list[sse.SSEEvent]) -> None:
        if events:
            await writer.write(b"".join(sse.encode_event(e.event, e.data) for e in events))
            self._observe(events)


class _StreamWriter:
    """Writes a stream to the client, and pings it while the upstream is silent.

    One task does both: the wait for the next upstream chunk ends at the next ping's time, and
    reading on afterwards is safe (`UpstreamResponse.receive_within` is cancel-safe). While
    `aligned`, the client has only ever been sent whole events, so a ping may go between any two
    writes.
    """

    def __init__(self, send: Send, outcome: RelayOutcome, ping_interval_s: float | None) -> None:
        self._send = send
        self._ping_interval_s = ping_interval_s
        self.outcome = outcome
        self.aligned = True
        self.last_write = trio.current_time()

    async def next_chunk(self, response: UpstreamResponse) -> bytes:
        """The next chunk from the upstream (b"" at its end), pinging the client meanwhile."""
        interval = self._ping_interval_s
        if not interval:
            return await response.receive_some()
        while True:
            wait = self.last_write + interval - trio.current_time()
            chunk = await response.receive_within(max(wait, 0.0))
            if chunk is not None:
                return chunk
            if self.aligned:
                await self._ping()
            else:  # mid-event: a ping would corrupt it; wait out another interval
                self.last_write = trio.current_time()

    async def write(self, chunk: bytes) -> None:
        self.outcome.bytes_out += len(chunk)
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        self.last_write = trio.current_time()

    async def _ping(self) -> None:
        await self.write(sse.anthropic_ping())
        self.outcome.pings += 1


def _stream_error(fmt: WireFormat, reason: str) -> bytes:
    message = f"upstream stream failed: {reason}"
    if fmt is WireFormat.ANTHROPIC:
        return sse.anthropic_error_event("api_error", message)
    return sse.openai_error_event(message)
