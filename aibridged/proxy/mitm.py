"""The decrypted side of a MITM'd CONNECT: HTTP/1.1 requests in, forwarded to the gateway.

Each request goes to `<target>/<provider><path>?<query>` with a fresh governance request id. The
client's own credential stays when it is not the proxy token (BYOK: the proxy token then goes as
`X-Coder-AI-Governance-Token`). Answers stream back as they arrive; a client that leaves
mid-answer cancels the exchange, which closes the connection to the gateway, so the gateway sees
the disconnect too.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import structlog
import trio

from aibridged.errors import UpstreamError
from aibridged.intercept.headers import HOP_BY_HOP, client_response_headers
from aibridged.intercept.upstream import Origin, UpstreamClient, UpstreamRequest, UpstreamResponse
from aibridged.proxy.metrics import ProxyMetrics

log = structlog.get_logger("aibridged.proxy")

READ_SIZE = 65536
MAX_HEAD_BYTES = 64 * 1024
REQUEST_ID_HEADER = b"x-coder-ai-governance-request-id"
GOVERNANCE_TOKEN_HEADER = b"x-coder-ai-governance-token"
# Never taken from the client: the proxy sets them, or the gateway would trust a forged one.
_DROPPED = HOP_BY_HOP | {b"host", b"content-length", REQUEST_ID_HEADER, GOVERNANCE_TOKEN_HEADER}
_BROKEN = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


@dataclass(frozen=True, slots=True)
class Forwarding:
    """Where and how a MITM'd connection's requests go."""

    client: UpstreamClient
    target: Origin  # the gateway's data-plane prefix, e.g. http://gw:3000/api/v2/aibridge
    metrics: ProxyMetrics
    header_timeout_s: float
    body_timeout_s: float  # a client must send a whole request body within this
    max_body_bytes: int


@dataclass(frozen=True, slots=True)
class MitmSession:
    host: str  # the CONNECT target's host: every request must name it
    provider: str
    token: str  # the proxy credential (a user token)


class _ClientGone(Exception):
    pass


async def serve_decrypted(stream: trio.abc.Stream, session: MitmSession, fwd: Forwarding) -> int:
    """Serve requests on the decrypted `stream` until the client closes it; how many."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    served = 0
    while True:
        try:
            request = await _next_request(stream, conn, fwd.header_timeout_s)
            if request is None:
                return served
            served += 1
            keep_going = await _serve_one(stream, conn, request, session, fwd)
        except (h11.RemoteProtocolError, _ClientGone, *_BROKEN):
            return served
        if not keep_going or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return served
        conn.start_next_cycle()


async def _next_request(
    stream: trio.abc.Stream, conn: h11.Connection, timeout_s: float
) -> h11.Request | None:
    with trio.move_on_after(timeout_s):
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Request):
                return event
            if isinstance(event, h11.ConnectionClosed):
                return None
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(READ_SIZE)))
    return None  # an idle keep-alive connection, or a head that took too long: closed


async def _read_body(
    stream: trio.abc.Stream, conn: h11.Connection, limit: int, timeout_s: float
) -> bytes | None:
    """The whole request body, or None when it is larger than `limit`."""
    body = bytearray()
    with trio.move_on_after(timeout_s):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(READ_SIZE)
                if not data:
                    raise _ClientGone
                conn.receive_data(bytes(data))
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit:
                    return None
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            else:
                raise _ClientGone
    raise _ClientGone  # too slow: the connection is dropped


def gateway_headers(
    headers: list[tuple[bytes, bytes]], token: str, request_id: str
) -> list[tuple[bytes, bytes]]:
    """The client's headers for the gateway, with the request id and, when the client's own
    credential is not the proxy token (BYOK), the proxy token as the governance token."""
    connection_named = {
        t.strip().lower()
        for name, value in headers
        if name == b"connection"
        for t in value.split(b",")
    }
    out = [(n, v) for n, v in headers if n not in _DROPPED and n not in connection_named]
    own = token.encode()
    presents_token = any(
        (name == b"authorization" and value.split()[-1:] == [own])
        or (name == b"x-api-key" and value.strip() == own)
        for name, value in out
    )
    out.append((REQUEST_ID_HEADER, request_id.encode()))
    if not presents_token:
        out.append((GOVERNANCE_TOKEN_HEADER, own))
    return out


def _host_of(value: bytes) -> str | None:
    """The host named by a `Host` header value, or None when it names none."""
    try:
        host = urlsplit(f"//{value.decode('latin-1')}").hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    return host.rstrip(".") if host else None


