"""Nothing crosses users or leaves the gateway that should not: cookies, redirects, the gateway's
own token; management paths never reach a provider; a token flood does not lock out real users."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import httpx2
import pytest
import trio
import trio.testing

from aibridged.store import open_store
from aibridged.store import users as u
from tests.gateway import ANTHROPIC_KEY, OPENAI_KEY, Gateway, start_gateway

CHAT = {"model": "gpt-demo", "messages": [{"role": "user", "content": "hello"}]}
MSG = {"model": "claude-demo", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def gateway(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> Gateway:
    return await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client


async def _second_user_token(gateway: Gateway) -> str:
    async with open_store(gateway.config.database.url, pool_size=1, connect_timeout_s=5) as store:
        await u.create_user(store, username="bob")
        _, token = await u.create_token(store, "bob")
    return token


async def test_a_cookie_set_for_one_user_never_reaches_another_users_request(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    bob = await _second_user_token(gateway)
    gateway.upstream.add_headers_next(("set-cookie", "session=alice-secret; Path=/"))
    url = gateway.base("openai") + "/v1/chat/completions"
    first = await http.post(url, json=CHAT, headers={"authorization": f"Bearer {gateway.token}"})
    assert first.status_code == 200 and "alice-secret" in first.headers["set-cookie"]
    fresh = httpx2.AsyncClient(timeout=10)  # bob's own client: no cookie jar shared with alice
    async with fresh:
        for _ in range(20):  # whichever pooled connection or shard serves him
            r = await fresh.post(url, json=CHAT, headers={"authorization": f"Bearer {bob}"})
            assert r.status_code == 200
            assert gateway.upstream.requests[-1].header("cookie") is None


async def test_the_clients_own_cookies_are_not_forwarded(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    r = await http.post(
        gateway.base("openai") + "/v1/chat/completions",
        json=CHAT,
        headers={
            "authorization": f"Bearer {gateway.token}",
            "cookie": f"coder_session_token={gateway.token}; other=1",
        },
    )
    assert r.status_code == 200
    assert gateway.upstream.requests[-1].header("cookie") is None


async def test_a_redirect_is_relayed_not_followed(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    elsewhere = "http://127.0.0.1:9/v1/models"
    for url, method in (
        (gateway.base("openai") + "/v1/models", "GET"),
        (gateway.base("openai") + "/v1/chat/completions", "POST"),
    ):
        gateway.upstream.fail_next(302, b"", (("location", elsewhere),))
        before = len(gateway.upstream.requests)
        r = await http.request(
            method,
            url,
            json=CHAT if method == "POST" else None,
            headers={"authorization": f"Bearer {gateway.token}"},
        )
        assert (r.status_code, r.headers["location"]) == (302, elsewhere)
        assert len(gateway.upstream.requests) == before + 1  # one request, to the provider only


@pytest.mark.parametrize(
    ("provider", "path", "own_header"),
    [
        ("openai", "/v1/chat/completions", "authorization"),
        ("anthropic", "/v1/messages", "x-api-key"),
        ("anthropic", "/v1/messages", "authorization"),
    ],
)
async def test_the_gateway_token_never_goes_upstream_in_byok_mode(
    gateway: Gateway, http: httpx2.AsyncClient, provider: str, path: str, own_header: str
) -> None:
    """The client puts the gateway token in the BYOK header and in its own credential header
    too: it is stripped from both, and the provider key stands in for the missing credential."""
    token = gateway.token
    value = f"Bearer {token}" if own_header == "authorization" else token
    body = CHAT if provider == "openai" else MSG
    r = await http.post(
        gateway.base(provider) + path,
        json=body,
        headers={"x-coder-ai-governance-token": token, own_header: value, "x-custom": token},
    )
    assert r.status_code == 200
    sent = gateway.upstream.requests[-1]
    assert token not in repr(sent.headers)
    key = OPENAI_KEY if provider == "openai" else ANTHROPIC_KEY
    assert key in repr(sent.headers)


async def test_byok_anthropic_prefers_the_users_api_key_over_a_bearer(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    r = await http.post(
        gateway.base("anthropic") + "/v1/messages",
        json=MSG,
        headers={
            "x-coder-ai-governance-token": gateway.token,
            "x-api-key": "sk-ant-users-own-key-0000",
            "authorization": "Bearer claude-oauth-token-0000",
        },
    )
    assert r.status_code == 200
    sent = gateway.upstream.requests[-1]
    assert sent.header("x-api-key") == "sk-ant-users-own-key-0000"
    assert sent.header("authorization") is None


@pytest.mark.parametrize(
    "name", ["sessions", "interceptions", "models", "clients", "usage", "proxy"]
)
async def test_management_paths_go_to_the_control_app_not_to_a_provider(
    gateway: Gateway, http: httpx2.AsyncClient, name: str
) -> None:
    for prefix in ("/api/v2/aibridge/", "/api/v2/ai-gateway/"):
        r = await http.get(
            gateway.url + prefix + name, headers={"authorization": f"Bearer {gateway.token}"}
        )
        # The control app answers (the recordings' routes; the proxy's CA route arrives with the
        # proxy): JSON, not the data plane's plain-text "route not supported".
        assert r.status_code == (404 if name == "proxy" else 200), r.text
        assert r.headers["content-type"].startswith("application/json")
        assert not r.text.startswith("route not supported")
    assert len(gateway.upstream.requests) == 0


async def test_a_flood_of_made_up_tokens_does_not_fail_a_known_users_requests(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    url = gateway.base("anthropic") + "/v1/messages"
    assert (await http.post(url, json=MSG, headers={"x-api-key": gateway.token})).status_code == 200
    flood_statuses: list[int] = []

    async def flood(worker: int) -> None:
        async with httpx2.AsyncClient(timeout=30) as attacker:
            for i in range(40):
                bogus = f"{worker:04d}{i:06d}-" + "x" * 22
                r = await attacker.post(url, json=MSG, headers={"x-api-key": bogus})
                flood_statuses.append(r.status_code)

    statuses: list[int] = []
    async with trio.open_nursery() as nursery:
        for worker in range(15):
            nursery.start_soon(flood, worker)
        for _ in range(30):  # the real user, meanwhile, from the same address
            r = await http.post(url, json=MSG, headers={"x-api-key": gateway.token})
            statuses.append(r.status_code)
            await trio.sleep(0.02)
    assert statuses == [200] * 30
    assert set(flood_statuses) <= {403, 429} and 429 in flood_statuses  # the address got blocked
    blocked = [s for s in flood_statuses if s == 429]
    assert len(blocked) > len(flood_statuses) // 2


async def test_callers_waiting_on_a_token_lookup_hold_no_concurrency_slot(
    nursery: trio.Nursery, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made-up tokens whose lookups queue (a slow database) must not fill max_concurrency:
    authentication comes before a slot is taken."""
    from aibridged import daemon
    from aibridged.store.users import lookup_grant

    async def slow_for_strangers(store: object, token_id: str) -> object:
        grant = await lookup_grant(store, token_id)  # type: ignore[arg-type]
        if grant is None:
            await trio.sleep(3)
        return grant

    monkeypatch.setattr(daemon, "lookup_grant", slow_for_strangers)
    gw = await start_gateway(
        nursery,
        database_url=database_url,
        state_dir=tmp_path,
        flags={"ai_gateway.max_concurrency": "1", "ai_gateway.auth_failure_limit": "0"},
    )
    url = gw.base("anthropic") + "/v1/messages"
    async with httpx2.AsyncClient(timeout=30) as http, trio.open_nursery() as strangers:
        for i in range(4):
            bogus = f"{i:010d}-" + "x" * 22
            strangers.start_soon(partial(http.post, url, json=MSG, headers={"x-api-key": bogus}))
        await trio.sleep(0.5)  # they are all waiting on their lookups now
        r = await http.post(url, json=MSG, headers={"x-api-key": gw.token})
        assert r.status_code == 200
