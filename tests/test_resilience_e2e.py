"""Key failover and the circuit breaker on a whole gateway: providers created through the API,
the official SDK as the client, a fake upstream scripted to fail."""

from __future__ import annotations

from pathlib import Path

import httpx2
import openai
import pytest
import trio
from prometheus_client import generate_latest

from tests.gateway import Gateway, start_gateway

KEY_1 = "sk-first-key-of-the-pool-0123456789"
KEY_2 = "sk-second-key-of-the-pool-0123456789"
CHAT = {"model": "gpt-demo", "messages": [{"role": "user", "content": "hello"}]}


async def _gateway(nursery: trio.Nursery, database_url: str, tmp_path: Path, toml: str) -> Gateway:
    return await start_gateway(
        nursery, database_url=database_url, state_dir=tmp_path, extra_toml=toml
    )


async def _pool_provider(gateway: Gateway) -> openai.AsyncOpenAI:
    """A provider `pool` with two keys, served once the reload picked it up."""
    headers = {"authorization": f"Bearer {gateway.token}"}
    async with httpx2.AsyncClient(base_url=gateway.url, headers=headers, timeout=10) as api:
        body = {
            "type": "openai-compat",
            "name": "pool",
            "base_url": gateway.upstream_url + "/v1",
            "api_keys": [KEY_1, KEY_2],
        }
        assert (await api.post("/api/v2/ai/providers", json=body)).status_code == 201
        for _ in range(250):  # the change is served within a second (NOTIFY, then a reload)
            if (await api.get("/api/v2/aibridge/pool/v1/models")).status_code != 404:
                break
            await trio.sleep(0.02)
        else:
            raise AssertionError("the new provider was not served within 5 s")
    return openai.AsyncOpenAI(
        base_url=gateway.base("pool") + "/v1", api_key=gateway.token, max_retries=0
    )


def _key_seen(gateway: Gateway) -> str:
    return (gateway.upstream.requests[-1].header("authorization") or "").removeprefix("Bearer ")


async def test_the_client_gets_200_from_the_second_key_when_the_first_is_rate_limited(
    nursery: trio.Nursery, database_url: str, tmp_path: Path
) -> None:
    gateway = await _gateway(nursery, database_url, tmp_path, "")
    async with await _pool_provider(gateway) as client:
        await _fail_over(gateway, client)


async def _fail_over(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    gateway.upstream.fail_next(429, headers=[("retry-after", "120")])
    reply = await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert reply.choices[0].message.content
    assert _key_seen(gateway) == KEY_2
    gateway.upstream.fail_next(429, headers=[("retry-after", "30")])
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert refused.value.response.headers["retry-after"] == "30"
    metrics = generate_latest(gateway.registry).decode()
    assert 'coder_aibridged_key_pool_state{provider="pool",state="temporary"} 2.0' in metrics
    assert KEY_1 not in metrics and KEY_2 not in metrics


async def test_an_open_breaker_answers_503_with_retry_after_to_the_sdk(
    nursery: trio.Nursery, database_url: str, tmp_path: Path
) -> None:
    toml = '[ai_gateway.circuit_breaker]\nenabled = true\nfailure_threshold = 2\ntimeout = "45s"\n'
    gateway = await _gateway(nursery, database_url, tmp_path, toml)
    async with openai.AsyncOpenAI(
        base_url=gateway.base("openai") + "/v1", api_key=gateway.token, max_retries=0
    ) as client:
        await _trip(gateway, client)


async def _trip(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    gateway.upstream.fail_next(503, times=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    sent = len(gateway.upstream.requests)
    with pytest.raises(openai.InternalServerError) as refused:
        await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert len(gateway.upstream.requests) == sent
    assert refused.value.status_code == 503
    assert refused.value.response.headers["retry-after"] == "45"
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["message"] == "circuit breaker is open"
