"""The upstream HTTP client: HTTP/1.1 on h11 and trio streams, idle connections kept per origin.

There is no client object with a cookie jar, an auth flow or a redirect policy: nothing one user's
response sets can reach another user's request, and a 3xx is relayed, never followed, so a
provider key never goes to another host. A provider's `Origin` is parsed once, when the provider
is built; each request is bytes from there on.

`UpstreamClient.send` is one attempt: connect (or reuse an idle connection), send, read the status
and headers. Failures come out as `UpstreamTimeout` or `UpstreamConnectError`; reading the body
afterwards raises the same. Nothing has reached the client at that point, so a caller may try
another key or give up.

Why not httpx2/httpcore2: profiled under load, their per-request machinery (pool bookkeeping that
probes every idle connection, trace hooks, exception-mapping context managers per read) was a
quarter of the gateway's CPU, and httpcore2 closes a response whose read is cancelled, which rules
out waiting on the upstream with a deadline (the stream pings). h11 still does all of the
protocol.
"""

from __future__ import annotations

import ipaddress
import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, urlsplit

import h11
import trio

from aibridged.errors import UpstreamConnectError, UpstreamError, UpstreamTimeout
from aibridged.intercept.h1 import BeforeSend, H1Connection, open_h1_connection

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    connect_timeout_s: float = 10.0
    # Longest silence allowed between two bytes from the upstream (models pause to think).
    read_timeout_s: float = 600.0
    # Idle connections kept per origin for reuse; concurrency itself is bounded by
    # ai_gateway.max_concurrency, not by the pool (thousands of streams may be open at once).
    max_keepalive: int = 256
    # Shorter than the idle timeout of common load balancers (60 s), so a connection is not
    # reused just as the far end gives up on it.
    keepalive_expiry_s: float = 55.0


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a provider lives: parsed once from its base URL."""

    scheme: bytes
    host: bytes  # IDNA-encoded, no brackets around an IPv6 address
    port: int | None  # None: the scheme's default
    host_header: bytes
    base_path: str  # percent-encoded, no trailing slash ("" or "/v1", ...)

    @classmethod
    def from_url(cls, url: str) -> Origin:
        """Raises ValueError with a reason an operator can act on."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"base_url {url!r} is not a valid URL: {exc}") from exc
        if parts.scheme not in _DEFAULT_PORTS:
            raise ValueError(f"base_url {url!r} must be an http(s) URL")
        if not parts.hostname:
            raise ValueError(f"base_url {url!r} has no host")
        if parts.username is not None or parts.query or parts.fragment:
            raise ValueError(f"base_url {url!r} must not hold credentials, a query or a fragment")
        if any(c in parts.path for c in " \t\r\n\x00?#"):
            raise ValueError(f"base_url {url!r} has characters that need escaping in its path")
        path = quote(parts.path, safe="/:@!$&'()*+,;=-._~%")  # non-ASCII: percent-encoded
        host = _encode_host(parts.hostname)
        shown = b"[" + host + b"]" if b":" in host else host
        if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
            shown += b":%d" % port
        else:
            port = None
        return cls(parts.scheme.encode(), host, port, shown, path.rstrip("/"))


def _encode_host(hostname: str) -> bytes:
    try:
        return ipaddress.ip_address(hostname).compressed.encode()
    except ValueError:
        pass
    try:
        return hostname.encode("idna")
    except UnicodeError as exc:
        raise ValueError(f"host {hostname!r} is not a valid host name") from exc


