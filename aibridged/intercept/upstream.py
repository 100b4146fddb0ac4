"""The upstream HTTP client: sharded httpcore2 connection pools, one attempt per call.

httpcore2 (the transport under httpx2) is called directly with a request built here. There is no
client object with a cookie jar, an auth flow or a redirect policy, so nothing one user's response
sets can reach another user's request, and a 3xx is relayed, never followed: a provider key never
goes to another host. Building the request by hand also skips httpx2's per-call URL parsing and
header normalisation; a provider's `Origin` is parsed once, when the provider is built.

`UpstreamClient.send` is one attempt: connect, send, read the status and headers. Failures come
out as `UpstreamTimeout` or `UpstreamConnectError`; reading the body afterwards raises the same.
Nothing has reached the client at that point, so a caller may try another key or give up.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore2

from aibridged.errors import UpstreamConnectError, UpstreamError, UpstreamTimeout

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    connect_timeout_s: float = 10.0
    # Longest silence allowed between two bytes from the upstream (models pause to think).
    read_timeout_s: float = 600.0
    # Keep-alive connections kept per shard; concurrency itself is bounded by
    # ai_gateway.max_concurrency, not by the pool (thousands of streams may be open at once).
    max_keepalive_per_shard: int = 64
    keepalive_expiry_s: float = 90.0
    shards: int = 8


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
        host = _encode_host(parts.hostname)
        shown = b"[" + host + b"]" if b":" in host else host
        if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
            shown += b":%d" % port
        else:
            port = None
        return cls(parts.scheme.encode(), host, port, shown, parts.path.rstrip("/"))


def _encode_host(hostname: str) -> bytes:
    try:
        return ipaddress.ip_address(hostname).compressed.encode()
    except ValueError:
        pass
    try:
        return hostname.encode("idna")
    except UnicodeError as exc:
        raise ValueError(f"host {hostname!r} is not a valid host name") from exc


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    origin: Origin
    target: str  # percent-encoded path (after the origin's base path) and query
    headers: list[tuple[bytes, bytes]]  # without Host and Content-Length: added here
    body: bytes

    @property
    def url(self) -> str:
        o = self.origin
        return f"{o.scheme.decode()}://{o.host_header.decode()}{o.base_path}{self.target}"


class UpstreamResponse:
    """An upstream answer whose status and headers are in; the body is read with `chunks`."""

    __slots__ = ("_body", "_response", "headers", "media_type", "status")

    def __init__(self, response: httpcore2.Response) -> None:
        self._response = response
        self._body: Any = None
        self.status: int = response.status
        self.headers: list[tuple[bytes, bytes]] = [(k.lower(), v) for k, v in response.headers]
        content_type = self.header(b"content-type") or b""
        self.media_type = content_type.split(b";", 1)[0].strip().lower().decode("latin-1")

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
        if self._body is None:
            self._body = self._response.stream.__aiter__()  # type: ignore[union-attr]
        try:
            chunk: bytes = await self._body.__anext__()
        except StopAsyncIteration:
            return b""
        except _LIBRARY_ERRORS as exc:
            raise _translate(exc) from exc
        return chunk or await self.receive_some()

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

    async def aclose(self) -> None:
        with contextlib.suppress(*_LIBRARY_ERRORS):
            await self._response.aclose()


class UpstreamClient:
    """Several independent connection pools, used in turn.

    httpcore2 probes the socket of every idle pooled connection (a `select` each) whenever a
    request is added to or leaves its pool. With one pool and 64 requests in flight that was
    ~15 % of the gateway's CPU (bench/results/2026-11-23-hotpath.md); spreading requests over a
    few pools keeps each scan short while connections are still reused.
    """

    def __init__(self, pools: list[httpcore2.AsyncConnectionPool], settings: UpstreamSettings):
        self._pools = pools
        self._next = 0
        self._extensions: dict[str, Any] = {
            "timeout": {
                "connect": settings.connect_timeout_s,
                "read": settings.read_timeout_s,
                "write": settings.read_timeout_s,
                "pool": None,  # waiting for a pool slot is bounded by max_concurrency instead
            }
        }

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """One attempt: connect, send, read status and headers. The caller closes the answer."""
        origin = request.origin
        headers = [(b"host", origin.host_header), *request.headers]
        if request.body or request.method in ("POST", "PUT", "PATCH"):
            headers.append((b"content-length", b"%d" % len(request.body)))
        target = (origin.base_path + request.target).encode("ascii")
        core = httpcore2.Request(
            request.method.encode("ascii"),
            httpcore2.URL(scheme=origin.scheme, host=origin.host, port=origin.port, target=target),
            headers=headers,
            content=request.body,
            extensions=self._extensions,
        )
        pool = self._pools[self._next]
        self._next = (self._next + 1) % len(self._pools)
        try:
            return UpstreamResponse(await pool.handle_async_request(core))
        except _LIBRARY_ERRORS as exc:
            raise _translate(exc) from exc


@asynccontextmanager
async def open_upstream_client(settings: UpstreamSettings) -> AsyncIterator[UpstreamClient]:
    ssl_context = httpcore2.default_ssl_context(_trust_env=False)
    async with AsyncExitStack() as stack:
        pools = [
            await stack.enter_async_context(
                httpcore2.AsyncConnectionPool(
                    ssl_context=ssl_context,
                    max_connections=None,
                    max_keepalive_connections=settings.max_keepalive_per_shard,
                    keepalive_expiry=settings.keepalive_expiry_s,
                    http1=True,
                    http2=False,
                    retries=0,
                )
            )
            for _ in range(settings.shards)
        ]
        yield UpstreamClient(pools, settings)


_CONNECTION_ERRORS = (
    httpcore2.NetworkError,
    httpcore2.ProtocolError,
    httpcore2.UnsupportedProtocol,
    httpcore2.ProxyError,
    httpcore2.ConnectionNotAvailable,
    OSError,
)
_LIBRARY_ERRORS = (httpcore2.TimeoutException, *_CONNECTION_ERRORS)


def _translate(exc: BaseException) -> UpstreamError:
    """The one place where httpcore2's errors become ours (`raise _translate(e) from e`)."""
    if isinstance(exc, httpcore2.TimeoutException):
        return UpstreamTimeout(f"upstream timed out ({type(exc).__name__})")
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return UpstreamConnectError(f"upstream connection failed ({detail})")
