"""Upstream answers from a scripted peer over an in-memory stream: the real HTTP/1.1 client and
h11 read them, chunk by chunk exactly as scripted (a lockstep stream never merges two writes)."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

import trio
import trio.testing

from aibridged.intercept.h1 import H1Connection
from aibridged.intercept.upstream import (
    Origin,
    UpstreamClient,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamSettings,
)

ORIGIN = Origin.from_url("http://upstream.test")
_TLS = ssl.create_default_context()  # unused over memory streams; loading it costs 25 ms

Piece = bytes | float  # a body chunk, or seconds to stay silent


async def _serve(
    stream: trio.abc.Stream,
    status: int,
    headers: Sequence[tuple[bytes, bytes]],
    pieces: Iterable[Piece],
    *,
    chunked: bool,
    cut: bool,
) -> None:
    request = b""
    while b"\r\n\r\n" not in request:  # the request's head; these tests send no body
        request += await stream.receive_some()
    framing = [(b"transfer-encoding", b"chunked")] if chunked else []
    head = b"HTTP/1.1 %d OK\r\n" % status
    head += b"".join(b"%s: %s\r\n" % pair for pair in [*headers, *framing]) + b"\r\n"
    await stream.send_all(head)
    for piece in pieces:
        if isinstance(piece, float):
            await trio.sleep(piece)
        elif piece:
            await stream.send_all(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
    if cut:
        await stream.aclose()  # no end of body: the client sees the connection break
        return
    if chunked:
        await stream.send_all(b"0\r\n\r\n")
    await trio.sleep_forever()


@asynccontextmanager
async def open_canned(
    pieces: Iterable[Piece],
    content_type: str = "text/event-stream",
    *,
    status: int = 200,
    cut: bool = False,
    headers: Sequence[tuple[bytes, bytes]] = (),
    chunked: bool = True,
    read_timeout_s: float = 600.0,
) -> AsyncIterator[UpstreamResponse]:
    """An `UpstreamResponse` whose body is `pieces`; `cut` breaks the connection after them."""
    all_headers = [(b"content-type", content_type.encode()), *headers]
    async with trio.open_nursery() as nursery:

        async def connect(origin: Origin) -> H1Connection:
            ours, theirs = trio.testing.lockstep_stream_pair()

            async def serve() -> None:
                # The client may close the answer before its end.
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await _serve(theirs, status, all_headers, pieces, chunked=chunked, cut=cut)

            nursery.start_soon(serve)
            return H1Connection(ours)

        client = UpstreamClient(
            UpstreamSettings(read_timeout_s=read_timeout_s),
            _TLS,
            connect=connect,
        )
        response = await client.send(UpstreamRequest("POST", ORIGIN, "/v1/x", [], b""))
        try:
            yield response
        finally:
            await response.aclose()
            nursery.cancel_scope.cancel()
