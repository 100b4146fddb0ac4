"""Starting aibridgeproxyd (run_proxy_daemon) beside a whole test gateway, and talking CONNECT."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import h11
import trio
from cryptography import x509
from prometheus_client import CollectorRegistry

from aibridged.config import load_config
from aibridged.proxy.certs import create_ca, load_ca, mint_leaf, server_context
from aibridged.proxy.tunnel import relay
from aibridged.proxyd import RunningProxy, run_proxy_daemon
from aibridged.sdnotify import SdNotifier
from tests.gateway import Gateway

# Made-up public names for the providers: the proxy decides by the CONNECT host name.
ANTHROPIC_HOST = "api.anthropic.localhost"
OPENAI_HOST = "api.openai.localhost"


def ca_toml(state_dir: Path) -> str:
    """A new CA in `state_dir` and the [proxy] section naming it (the gateway serves it)."""
    cert, key = state_dir / "proxy-ca.pem", state_dir / "proxy-ca.key"
    create_ca(cert, key)
    return f"""
[proxy]
ca_cert_file = "{cert}"
ca_key_file = "{key}"
header_timeout = "2s"
intercept = {{ "{ANTHROPIC_HOST}" = "anthropic", "{OPENAI_HOST}" = "openai" }}
"""


@dataclass
class Proxy:
    running: RunningProxy
    registry: CollectorRegistry
    ca_file: Path
    cancel: trio.CancelScope
    stopped: trio.Event

    @property
    def address(self) -> str:
        return self.running.addresses.proxy[0]

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value("coder_aibridgeproxyd_" + name, labels)
        return 0.0 if value is None else value

    def client_tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


async def to_loopback(host: str, port: int) -> list[str]:
    """Every name resolves to 127.0.0.1 (the tests' origins all listen there)."""
    return ["127.0.0.1"]


async def start_proxy(
    nursery: trio.Nursery,
    gateway: Gateway,
    flags: Mapping[str, str] | None = None,
    *,
    notifier: SdNotifier | None = None,
    handle_signals: bool = False,
) -> Proxy:
    config = load_config(
        path=gateway.config.server.state_dir / "aibridged.toml",
        env={},
        flags={
            "database.url": gateway.config.database.url,
            "proxy.listen_address": "127.0.0.1:0",
            "proxy.target": gateway.url + "/api/v2/aibridge",
            **(flags or {}),
        },
        search_default_path=False,
    )
    registry = CollectorRegistry()
    cancel = trio.CancelScope()

    stopped = trio.Event()

    async def run(task_status: trio.TaskStatus[RunningProxy]) -> None:
        try:
            with cancel:
                await run_proxy_daemon(
                    config,
                    registry=registry,
                    notifier=notifier,
                    handle_signals=handle_signals,
                    resolver=to_loopback,
                    task_status=task_status,
                )
        finally:
            stopped.set()

    running = await nursery.start(run)
    assert config.proxy.ca_cert_file is not None
    return Proxy(running, registry, config.proxy.ca_cert_file, cancel, stopped)


def basic(token: str, user: str = "coder") -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{token}".encode())


async def send_connect(
    address: str, target: str, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[h11.Response, trio.SocketStream]:
    """CONNECT `target` through the proxy at `address`: its answer and the open stream."""
    host, _, port = address.rpartition(":")
    stream = await trio.open_tcp_stream(host, int(port))
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="CONNECT", target=target, headers=[("host", target), *(headers or [])]
    )
    await stream.send_all(conn.send(request) or b"")
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Response):
            return event, stream
        else:
            raise AssertionError(f"unexpected {event!r}")


@dataclass
class Origin:
    """A TLS origin with a certificate of its own CA (not the proxy's)."""

    port: int
    ca_file: Path
    certificate: x509.Certificate


