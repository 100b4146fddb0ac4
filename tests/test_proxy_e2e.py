"""aibridgeproxyd end to end, with real TLS: the official SDKs with HTTPS_PROXY-style settings and
the proxy's CA trusted, through the proxy into a whole gateway and its fake upstream; tunnels to
a TLS origin of its own; the refusals (407, 403); a provider disabled through the API."""

from __future__ import annotations

import json
import os
import signal
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import trio

from aibridged.demo.asgi import Receive, RecordedRequest, Send
from aibridged.sdnotify import SdNotifier
from aibridged.store import Store, open_store
from tests.fakes import FakeUpstream
from tests.gateway import Gateway, ended_interceptions, start_gateway
from tests.logs import watch_logs
from tests.proxy_harness import (
    ANTHROPIC_HOST,
    OPENAI_HOST,
    Proxy,
    basic,
    ca_toml,
    exchange,
    open_decrypted,
    send_connect,
    serve_corporate_proxy,
    serve_tls_origin,
    start_proxy,
    write_leaf,
)

MSG = {"model": "claude-demo", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
CHAT = {"model": "gpt-demo", "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class User:
    id: uuid.UUID
    token: str


@pytest.fixture
async def gateway(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> Gateway:
    return await start_gateway(
        nursery, database_url=database_url, state_dir=tmp_path, extra_toml=ca_toml(tmp_path)
    )


@pytest.fixture
async def alice(api: httpx2.AsyncClient) -> User:
    made = (await api.post("/api/v2/users", json={"username": "alice"})).json()
    key = (await api.post("/api/v2/users/alice/keys", json={"name": "proxy"})).json()
    return User(uuid.UUID(made["id"]), key["key"])


@pytest.fixture
async def proxy(nursery: trio.Nursery, gateway: Gateway) -> Proxy:
    return await start_proxy(nursery, gateway)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Store]:
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        yield store


def _through(proxy: Proxy, token: str, verify: ssl.SSLContext | None = None) -> httpx2.AsyncClient:
    """An httpx client as HTTPS_PROXY=http://coder:<token>@proxy sets it up, the CA trusted."""
    return httpx2.AsyncClient(
        proxy=f"http://coder:{token}@{proxy.address}",
        verify=verify or proxy.client_tls(),
        trust_env=False,
        timeout=10,
    )


def _claude(http: httpx2.AsyncClient, api_key: str) -> anthropic.AsyncAnthropic:
    """The Anthropic SDK calling https://<the mapped host> as configured, through `http`."""
    return anthropic.AsyncAnthropic(
        base_url=f"https://{ANTHROPIC_HOST}", api_key=api_key, http_client=http, max_retries=0
    )


@asynccontextmanager
async def _held_stream(gateway: Gateway, proxy: Proxy, token: str) -> AsyncIterator[Any]:
    """A streamed Messages call through the proxy that the upstream keeps open: its events."""
    gateway.upstream.hold_stream_open()
    async with (
        _through(proxy, token) as http,
        _claude(http, token) as claude,
        claude.messages.stream(**MSG) as s,  # type: ignore[arg-type]
    ):  # fmt: skip
        yield aiter(s)


@pytest.mark.parametrize("stream", [False, True])
async def test_sdk_calls_to_provider_hosts_are_decrypted_and_recorded_as_the_proxy_user(
    proxy: Proxy, alice: User, db: Store, stream: bool
) -> None:
    async with (
        _through(proxy, alice.token) as http,
        _claude(http, alice.token) as claude,
        openai.AsyncOpenAI(
            base_url=f"https://{OPENAI_HOST}/v1", api_key=alice.token, http_client=http,
            max_retries=0,
        ) as oai,
    ):  # fmt: skip
        if stream:
            async with claude.messages.stream(**MSG) as s:  # type: ignore[arg-type]
                message = await s.get_final_message()
            chunks = [c async for c in await oai.chat.completions.create(**CHAT, stream=True)]  # type: ignore[call-overload]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            message = await claude.messages.create(**MSG)  # type: ignore[arg-type]
            done = await oai.chat.completions.create(**CHAT)  # type: ignore[call-overload]
            text = done.choices[0].message.content or ""
    assert message.content[0].type == "text" and message.content[0].text
    assert text
    rows = await ended_interceptions(db, 2)
    assert [(r["provider"], r["initiator_id"]) for r in rows] == [
        ("anthropic", alice.id), ("openai", alice.id)]  # fmt: skip
    assert proxy.metric("connect_sessions_total", type="mitm") == 2  # one per host
    for provider in ("anthropic", "openai"):
        assert proxy.metric("mitm_requests_total", provider=provider) == 1
        assert proxy.metric("mitm_responses_total", code="200", provider=provider) == 1
        assert proxy.metric("inflight_mitm_requests", provider=provider) == 0


async def test_a_byok_client_keeps_its_own_key_and_the_proxy_token_authenticates_it(
    gateway: Gateway, proxy: Proxy, alice: User, db: Store
) -> None:
    async with (
        _through(proxy, alice.token) as http,
        _claude(http, "sk-ant-users-own-key") as claude,
    ):  # fmt: skip
        await claude.messages.create(**MSG)  # type: ignore[arg-type]
    (row,) = await ended_interceptions(db, 1)
    assert row["initiator_id"] == alice.id
    seen = gateway.upstream.requests[-1]
    credentials = [h for h in seen.headers if h[0] in ("authorization", "x-api-key")]
    assert credentials == [("authorization", "Bearer sk-ant-users-own-key")]  # BYOK: the user's


async def test_inflight_requests_are_counted_and_a_client_that_leaves_reaches_the_gateway(
    gateway: Gateway, proxy: Proxy, alice: User
) -> None:
    with watch_logs() as logs:
        async with _held_stream(gateway, proxy, alice.token) as events:
            await anext(events)  # the stream is open: one event arrived
            assert proxy.metric("inflight_mitm_requests", provider="anthropic") == 1
        with trio.fail_after(5):
            await gateway.upstream.disconnected.wait()  # proxy → gateway → upstream, all closed
            await logs.wait_for("proxy.mitm_closed", requests=1)
    assert proxy.metric("inflight_mitm_requests", provider="anthropic") == 0


class _SlowToAnswer(FakeUpstream):
    """An upstream that takes 30 s before its first byte; `asked` is set once a request came."""

    def __init__(self) -> None:
        super().__init__(first_byte_delay_s=30.0)
        self.asked = trio.Event()

    async def handle(self, request: RecordedRequest, receive: Receive, send: Send) -> None:
        self.asked.set()
        await super().handle(request, receive, send)


async def test_a_client_that_leaves_before_the_answer_head_reaches_the_gateway(
    nursery: trio.Nursery, database_url: str, tmp_path: Path
) -> None:
    upstream = _SlowToAnswer()
    gateway = await start_gateway(
        nursery, database_url=database_url, state_dir=tmp_path, upstream=upstream,
        extra_toml=ca_toml(tmp_path),
    )  # fmt: skip
    proxy = await start_proxy(nursery, gateway)
    with watch_logs() as logs:
        async with (
            _through(proxy, gateway.token) as http,
            _claude(http, gateway.token) as claude,
            trio.open_nursery() as calls,
        ):  # fmt: skip
            calls.start_soon(partial(claude.messages.create, **MSG))  # type: ignore[arg-type]
            with trio.fail_after(5):
                await upstream.asked.wait()  # the gateway is waiting for the upstream
            calls.cancel_scope.cancel()  # the client gives up and closes its connection
        with trio.fail_after(5):
            await upstream.disconnected.wait()  # long before the upstream would answer
            await logs.wait_for("proxy.client_left")
    assert proxy.metric("inflight_mitm_requests", provider="anthropic") == 0


def _messages_request(host: str, token: str) -> bytes:
    body = json.dumps(MSG).encode()
    return (
        f"POST /v1/messages HTTP/1.1\r\nhost: {host}\r\nx-api-key: {token}\r\n"
        f"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


async def test_a_client_that_starts_tls_before_the_200_is_served(proxy: Proxy, alice: User) -> None:
    async with await open_decrypted(proxy, ANTHROPIC_HOST, alice.token, eager=True) as tls:
        answer = await exchange(tls, _messages_request(ANTHROPIC_HOST, alice.token))
    assert answer.startswith(b"HTTP/1.1 200") and b'"type":"message"' in answer.replace(b" ", b"")


async def test_a_request_naming_another_host_than_its_connect_gets_421(
    proxy: Proxy, alice: User
) -> None:
    async with await open_decrypted(proxy, ANTHROPIC_HOST, alice.token) as tls:
        answer = await exchange(tls, _messages_request("api.openai.localhost", alice.token))
    assert answer.startswith(b"HTTP/1.1 421")
    assert proxy.metric("mitm_requests_total", provider="anthropic") == 0


@pytest.mark.parametrize(
    "head", [b"GET / HTTP/1.1\r\nhost: [x\r\n", b"GET https://[x/v1 HTTP/1.1\r\nhost: %s\r\n"]
)
async def test_a_malformed_host_or_target_gets_400_and_the_proxy_keeps_serving(
    proxy: Proxy, alice: User, head: bytes
) -> None:
    request = head.replace(b"%s", ANTHROPIC_HOST.encode()) + b"connection: close\r\n\r\n"
    async with await open_decrypted(proxy, ANTHROPIC_HOST, alice.token) as tls:
        answer = await exchange(tls, request)
    assert answer.startswith(b"HTTP/1.1 400")
    async with await open_decrypted(proxy, ANTHROPIC_HOST, alice.token) as tls:
        answer = await exchange(tls, _messages_request(ANTHROPIC_HOST, alice.token))
    assert answer.startswith(b"HTTP/1.1 200")  # one client's bad request never stops the proxy


@pytest.mark.parametrize("credential", [None, "aib_nope_nope", "wrong"])
async def test_a_provider_host_without_a_valid_proxy_token_gets_407(
    proxy: Proxy, credential: str | None
) -> None:
    headers = [] if credential is None else [(b"proxy-authorization", basic(credential))]
    answer, stream = await send_connect(proxy.address, f"{OPENAI_HOST}:443", headers)
    await stream.aclose()
    assert answer.status_code == 407
    assert dict(answer.headers)[b"proxy-authenticate"].startswith(b"Basic realm=")
    assert proxy.metric("connect_sessions_total", type="mitm") == 0


async def test_a_revoked_token_stops_opening_mitm_sessions(
    api: httpx2.AsyncClient, proxy: Proxy, alice: User
) -> None:
    ok, stream = await send_connect(
        proxy.address, f"{OPENAI_HOST}:443", [(b"proxy-authorization", basic(alice.token))]
    )
    await stream.aclose()
    assert ok.status_code == 200
    (key,) = (await api.get("/api/v2/users/alice/keys")).json()
    assert (await api.delete(f"/api/v2/users/alice/keys/{key['id']}")).status_code == 204
    with trio.fail_after(6):  # the token cache's TTL (5 s) bounds it
        while True:
            answer, stream = await send_connect(
                proxy.address, f"{OPENAI_HOST}:443", [(b"proxy-authorization", basic(alice.token))]
            )
            await stream.aclose()
            if answer.status_code == 407:
                break
            await trio.sleep(0.1)


async def test_other_hosts_are_tunnelled_and_the_client_sees_the_origins_own_certificate(
    nursery: trio.Nursery, gateway: Gateway, tmp_path: Path
) -> None:
    origin = await serve_tls_origin(nursery, tmp_path, "origin.localhost")
    proxy = await start_proxy(nursery, gateway, {
        "proxy.allowed_private_cidrs": "127.0.0.0/8",
        "proxy.allowed_ports": f"443,{origin.port}",
    })  # fmt: skip
    # Only the origin's CA is trusted, not the proxy's: a decrypted connection would fail.
    only_origin = ssl.create_default_context(cafile=str(origin.ca_file))
    async with _through(proxy, "no-credential-needed", verify=only_origin) as http:
        answer = await http.get(f"https://origin.localhost:{origin.port}/")
    assert answer.text == "hello from the origin"
    assert proxy.metric("connect_sessions_total", type="tunneled") == 1
    assert proxy.metric("connect_sessions_total", type="mitm") == 0
    async with _through(proxy, "x") as http:  # trusting only the proxy's CA: the origin's
        with pytest.raises(httpx2.ConnectError):  # certificate is not one it minted
            await http.get(f"https://origin.localhost:{origin.port}/")


async def test_tunnels_go_through_the_upstream_proxy_with_its_credentials(
    nursery: trio.Nursery, gateway: Gateway, tmp_path: Path
) -> None:
    origin = await serve_tls_origin(nursery, tmp_path, "origin.localhost")
    corporate = await serve_corporate_proxy(nursery)
    proxy = await start_proxy(nursery, gateway, {
        "proxy.allowed_private_cidrs": "127.0.0.0/8",
        "proxy.allowed_ports": f"443,{origin.port}",
        "proxy.upstream": f"http://corp:s%40cret@127.0.0.1:{corporate.port}",
    })  # fmt: skip
    only_origin = ssl.create_default_context(cafile=str(origin.ca_file))
    async with _through(proxy, "x", verify=only_origin) as http:
        answer = await http.get(f"https://origin.localhost:{origin.port}/")
    assert answer.text == "hello from the origin"
    (asked,) = corporate.seen
    assert asked.target == f"origin.localhost:{origin.port}".encode()  # the name, not the address
    assert dict(asked.headers)[b"proxy-authorization"] == basic("s@cret", user="corp")


async def test_the_tls_listener_serves_https_proxy_clients(
    nursery: trio.Nursery, gateway: Gateway, alice: User, tmp_path: Path
) -> None:
    ca_file = gateway.config.proxy.ca_cert_file
    assert ca_file is not None
    cert, key = write_leaf(ca_file, "127.0.0.1", tmp_path)
    proxy = await start_proxy(nursery, gateway, {
        "proxy.tls_listen_address": "127.0.0.1:0",
        "proxy.tls_cert_file": str(cert),
        "proxy.tls_key_file": str(key),
    })  # fmt: skip
    (address,) = proxy.running.addresses.tls
    tls = proxy.client_tls()
    through_tls = httpx2.Proxy(f"https://coder:{alice.token}@{address}", ssl_context=tls)
    async with (
        httpx2.AsyncClient(proxy=through_tls, verify=tls, trust_env=False, timeout=10) as http,
        _claude(http, alice.token) as claude,
    ):  # fmt: skip
        message = await claude.messages.create(**MSG)  # type: ignore[arg-type]
    assert message.content[0].type == "text"
    assert proxy.metric("connect_sessions_total", type="mitm") == 1


async def test_a_destination_in_a_private_range_gets_403(proxy: Proxy) -> None:
    answer, stream = await send_connect(proxy.address, "intranet.localhost:443")
    await stream.aclose()
    assert answer.status_code == 403  # to_loopback resolved it to 127.0.0.1
    assert proxy.metric("connect_sessions_total", type="tunneled") == 0


async def test_a_port_that_is_not_allowed_gets_403_before_anything_else(proxy: Proxy) -> None:
    answer, stream = await send_connect(proxy.address, f"{OPENAI_HOST}:22")
    await stream.aclose()
    assert answer.status_code == 403


async def test_every_connect_logs_under_a_connect_id_of_its_own(proxy: Proxy) -> None:
    with watch_logs() as logs:
        for target in (f"{OPENAI_HOST}:22", "intranet.localhost:443"):
            _, stream = await send_connect(proxy.address, target)
            await stream.aclose()
        refused = await logs.wait_for("proxy.refused", count=2)
    ids = [entry["connect_id"] for entry in refused]
    assert len(set(ids)) == 2 and all(uuid.UUID(i) for i in ids)
    assert [entry["status"] for entry in refused] == [403, 403]


async def test_a_provider_disabled_through_the_api_is_tunnelled_within_a_second(
    api: httpx2.AsyncClient, proxy: Proxy, alice: User
) -> None:
    auth = [(b"proxy-authorization", basic(alice.token))]
    assert proxy.metric("provider_info", provider_name="openai", provider_type="openai-compat",
                        status="enabled") == 1  # fmt: skip
    assert proxy.metric("provider_info", provider_name="switched-off", provider_type="openai",
                        status="disabled") == 1  # fmt: skip
    before = proxy.metric("providers_last_reload_success_timestamp_seconds")
    changed = await api.patch("/api/v2/ai/providers/openai", json={"enabled": False})
    assert changed.status_code == 200
    with trio.fail_after(1):  # the gateway's NOTIFY wakes the proxy's reload loop
        while not proxy.metric("provider_info", provider_name="openai",
                               provider_type="openai-compat", status="disabled"):  # fmt: skip
            await proxy.running.reloader.wait_reloaded()
    assert proxy.metric("providers_last_reload_success_timestamp_seconds") > before
    assert proxy.metric("providers_last_reload_timestamp_seconds") >= before
    answer, stream = await send_connect(proxy.address, f"{OPENAI_HOST}:443", auth)
    await stream.aclose()
    assert answer.status_code == 403  # tunnelled now: resolved to 127.0.0.1, a private address
    mitm, stream = await send_connect(proxy.address, f"{ANTHROPIC_HOST}:443", auth)
    await stream.aclose()
    assert mitm.status_code == 200  # still decrypted


async def test_the_gateway_serves_the_ca_certificate_and_never_the_key(
    gateway: Gateway, api: httpx2.AsyncClient, proxy: Proxy
) -> None:
    for prefix in ("/api/v2/aibridge", "/api/v2/ai-gateway"):
        answer = await api.get(f"{prefix}/proxy/ca-cert.pem")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/x-pem-file"
        assert "ca-cert.pem" in answer.headers["content-disposition"]
        assert answer.content == proxy.ca_file.read_bytes()
        assert b"PRIVATE" not in answer.content
    anonymous = await api.get("/api/v2/aibridge/proxy/ca-cert.pem", headers={"authorization": ""})
    assert anonymous.status_code == 401


async def test_a_certificate_file_that_also_holds_a_key_between_certificates_never_serves_it(
    gateway: Gateway, api: httpx2.AsyncClient
) -> None:
    cert_file, key_file = gateway.config.proxy.ca_cert_file, gateway.config.proxy.ca_key_file
    assert cert_file is not None and key_file is not None
    certificate, key = cert_file.read_bytes(), key_file.read_bytes()
    cert_file.write_bytes(certificate + key + certificate)  # a bundle: chain and key together
    answer = await api.get("/api/v2/aibridge/proxy/ca-cert.pem")
    assert answer.status_code == 200
    assert b"PRIVATE" not in answer.content
    assert answer.content == certificate + certificate


async def test_a_client_that_sends_no_connect_is_dropped_after_the_header_timeout(
    proxy: Proxy,
) -> None:
    host, _, port = proxy.address.rpartition(":")
    started = trio.current_time()
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        await stream.send_all(b"CONNECT api.openai.localhost:443 HTTP/1.1\r\n")  # never ends
        with trio.fail_after(5):
            assert await stream.receive_some(1024) == b""  # closed by the proxy
    assert trio.current_time() - started >= 2.0  # proxy.header_timeout in the test config


async def test_sighup_reloads_and_sigterm_drains_open_streams_then_stops(
    nursery: trio.Nursery, gateway: Gateway, alice: User, tmp_path: Path
) -> None:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
    await sock.bind(str(tmp_path / "notify.sock"))
    notifier = SdNotifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    proxy = await start_proxy(nursery, gateway, notifier=notifier, handle_signals=True)
    with trio.fail_after(5):
        assert (await sock.recv(1024)).startswith(b"READY=1")
        attempts = proxy.running.reloader.statistics().attempts
        os.kill(os.getpid(), signal.SIGHUP)
        assert (await sock.recv(1024)).startswith(b"RELOADING=1")
        assert (await sock.recv(1024)).startswith(b"READY=1")
    # (a change notification may have asked for one more meanwhile)
    assert proxy.running.reloader.statistics().attempts >= attempts + 1
    async with _held_stream(gateway, proxy, alice.token) as events:
        await anext(events)
        os.kill(os.getpid(), signal.SIGTERM)
        with trio.fail_after(5):
            assert await sock.recv(1024) == b"STOPPING=1"
        with pytest.raises(OSError):  # the listener is closed: no new CONNECT
            await send_connect(proxy.address, f"{ANTHROPIC_HOST}:443")
        await anext(events)  # the open stream still flows during the grace
        assert not proxy.stopped.is_set()
    with trio.fail_after(5):  # the client left: nothing holds the proxy any more
        await proxy.stopped.wait()
    sock.close()
