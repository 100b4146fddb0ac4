"""The CONNECT listener: one task per client connection, each with its own `connect_id`.

A connection sends one CONNECT (within the header timeout). Its port is checked first; a
provider's host then needs the proxy credential (407 without it) and is decrypted with a minted
leaf; every other host is tunnelled undecrypted, after the private-range check (403).
"""

from __future__ import annotations

import ssl
import uuid
from dataclasses import dataclass, field
from functools import partial

import h11
import structlog
import trio

from aibridged.auth import TokenCache
from aibridged.errors import AuthError, ProxyError, StartupError, StoreError
from aibridged.log import bind_request
from aibridged.proxy.certs import LeafCertificates
from aibridged.proxy.connect import (
    PROXY_REALM,
    ConnectTarget,
    InterceptTable,
    decide,
    parse_connect_target,
    proxy_token,
)
from aibridged.proxy.mitm import Forwarding, MitmSession, serve_decrypted
from aibridged.proxy.tunnel import Dialer, Replayed, relay

log = structlog.get_logger("aibridged.proxy")

READ_SIZE = 65536
MAX_HEAD_BYTES = 64 * 1024
TOKEN_LOOKUP_TIMEOUT_S = 5.0
_BROKEN = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


@dataclass(slots=True)
class ProxyState:
    """What every CONNECT reads. `table` is swapped whole by the reload loop."""

    tokens: TokenCache
    leaves: LeafCertificates
    dialer: Dialer
    forwarding: Forwarding
    allowed_ports: tuple[int, ...]
    header_timeout_s: float
    table: InterceptTable = field(default_factory=InterceptTable)


