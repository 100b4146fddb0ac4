"""A slowly paced Anthropic stream for the many-open-streams scenario, and a Chat Completions answer
that comes a fixed delay after its request, served from raw trio sockets.

Thousands of streams at one event per second each are more than hypercorn's pure-Python send path
manages on the core it shares with the load generator (it topped out near 3,300 events/s), so this
server writes pre-framed chunks straight to the socket: a few microseconds per event, and the
gateway is what gets measured. Every POST gets the same answer: the stream the demo renders for
``payloads.slow_stream()`` with ``Pacing.deltas`` text deltas, everything up to the first delta at
once, then one delta per ``Pacing.interval_s``, then the closing events at once (chunked and
keep-alive: the gateway's pool reuses the connection afterwards).

The delayed answer (``serve_delayed``) is what a provider does with a blocking request: nothing
for a while, then the whole JSON body. Each connection waits on its own, so the upstream never
queues requests behind one another the way a single-threaded server at full load does; the
gateway in front of it is what saturates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import trio

from bench import payloads
from bench.fast_upstream import (
    ANTHROPIC_RESPONSE_HEADERS,
    ANTHROPIC_VERSION,
    OPENAI_RESPONSE_HEADERS,
    SSE_HEADERS,
    render,
)

_MAX_HEAD = 65_536
_DELTA = b"event: content_block_delta"


@dataclass(frozen=True, slots=True)
class Pacing:
    """``deltas`` text deltas, each ``interval_s`` after the previous event."""

    interval_s: float = 1.0
    deltas: int = 24

    @property
    def duration_s(self) -> float:
        return self.interval_s * self.deltas


def _head(headers: list[tuple[bytes, bytes]]) -> bytes:
    """A 200 response's status line and headers, through the blank line."""
    return b"HTTP/1.1 200 OK\r\n" + b"".join(b"%s: %s\r\n" % pair for pair in headers) + b"\r\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@dataclass(frozen=True, slots=True)
class PacedStream:
    """The response, pre-framed: ``head`` plus the chunks before the first delta, the delta
    chunks, and the closing chunks plus the terminating zero-length chunk."""

    head: bytes
    deltas: tuple[bytes, ...]
    tail: bytes

    @classmethod
    def build(cls, pacing: Pacing) -> PacedStream:
        _, events = render(
            "/v1/messages", payloads.slow_stream(), ANTHROPIC_VERSION, chunks=pacing.deltas
        )
        first = next(i for i, e in enumerate(events) if e.startswith(_DELTA))
        last = max(i for i, e in enumerate(events) if e.startswith(_DELTA))
        headers = [*SSE_HEADERS, *ANTHROPIC_RESPONSE_HEADERS, (b"transfer-encoding", b"chunked")]
        return cls(
            head=_head(headers) + b"".join(_chunk(e) for e in events[:first]),
            deltas=tuple(_chunk(e) for e in events[first : last + 1]),
            tail=b"".join(_chunk(e) for e in events[last + 1 :]) + b"0\r\n\r\n",
        )


_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


async def _read_request(stream: trio.SocketStream, buf: bytearray) -> bool:
    """Consume one request (head and Content-Length body) from ``buf``/``stream``; False at EOF."""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        if len(buf) > _MAX_HEAD:
            return False
        data = await stream.receive_some(_MAX_HEAD)
        if not data:
            return False
        buf += data
    length = 0
    for line in bytes(buf[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"transfer-encoding":
            raise ValueError("chunked request bodies are not supported here")
    del buf[: end + 4]
    while len(buf) < length:
        data = await stream.receive_some(_MAX_HEAD)
        if not data:
            return False
        buf += data
    del buf[:length]
    return True


async def _serve_requests(
    stream: trio.SocketStream, respond: Callable[[trio.SocketStream], Awaitable[None]]
) -> None:
    """Answer each request on the connection with `respond`, until the client goes."""
    buf = bytearray()
    try:
        while True:
            try:
                if not await _read_request(stream, buf):
                    return
            except ValueError:
                await stream.send_all(_BAD_REQUEST)
                return
            await respond(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        return
    finally:
        await stream.aclose()


async def _send_paced(paced: PacedStream, interval_s: float, stream: trio.SocketStream) -> None:
    await stream.send_all(paced.head)
    for delta in paced.deltas:
        await trio.sleep(interval_s)
        await stream.send_all(delta)
    await stream.send_all(paced.tail)


async def _send_after(answer: bytes, delay_s: float, stream: trio.SocketStream) -> None:
    await trio.sleep(delay_s)
    await stream.send_all(answer)


def delayed_answer() -> bytes:
    """The bench's blocking Chat Completions answer (as bench.fast_upstream gives it), framed."""
    body, _ = render("/v1/chat/completions", payloads.openai_chat(stream=False), [])
    headers = [(b"content-type", b"application/json"), *OPENAI_RESPONSE_HEADERS,
               (b"content-length", b"%d" % len(body))]  # fmt: skip
    return _head(headers) + body


async def _serve(
    handler: Callable[[trio.SocketStream], Awaitable[None]],
    host: str,
    port: int,
    task_status: trio.TaskStatus[str],
) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=8192)
    bound = listeners[0].socket.getsockname()
    task_status.started(f"http://{bound[0]}:{bound[1]}")
    await trio.serve_listeners(handler, listeners)


async def serve_paced(
    pacing: Pacing,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the paced stream on ``host:port`` until cancelled; reports its URL when bound."""
    respond = partial(_send_paced, PacedStream.build(pacing), pacing.interval_s)
    await _serve(partial(_serve_requests, respond=respond), host, port, task_status)


async def serve_delayed(
    delay_s: float,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the delayed Chat Completions answer on ``host:port`` until cancelled; reports its
    URL when bound."""
    respond = partial(_send_after, delayed_answer(), delay_s)
    await _serve(partial(_serve_requests, respond=respond), host, port, task_status)