class ExchangeTap(Protocol):
    """Sees one upstream exchange as it goes over the wire (the API dumps). Called inline:
    must be quick and must never raise."""

    def request_sent(
        self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None: ...

    def request_failed(self, error: str) -> None: ...

    def response_started(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    def response_body(self, chunk: bytes) -> None: ...  # b"": the body's end

    def response_closed(self) -> None: ...


# An error answer's status, body and headers → the status and body the client gets.
ErrorShaper = Callable[[int, bytes, list[tuple[bytes, bytes]]], tuple[int, bytes]]


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    origin: Origin
    target: str  # percent-encoded path (after the origin's base path) and query
    headers: list[tuple[bytes, bytes]]  # without Host and Content-Length: added here
    body: bytes
    # For a provider whose errors are not in its clients' wire format (Bedrock's AWS errors
    # for Anthropic clients): reshapes them. None: the body is kept when it already has the
    # format's error shape, else wrapped in it.
    shape_error: ErrorShaper | None = None
    tap: ExchangeTap | None = None  # sees the request as sent and its answer (API dumps)
    # Awaited before the first byte of the request goes out, whether on a pooled connection
    # or (before connecting) a new one; raises to send nothing.
    before_send: BeforeSend | None = None


class UpstreamResponse:
    """An upstream answer whose status and headers are in; the body is read with
    `receive_some`. Read to its end, its connection goes back to the pool."""

    __slots__ = (
        "_client",
        "_conn",
        "_key",
        "_silent_since",
        "_tap",
        "headers",
        "media_type",
        "status",
    )

    def __init__(
        self,
        client: UpstreamClient,
        key: _PoolKey,
        conn: H1Connection,
        head: h11.Response,
        tap: ExchangeTap | None = None,
    ) -> None:
        self._client = client
        self._key = key
        self._conn: H1Connection | None = conn
        self._silent_since = trio.current_time()
        self.status: int = head.status_code
        self.headers: list[tuple[bytes, bytes]] = [(k, v) for k, v in head.headers]
        content_type = self.header(b"content-type") or b""
        self.media_type = content_type.split(b";", 1)[0].strip().lower().decode("latin-1")
        self._tap = tap
        if tap is not None:
            tap.response_started(self.status, self.headers)

    def header(self, name: bytes) -> bytes | None:
        """The first header `name` (lower-case)."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def declared_length(self) -> int | None:
        """Content-Length, when the body is framed by it (not chunked)."""
        value = self.header(b"content-length")
        if value is None or not value.isdigit() or self.header(b"transfer-encoding") is not None:
            return None
        return int(value)

    async def receive_some(self) -> bytes:
        """The next piece of the body as it arrives, b"" at its end. A broken or silent
        upstream raises an `UpstreamError`."""
        chunk = await self.receive_within(math.inf)
        assert chunk is not None  # with no wait limit, only the read timeout ends the wait
        return chunk

    async def receive_within(self, wait_s: float) -> bytes | None:
        """Like `receive_some`, but None when nothing arrived within `wait_s` (cancel-safe:
        the body goes on where it was). Silence past the read timeout still raises."""
        conn = self._conn
        if conn is None:
            return b""
        read_timeout = self._client.read_timeout_s
        silence_ends = self._silent_since + read_timeout
        deadline = min(silence_ends, trio.current_time() + wait_s)
        try:
            chunk = await conn.receive_body(deadline)
        except UpstreamError:
            self._discard()
            raise
        if chunk is None:
            if trio.current_time() < silence_ends:
                return None
            self._discard()
            raise UpstreamTimeout(f"upstream timed out (silent for {read_timeout:g}s)")
        self._silent_since = trio.current_time()
        if self._tap is not None:
            self._tap.response_body(chunk)
        if not chunk:
            self._conn = None
            self._client._release(self._key, conn)
        return chunk

    async def read(self, limit: int) -> tuple[bytes, UpstreamError | None]:
        """Up to `limit` bytes of the body, and the error that cut it short, if any."""
        body = bytearray()
        try:
            while len(body) < limit:
                chunk = await self.receive_some()
                if not chunk:
                    break
                body += chunk
        except UpstreamError as exc:
            return bytes(body[:limit]), exc
        return bytes(body[:limit]), None

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close_now()
            self._conn = None

    async def aclose(self) -> None:
        """Give the connection back (the body was read to its end) or close it."""
        tap, self._tap = self._tap, None
        if tap is not None:
            tap.response_closed()
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()


_PoolKey = tuple[bytes, bytes, int | None]
# How a new connection to an origin is made (tests hand in in-memory streams).
Connector = Callable[[Origin], Awaitable[H1Connection]]


class UpstreamClient:
    """HTTP/1.1 to the providers, keeping idle connections per origin for reuse.

    Each request takes the most recently used idle connection of its origin (or opens one),
    and gives it back when its answer was read to the end. Idle connections past
    `keepalive_expiry_s`, or that have something to read (the peer closed them), are dropped
    when met: only the connection about to be used is checked, never all of them.
    """

    def __init__(
        self,
        settings: UpstreamSettings,
        tls: ssl.SSLContext,
        *,
        connect: Connector | None = None,
    ) -> None:
        self._settings = settings
        self._tls = tls
        self._connect = connect or self._open_connection
        self._idle: dict[_PoolKey, list[H1Connection]] = {}
        self.read_timeout_s = settings.read_timeout_s

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """One attempt: connect (or reuse), send, read status and headers. The caller reads
        the body and closes the answer.

        A pooled connection the provider closed just as the request went out (it closes idle
        connections on its own schedule) fails before any byte of an answer: the request is
        then sent once more, on a new connection.

        The request's `tap`, if any, sees it as it goes out (Host and Content-Length included),
        and the answer as it is read.
        """
        origin = request.origin
        key = (origin.scheme, origin.host, origin.port)
        headers = [(b"host", origin.host_header), *request.headers]
        if request.body or request.method in ("POST", "PUT", "PATCH"):
            headers.append((b"content-length", b"%d" % len(request.body)))
        target = (origin.base_path + request.target).encode("ascii")
        tap = request.tap
        if tap is None:
            return await self._send(key, request, target, headers)
        if request.before_send is not None:
            await request.before_send()  # a dump shows only a request that goes out
        tap.request_sent(request.method, target, headers, request.body)
        try:
            return await self._send(key, request, target, headers)
        except UpstreamError as exc:
            tap.request_failed(str(exc))
            raise

    async def _send(
        self,
        key: _PoolKey,
        request: UpstreamRequest,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> UpstreamResponse:
        pooled = self._take_idle(key)
        if pooled is not None:
            try:
                return await self._exchange(key, pooled, request, target, headers)
            except UpstreamConnectError:
                if pooled.answered:
                    raise
        if request.before_send is not None:
            await request.before_send()  # connecting sends bytes upstream too
        conn = await self._connect(request.origin)
        return await self._exchange(key, conn, request, target, headers)

    async def _exchange(
        self,
        key: _PoolKey,
        conn: H1Connection,
        request: UpstreamRequest,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> UpstreamResponse:
        try:
            await conn.send_request(
                request.method.encode("ascii"),
                target,
                headers,
                request.body,
                timeout_s=self._settings.read_timeout_s,
                before_send=request.before_send,
            )
            head = await conn.receive_head(timeout_s=self._settings.read_timeout_s)
        except BaseException:
            conn.close_now()
            raise
        return UpstreamResponse(self, key, conn, head, request.tap)

    async def _open_connection(self, origin: Origin) -> H1Connection:
        return await open_h1_connection(
            origin.host.decode("ascii"),
            origin.port or _DEFAULT_PORTS[origin.scheme.decode()],
            tls=self._tls if origin.scheme == b"https" else None,
            timeout_s=self._settings.connect_timeout_s,
        )

    def _take_idle(self, key: _PoolKey) -> H1Connection | None:
        idle = self._idle.get(key)
        expired_before = trio.current_time() - self._settings.keepalive_expiry_s
        while idle:
            conn = idle.pop()
            if conn.idle_since > expired_before and not conn.is_stale():
                return conn
            conn.close_now()
        return None

    def _release(self, key: _PoolKey, conn: H1Connection) -> None:
        if not conn.ready_for_reuse():
            conn.close_now()
            return
        idle = self._idle.setdefault(key, [])
        conn.idle_since = trio.current_time()
        idle.append(conn)
        expired_before = conn.idle_since - self._settings.keepalive_expiry_s
        while idle and (
            len(idle) > self._settings.max_keepalive or idle[0].idle_since <= expired_before
        ):
            idle.pop(0).close_now()  # the oldest first

    def statistics(self) -> UpstreamStatistics:
        return UpstreamStatistics(idle=sum(len(idle) for idle in self._idle.values()))

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close_now()
        self._idle.clear()


@dataclass(frozen=True, slots=True)
class UpstreamStatistics:
    idle: int  # connections kept for reuse


@asynccontextmanager
async def open_upstream_client(settings: UpstreamSettings) -> AsyncIterator[UpstreamClient]:
    # The system's trust store (and SSL_CERT_FILE / SSL_CERT_DIR): where operators put a
    # corporate or internal CA.
    tls = ssl.create_default_context()
    tls.set_alpn_protocols(["http/1.1"])
    client = UpstreamClient(settings, tls)
    try:
        yield client
    finally:
        client.close()