async def serve_proxy(
    state: ProxyState,
    address: tuple[str, int],
    *,
    tls: ssl.SSLContext | None = None,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept CONNECTs on `address` (through TLS with `tls`) until cancelled; reports the bound
    `host:port` addresses once accepting. Connections run in `handler_nursery` when given, so
    they can outlive the listener (a graceful shutdown stops accepting first)."""
    host, port = address
    listeners: list[trio.abc.Listener[trio.abc.Stream]]
    try:
        tcp = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise StartupError(f"proxy cannot listen on {host}:{port}: {exc.strerror}") from exc
    bound = [_address_of(listener) for listener in tcp]
    if tls is None:
        listeners = list(tcp)
    else:
        listeners = [trio.SSLListener(listener, tls, https_compatible=True) for listener in tcp]
    async with trio.open_nursery() as nursery:
        serve = partial(
            trio.serve_listeners,
            partial(handle_client, state),
            listeners,
            handler_nursery=handler_nursery,
        )
        nursery.start_soon(serve)
        task_status.started(bound)


def _address_of(listener: trio.SocketListener) -> str:
    host, port = listener.socket.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listener_tls(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


async def handle_client(state: ProxyState, stream: trio.abc.Stream) -> None:
    # Each connection runs in its own task, so the id binds to this connection's lines only.
    bind_request(connect_id=str(uuid.uuid4()))
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    try:
        request = await _read_connect(stream, conn, state.header_timeout_s)
        if request is None:
            return
        await _serve_connect(state, stream, conn, request)
    except ProxyError as exc:
        log.info("proxy.refused", status=exc.status, reason=exc.message)
        await _refuse(stream, conn, exc)
    except (h11.RemoteProtocolError, *_BROKEN) as exc:
        log.info("proxy.client_failed", error=type(exc).__name__)
    except Exception:  # one connection's bug must not end every other one
        log.exception("proxy.connection_crashed")
    finally:
        await trio.aclose_forcefully(stream)


async def _read_connect(
    stream: trio.abc.Stream, conn: h11.Connection, timeout_s: float
) -> h11.Request | None:
    """The CONNECT request (its EndOfMessage read too), or None: the client left or was slow."""
    request: h11.Request | None = None
    with trio.move_on_after(timeout_s):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(READ_SIZE)
                conn.receive_data(bytes(data))
                if not data and request is None:
                    return None
            elif isinstance(event, h11.Request):
                request = event
                if event.method != b"CONNECT":
                    raise ProxyError(405, "this proxy only handles CONNECT")
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed):
                return None
    log.info("proxy.header_timeout")
    return None


async def _serve_connect(
    state: ProxyState, stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request
) -> None:
    target = parse_connect_target(request.target)
    decision = decide(target, state.table, state.allowed_ports)
    if decision.mitm:
        token = await _authenticate(state.tokens, list(request.headers))
        context = await state.leaves.context_for(target.host)
        early = await _established(stream, conn)
        state.forwarding.metrics.connect_sessions.labels(type="mitm").inc()
        log.info("proxy.mitm", host=target.host, provider=decision.provider)
        # A client may send its TLS hello without waiting for our 200: those bytes came in
        # with the CONNECT and go to the TLS layer first.
        raw = Replayed(stream, early) if early else stream
        tls = trio.SSLStream(raw, context, server_side=True, https_compatible=True)
        with trio.move_on_after(state.header_timeout_s) as handshake:
            await tls.do_handshake()
        if handshake.cancelled_caught:
            log.info("proxy.handshake_timeout", host=target.host)
            return
        session = MitmSession(target.host, decision.provider, token)
        served = await serve_decrypted(tls, session, state.forwarding)
        log.info("proxy.mitm_closed", host=target.host, requests=served)
        return
    await _tunnel(state, stream, conn, target)


async def _tunnel(
    state: ProxyState, stream: trio.abc.Stream, conn: h11.Connection, target: ConnectTarget
) -> None:
    destination = await state.dialer.open(target)
    leftover = await _established(stream, conn)
    state.forwarding.metrics.connect_sessions.labels(type="tunneled").inc()
    log.info("proxy.tunnel", host=target.host, port=target.port)
    moved = await relay(stream, destination, leftover)
    log.info("proxy.tunnel_closed", host=target.host, bytes=moved)


async def _authenticate(tokens: TokenCache, headers: list[tuple[bytes, bytes]]) -> str:
    """The proxy credential (a user token) once verified; ProxyError 407 (503) otherwise."""
    token = proxy_token(headers)
    if token is None:
        raise ProxyError(407, "proxy authentication required")
    try:
        if tokens.verify_from_memory(token) is None:
            with trio.fail_after(TOKEN_LOOKUP_TIMEOUT_S):
                await tokens.verify(token)
    except AuthError as exc:
        log.info("proxy.auth_rejected", reason=exc.reason)
        raise ProxyError(407, "proxy authentication failed") from exc
    except (StoreError, trio.TooSlowError) as exc:
        log.error("proxy.auth_unavailable", error=str(exc) or "token lookup timed out")
        raise ProxyError(503, "cannot verify the proxy credential now") from exc
    return token


async def _established(stream: trio.abc.Stream, conn: h11.Connection) -> bytes:
    """Answer 200 to the CONNECT; the bytes the client already sent past it."""
    await stream.send_all(conn.send(h11.Response(status_code=200, headers=[])) or b"")
    leftover, _ = conn.trailing_data
    return bytes(leftover)


async def _refuse(stream: trio.abc.Stream, conn: h11.Connection, exc: ProxyError) -> None:
    body = exc.message.encode() + b"\n"
    headers = [(b"content-type", b"text/plain; charset=utf-8"),
               (b"content-length", b"%d" % len(body)), (b"connection", b"close")]  # fmt: skip
    if exc.status == 407:
        headers += [(b"proxy-authenticate", PROXY_REALM.encode()), (b"proxy-connection", b"close")]
    try:
        data = conn.send(h11.Response(status_code=exc.status, headers=headers)) or b""
        data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)
    except (h11.LocalProtocolError, *_BROKEN):
        pass