async def serve_tls_origin(
    nursery: trio.Nursery, directory: Path, host: str, body: bytes = b"hello from the origin"
) -> Origin:
    ca_cert, ca_key = directory / "origin-ca.pem", directory / "origin-ca.key"
    create_ca(ca_cert, ca_key, common_name="origin CA")
    chain, key = mint_leaf(load_ca(ca_cert, ca_key), host)
    context = server_context(chain, key, host)

    async def answer(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await stream.receive_some(65536)
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
                % (len(body), body)
            )
        except trio.BrokenResourceError:
            pass
        finally:
            await trio.aclose_forcefully(stream)

    listeners = await nursery.start(
        partial(trio.serve_ssl_over_tcp, answer, 0, context, host="127.0.0.1")
    )
    port = listeners[0].transport_listener.socket.getsockname()[1]
    return Origin(port, ca_cert, x509.load_pem_x509_certificate(chain))


def write_leaf(proxy_ca: Path, host: str, directory: Path) -> tuple[Path, Path]:
    """A certificate for `host` (signed by the CA next to `proxy_ca`) as PEM files."""
    chain, key = mint_leaf(load_ca(proxy_ca, proxy_ca.with_suffix(".key")), host)
    cert_file, key_file = directory / f"{host}.pem", directory / f"{host}.key"
    cert_file.write_bytes(chain)
    key_file.write_bytes(key)
    return cert_file, key_file


@dataclass
class CorporateProxy:
    """A minimal upstream proxy: answers CONNECT, remembers what it was asked, relays."""

    port: int
    seen: list[h11.Request]


async def serve_corporate_proxy(nursery: trio.Nursery) -> CorporateProxy:
    seen: list[h11.Request] = []

    async def handle(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        while not isinstance(event := conn.next_event(), h11.EndOfMessage):
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(65536)))
            elif isinstance(event, h11.Request):
                request = event
        assert request is not None
        seen.append(request)
        port = request.target.decode().rpartition(":")[2]  # every name is 127.0.0.1 here
        destination = await trio.open_tcp_stream("127.0.0.1", int(port))
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=[])) or b"")
        await relay(stream, destination)

    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    return CorporateProxy(listeners[0].socket.getsockname()[1], seen)


class _EagerConnect(trio.abc.Stream):
    """A client that does not wait for the proxy's 200: its CONNECT goes out in the same write
    as the TLS hello, and the proxy's answer is read off before the TLS layer sees a byte."""

    def __init__(self, stream: trio.SocketStream, connect: bytes) -> None:
        self._stream, self._connect = stream, connect
        self._head = bytearray()
        self.answer = b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        first, self._connect = self._connect, b""
        await self._stream.send_all(first + bytes(data))

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        while not self.answer:
            self._head += await self._stream.receive_some(65536)
            if b"\r\n\r\n" in self._head:
                answer, _, rest = bytes(self._head).partition(b"\r\n\r\n")
                self.answer = answer
                if rest:
                    return rest
        return await self._stream.receive_some(max_bytes)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def open_decrypted(
    proxy: Proxy, host: str, token: str, *, eager: bool = False
) -> trio.SSLStream[trio.abc.Stream]:
    """A TLS stream to `host` through the proxy (MITM'd), handshake done."""
    target = f"{host}:443"
    if eager:
        address, _, port = proxy.address.rpartition(":")
        tcp = await trio.open_tcp_stream(address, int(port))
        head = f"CONNECT {target} HTTP/1.1\r\nhost: {target}\r\nproxy-authorization: "
        raw: trio.abc.Stream = _EagerConnect(tcp, head.encode() + basic(token) + b"\r\n\r\n")
    else:
        answer, raw = await send_connect(
            proxy.address, target, [(b"proxy-authorization", basic(token))]
        )
        assert answer.status_code == 200
    # As HTTPS clients do: the end of an answer is its framing, not a TLS close_notify.
    tls = trio.SSLStream(raw, proxy.client_tls(), server_hostname=host, https_compatible=True)
    await tls.do_handshake()
    if isinstance(raw, _EagerConnect):
        assert raw.answer.startswith(b"HTTP/1.1 200")
    return tls


async def exchange(stream: trio.abc.Stream, request: bytes) -> bytes:
    """Send a whole HTTP/1.1 request (with `connection: close`) and read the answer to its end."""
    await stream.send_all(request)
    answer = bytearray()
    while chunk := await stream.receive_some(65536):
        answer += chunk
    return bytes(answer)
