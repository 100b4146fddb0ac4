"""A slowly paced Anthropic stream for the many-open-streams scenario, served from raw trio sockets.

Thousands of streams at one event per second each are more than hypercorn's pure-Python send path
manages on the core it shares with the load generator (it topped out near 3,300 events/s), so this
server writes pre-framed chunks straight to the socket: a few microseconds per event, and the
gateway is what gets measured. Every POST gets the same answer: the stream the demo renders for
``payloads.slow_stream()`` with ``Pacing.deltas`` text deltas, everything up to the first delta at
once, then one delta per ``Pacing.interval_s``, then the closing events at once (chunked and
keep-alive: the gateway's pool reuses the connection afterwards).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import trio

from bench import payloads
from bench.fast_upstream import (
    ANTHROPIC_RESPONSE_HEADERS,
    ANTHROPIC_VERSION,
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
        head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"%s: %s\r\n" % pair for pair in headers) + b"\r\n"
        return cls(
            head=head + b"".join(_chunk(e) for e in events[:first]),
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


async def _connection(paced: PacedStream, interval_s: float, stream: trio.SocketStream) -> None:
    buf = bytearray()
    try:
        while True:
            try:
                if not await _read_request(stream, buf):
                    return
            except ValueError:
                await stream.send_all(_BAD_REQUEST)
                return
            await stream.send_all(paced.head)
            for delta in paced.deltas:
                await trio.sleep(interval_s)
                await stream.send_all(delta)
            await stream.send_all(paced.tail)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        return
    finally:
        await stream.aclose()


async def serve_paced(
    pacing: Pacing,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the paced stream on ``host:port`` until cancelled; reports its URL when bound."""
    paced = PacedStream.build(pacing)
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=8192)
    bound = listeners[0].socket.getsockname()
    task_status.started(f"http://{bound[0]}:{bound[1]}")
    await trio.serve_listeners(partial(_connection, paced, pacing.interval_s), listeners)
