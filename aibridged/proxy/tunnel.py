"""Tunnels: reaching a CONNECT's destination, and relaying bytes both ways undecrypted.

Direct: the name is resolved once, the addresses are checked against the private-range policy,
and the connection goes to an address that passed, so a second resolution can never swap in an
internal address (no DNS-rebinding window). Through a corporate upstream proxy the name is
checked the same way, but the upstream resolves it again for its own connection (the reference
does the same; the window is the upstream's).
"""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import h11
import trio

from aibridged.errors import ProxyError
from aibridged.proxy.connect import ConnectTarget, DestinationPolicy

# host, port → the addresses it resolves to (tests inject their own).
Resolver = Callable[[str, int], Awaitable[list[str]]]
RELAY_SIZE = 65536
_BROKEN = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


async def resolve(host: str, port: int) -> list[str]:
    try:
        found = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise ProxyError(502, f"cannot resolve {host}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in found))


@dataclass(frozen=True, slots=True)
class UpstreamProxy:
    """A corporate proxy tunnels go through: `http(s)://[user:password@]host:port`."""

    host: str
    port: int
    tls: ssl.SSLContext | None
    authorization: bytes  # b"" = none

    @classmethod
    def from_url(cls, url: str, ca_file: Path | None) -> UpstreamProxy:
        parts = urlsplit(url)
        tls = None
        if parts.scheme == "https":
            tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        authorization = b""
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            authorization = b"Basic " + base64.b64encode(pair)
        return cls(parts.hostname or "", parts.port or 0, tls, authorization)


class Dialer:
    def __init__(
        self,
        policy: DestinationPolicy,
        *,
        connect_timeout_s: float,
        resolver: Resolver = resolve,
        upstream: UpstreamProxy | None = None,
    ) -> None:
        self._policy = policy
        self._timeout_s = connect_timeout_s
        self._resolve = resolver
        self._upstream = upstream

    async def open(self, target: ConnectTarget) -> trio.abc.Stream:
        """A stream to `target`; ProxyError 403 (private range), 502 (cannot connect) or 504."""
        with trio.move_on_after(self._timeout_s):
            addresses = self._policy.usable(await self._resolve(target.host, target.port))
            if not addresses:
                raise ProxyError(502, f"cannot resolve {target.host}")
            if self._upstream is not None:
                return await self._through_upstream(self._upstream, target)
            for address in addresses:
                try:
                    return await trio.open_tcp_stream(address, target.port)
                except OSError:
                    continue
            raise ProxyError(502, f"cannot connect to {target.authority}")
        raise ProxyError(504, f"timed out connecting to {target.authority}")

    async def _through_upstream(
        self, upstream: UpstreamProxy, target: ConnectTarget
    ) -> trio.abc.Stream:
        try:
            stream: trio.abc.Stream = await trio.open_tcp_stream(upstream.host, upstream.port)
        except OSError as exc:
            raise ProxyError(502, "cannot connect to the upstream proxy") from exc
        try:
            if upstream.tls is not None:
                stream = trio.SSLStream(stream, upstream.tls, server_hostname=upstream.host)
                await stream.do_handshake()
            return await _connect_through(stream, upstream.authorization, target)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise


async def _connect_through(
    stream: trio.abc.Stream, authorization: bytes, target: ConnectTarget
) -> trio.abc.Stream:
    """Send CONNECT on `stream` (to the upstream proxy); the stream once it answered 2xx."""
    client = h11.Connection(h11.CLIENT)
    headers = [(b"host", target.authority.encode())]
    if authorization:
        headers.append((b"proxy-authorization", authorization))
    request = h11.Request(method=b"CONNECT", target=target.authority.encode(), headers=headers)
    try:
        await stream.send_all(client.send(request) or b"")
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(bytes(await stream.receive_some(RELAY_SIZE)))
                continue
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.InformationalResponse):
                continue
            raise ProxyError(502, "the upstream proxy closed the connection")
    except (*_BROKEN, ssl.SSLError, h11.ProtocolError) as exc:
        raise ProxyError(502, "the upstream proxy failed") from exc
    if not 200 <= event.status_code < 300:
        raise ProxyError(502, f"the upstream proxy refused the CONNECT ({event.status_code})")
    leftover, _ = client.trailing_data
    if leftover:  # the destination spoke first and its bytes came with the answer
        raise ProxyError(502, "the upstream proxy sent bytes past its CONNECT answer")
    return stream


async def relay(client: trio.abc.Stream, destination: trio.abc.Stream, first: bytes = b"") -> int:
    """Copy both ways until both directions ended; the bytes relayed. `first` holds bytes the
    client sent right after its CONNECT, already read."""
    moved = [0]

    async def copy(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
        try:
            async for chunk in source:
                await sink.send_all(chunk)
                moved[0] += len(chunk)
            if isinstance(sink, trio.abc.HalfCloseableStream):
                await sink.send_eof()
                return
        except _BROKEN:
            pass
        nursery.cancel_scope.cancel()  # one side is gone and cannot half-close: end both

    async with destination:
        if first:
            try:
                await destination.send_all(first)
            except _BROKEN:
                return 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(copy, client, destination)
            nursery.start_soon(copy, destination, client)
    return moved[0]


class Replayed(trio.abc.Stream):
    """`stream`, whose first bytes (`first`) were already read from it: they come first."""

    def __init__(self, stream: trio.abc.Stream, first: bytes) -> None:
        self._stream = stream
        self._first = first

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if not self._first:
            return await self._stream.receive_some(max_bytes)
        await trio.lowlevel.checkpoint()
        size = len(self._first) if max_bytes is None else max_bytes
        data, self._first = self._first[:size], self._first[size:]
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()