def _path_of(target: bytes) -> str | None:
    """The path and query of a request target, or None when it is not a URL."""
    text = target.decode("ascii")
    if not text.startswith("/"):  # absolute-form: https://host/path?query
        try:
            parts = urlsplit(text)
        except ValueError:
            return None
        text = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return text


async def _serve_one(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    request: h11.Request,
    session: MitmSession,
    fwd: Forwarding,
) -> bool:
    """One request; False when the connection must close."""
    headers = [(n.lower(), v) for n, v in request.headers]
    host = _host_of(next((v for n, v in headers if n == b"host"), b""))
    path = _path_of(request.target)
    if host is None or path is None:
        await _answer(stream, conn, 400, b"the request names no valid host or path\n")
        return False
    if host != session.host:
        await _answer(stream, conn, 421, b"this connection serves another host\n")
        return False
    body = await _read_body(stream, conn, fwd.max_body_bytes, fwd.body_timeout_s)
    if body is None:
        await _answer(stream, conn, 413, b"request body too large\n")
        return False
    request_id = str(uuid.uuid4())
    upstream_request = UpstreamRequest(
        method=request.method.decode("ascii"),
        origin=fwd.target,
        target=f"/{session.provider}{path}",
        headers=gateway_headers(headers, session.token, request_id),
        body=body,
    )
    metrics, provider = fwd.metrics, session.provider
    metrics.mitm_requests.labels(provider=provider).inc()
    inflight = metrics.inflight_mitm_requests.labels(provider=provider)
    inflight.inc()
    try:
        return await _exchange(stream, conn, upstream_request, session, fwd, request_id)
    finally:
        inflight.dec()


async def _exchange(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    request: UpstreamRequest,
    session: MitmSession,
    fwd: Forwarding,
    request_id: str,
) -> bool:
    """Forward `request` and relay its answer, the client watched from the start: one that
    leaves while the gateway still works on the answer's head (a blocking call) closes the
    connection to the gateway as surely as one that leaves mid-stream."""

    async def forward() -> bool:
        try:
            response = await fwd.client.send(request)
        except UpstreamError as exc:
            log.error("proxy.gateway_failed", provider=session.provider, error=str(exc))
            _count(fwd, session, 502, request_id)
            await _answer(stream, conn, 502, b"the gateway cannot be reached\n")
            return False
        _count(fwd, session, response.status, request_id)
        try:
            await _relay_answer(stream, conn, response)
        finally:
            await response.aclose()
        return True

    return await _watching_client(stream, conn, forward)


async def _relay_answer(
    stream: trio.abc.Stream, conn: h11.Connection, response: UpstreamResponse
) -> None:
    head = h11.Response(
        status_code=response.status,
        headers=client_response_headers(response.headers, keep_length=True),
    )
    await stream.send_all(conn.send(head) or b"")
    while chunk := await response.receive_some():
        await stream.send_all(conn.send(h11.Data(data=chunk)) or b"")
    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")


async def _watching_client(
    stream: trio.abc.Stream, conn: h11.Connection, relay: Callable[[], Awaitable[bool]]
) -> bool:
    """Run `relay`, cancelled at once when the client closes its side; False if it did, the
    relay broke, or `relay` says the connection must close."""
    gone = False
    keep_going = False

    async def watch(scope: trio.CancelScope) -> None:
        nonlocal gone
        try:
            data = await stream.receive_some(READ_SIZE)
        except _BROKEN:
            data = b""
        if data:
            conn.receive_data(bytes(data))  # a pipelined next request: h11 keeps it for later
            return
        gone = True
        scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, nursery.cancel_scope)
            keep_going = await relay()
            nursery.cancel_scope.cancel()
    except (UpstreamError, *_BROKEN) as exc:
        log.warning("proxy.relay_failed", error=str(exc) or type(exc).__name__)
        return False
    if gone:
        log.info("proxy.client_left")
    return keep_going and not gone


def _count(fwd: Forwarding, session: MitmSession, status: int, request_id: str) -> None:
    fwd.metrics.mitm_responses.labels(code=str(status), provider=session.provider).inc()
    if status >= 400:
        report = log.error if status >= 500 else log.warning
        report("proxy.response", provider=session.provider, status=status, request_id=request_id)


async def _answer(stream: trio.abc.Stream, conn: h11.Connection, status: int, text: bytes) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(text)),
        (b"connection", b"close"),
    ]
    try:
        data = conn.send(h11.Response(status_code=status, headers=headers)) or b""
        data += conn.send(h11.Data(data=text)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)
    except (h11.LocalProtocolError, *_BROKEN):
        pass
