"""One HTTP/1.1 connection to an upstream: a trio stream and an h11 state machine.

h11 does the protocol (framing, chunked bodies, keep-alive rules); this module does the I/O with
deadlines. Reads are cancel-safe: a read cancelled while waiting (a ping is due, the client left)
has consumed nothing, so the connection is still consistent. Library errors leave here as
`UpstreamTimeout` or `UpstreamConnectError`, nowhere else.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import trio

from aibridged.errors import UpstreamConnectError, UpstreamTimeout

# Awaited before a request's first byte goes out (the recorder's start commit); raises to send
# nothing. Carried by UpstreamCall and UpstreamRequest down to here.
BeforeSend = Callable[[], Awaitable[None]]

READ_SIZE = 65536
MAX_HEAD_BYTES = 64 * 1024  # response status line and headers

_BROKEN = (
    OSError,  # ssl.SSLError included
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    h11.RemoteProtocolError,
    h11.LocalProtocolError,
)


def connection_error(exc: BaseException) -> UpstreamConnectError:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return UpstreamConnectError(f"upstream connection failed ({detail})")


async def open_h1_connection(
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None,
    timeout_s: float,
) -> H1Connection:
    """Connect (and handshake) within `timeout_s`."""
    stream: trio.abc.Stream | None = None
    tcp: trio.SocketStream | None = None
    try:
        with trio.move_on_after(timeout_s):
            try:
                tcp = await trio.open_tcp_stream(host, port)
                if tls is None:
                    stream = tcp
                else:
                    ssl_stream = trio.SSLStream(
                        tcp, tls, server_hostname=host, https_compatible=True
                    )
                    await ssl_stream.do_handshake()
                    stream = ssl_stream
            except _BROKEN as exc:
                raise connection_error(exc) from exc
    finally:
        if stream is None and tcp is not None:  # failed, timed out or cancelled mid-handshake
            tcp.socket.close()
    if stream is None:
        raise UpstreamTimeout(f"upstream timed out (connecting to {host}:{port})")
    return H1Connection(stream)


class H1Connection:
    __slots__ = (
        "_answered",
        "_body_ended",
        "_failure",
        "_h11",
        "_peer_closed",
        "_socket",
        "_stream",
        "idle_since",
    )

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        transport: Any = getattr(stream, "transport_stream", stream)
        self._socket: Any = getattr(transport, "socket", None)
        self._peer_closed = False
        self._body_ended = False  # the body's end was parsed along with its last data
        self._failure: UpstreamConnectError | None = None  # met after data still handed over
        self._answered = False  # a byte of the current answer has arrived
        self.idle_since = 0.0

    # -- one exchange ---------------------------------------------------------------------------

    async def send_request(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        timeout_s: float,
        before_send: BeforeSend | None = None,
    ) -> None:
        """Send the request; `before_send` is awaited once it is encoded, before its first
        byte goes out (raising: nothing is sent, and the connection is not reusable)."""
        try:
            parts = [self._h11.send(h11.Request(method=method, target=target, headers=headers))]
            if body:
                parts.append(self._h11.send(h11.Data(data=body)))
            parts.append(self._h11.send(h11.EndOfMessage()))
        except h11.LocalProtocolError as exc:
            # h11's message quotes the offending header, which may be a credential: never
            # pass it on (to the client, the log).
            message = "upstream request not sent (a header value is not valid HTTP)"
            raise UpstreamConnectError(message) from exc
        data = b"".join(part for part in parts if part)
        if before_send is not None:
            await before_send()
        with trio.move_on_after(timeout_s) as scope:
            try:
                await self._stream.send_all(data)
            except _BROKEN as exc:
                raise connection_error(exc) from exc
        if scope.cancelled_caught:
            raise UpstreamTimeout("upstream timed out (sending the request)")

    async def receive_head(self, *, timeout_s: float) -> h11.Response:
        """The response's status and headers (interim 1xx answers are skipped)."""
        deadline = trio.current_time() + timeout_s
        while True:
            event = await self._next_event(deadline, "without sending a response")
            if isinstance(event, h11.Response):
                return event
            if event is None:
                raise UpstreamTimeout("upstream timed out (waiting for the response)")

    async def receive_body(self, deadline: float) -> bytes | None:
        """The body that has arrived (at least one byte), b"" at its end, None when `deadline`
        came first.

        Everything already received is returned at once: a read from the socket often holds
        several chunks of a chunked body (several SSE events), and one write of them to the
        client costs a fraction of one write each, with no added wait.
        """
        if self._body_ended:
            return b""
        if self._failure is not None:
            raise self._failure
        while True:
            event = await self._next_event(deadline, "before the end of the body")
            if event is None:
                return None
            if isinstance(event, h11.EndOfMessage):
                return b""
            if isinstance(event, h11.Data) and event.data:
                break
        pieces = [bytes(event.data)]
        try:
            while (more := self._h11.next_event()) is not h11.NEED_DATA:
                if isinstance(more, h11.EndOfMessage):
                    self._body_ended = True
                    break
                if isinstance(more, h11.Data):
                    pieces.append(bytes(more.data))
        except h11.RemoteProtocolError as exc:
            # What parsed before the bad bytes is good: hand it over; the error comes next.
            self._failure = connection_error(exc)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def _next_event(self, deadline: float, closed_what: str) -> Any:
        """The next h11 event, reading as needed; None once `deadline` passes with no event."""
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                if self._peer_closed:
                    message = f"upstream connection failed (closed {closed_what})"
                    raise UpstreamConnectError(message) from exc
                raise connection_error(exc) from exc
            if isinstance(event, h11.ConnectionClosed):
                raise UpstreamConnectError(f"upstream connection failed (closed {closed_what})")
            if event is not h11.NEED_DATA:
                return event
            with trio.move_on_at(deadline):
                try:
                    data = await self._stream.receive_some(READ_SIZE)
                except _BROKEN as exc:
                    raise connection_error(exc) from exc
                self._h11.receive_data(data)  # type: ignore[arg-type]
                self._peer_closed = not data
                self._answered = self._answered or bool(data)
                continue
            return None

    # -- reuse ----------------------------------------------------------------------------------

    def ready_for_reuse(self) -> bool:
        """True once the exchange ended cleanly and both sides keep the connection alive; the
        connection is then reset for its next request."""
        if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
            return False
        leftover, closed = self._h11.trailing_data
        if leftover or closed:
            # Bytes past the end of the answer (more than its Content-Length, a body on a HEAD
            # or 204 answer): the next request on this connection would read them as its own
            # answer. The connection is not reused.
            return False
        self._body_ended = False
        self._answered = False
        try:
            self._h11.start_next_cycle()
        except h11.LocalProtocolError:
            return False
        return True

    @property
    def answered(self) -> bool:
        """False while no byte of the current answer has arrived."""
        return self._answered

    def is_stale(self) -> bool:
        """True when an idle connection has something to read: the peer closed it (or sent
        junk). Checked on the one connection about to be reused, never on every idle one."""
        return self._socket is None or self._socket.is_readable()

    def close_now(self) -> None:
        """Close without waiting (no TLS close_notify: the peer sees the TCP close)."""
        if self._socket is not None:
            self._socket.close()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(1), contextlib.suppress(*_BROKEN):
            await self._stream.aclose()
