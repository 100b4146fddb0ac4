"""Key-pool failover and circuit breakers, through the real upstream client against a fake
upstream that speaks the real wire formats. Time stands still (`mock_clock`, rate 0) and moves
only when a test jumps it, so cooldowns and breaker timeouts are exact."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry
from trio.testing import MockClock

from aibridged.config.tree import CircuitBreakerConfig
from aibridged.demo import serve_demo_upstream
from aibridged.errors import CircuitOpen, KeysExhausted, UpstreamStatusError
from aibridged.intercept.routes import UpstreamCall
from aibridged.intercept.upstream import UpstreamClient, UpstreamSettings, open_upstream_client
from aibridged.metrics import Metrics
from aibridged.providers.attempts import Attempts, Resilience, open_upstream
from aibridged.providers.keypool import retry_after_s
from aibridged.providers.pool import Provider, ProviderRegistry, build_provider, provider_set
from tests.fakes import FakeUpstream

KEYS = ("sk-pool-key-one-0123456789", "sk-pool-key-two-0123456789", "sk-pool-key-3-0123456789")
CHAT = {"model": "gpt-demo", "messages": [{"role": "user", "content": "hello"}]}
MSG = {"model": "claude-demo", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
BREAKER = CircuitBreakerConfig(
    enabled=True, failure_threshold=3, interval_s=10.0, timeout_s=30.0, max_requests=2
)
NO_BREAKER = replace(BREAKER, enabled=False)


class Bench:
    """One provider behind the real upstream client, with its resilience state."""

    def __init__(self, upstream: FakeUpstream, url: str, client: UpstreamClient) -> None:
        self.upstream, self.url, self.client = upstream, url, client
        self.metrics = Metrics(CollectorRegistry(), process_metrics=False)
        self.registry = ProviderRegistry(provider_set([]))
        self.resilience = Resilience(NO_BREAKER, self.metrics, self.registry)
        self.provider = self.serve(KEYS)

    def serve(self, keys: tuple[str, ...], type_name: str = "openai-compat", **kw: Any) -> Provider:
        base = self.url + ("/v1" if type_name == "openai-compat" else "")
        provider = build_provider(
            name="pool", type_name=type_name, base_url=base, keys=keys, id=_ID, **kw
        )
        assert not provider.error, provider.error
        self.registry.swap(provider_set([provider]))
        self.provider = provider
        return provider

    def with_breaker(self, config: CircuitBreakerConfig = BREAKER) -> None:
        self.metrics = Metrics(CollectorRegistry(), process_metrics=False)
        self.resilience = Resilience(config, self.metrics, self.registry)

    async def call(self, body: dict[str, Any] = CHAT) -> tuple[int, str]:
        """(status, the key the upstream saw last): 200 for an answer, else the error's."""
        path = "/v1/messages" if "max_tokens" in body else "/v1/chat/completions"
        route = self.provider.route("POST", path)
        assert route is not None
        call = UpstreamCall(
            method="POST",
            route=route,
            query=b"",
            headers=[(b"content-type", b"application/json")],
            body=json.dumps(body).encode(),
            byok=False,
        )
        try:
            response = await open_upstream(
                self.client, self.provider, call, Attempts(), self.resilience, body["model"]
            )
        except UpstreamStatusError as exc:
            self.last_error = exc
            return exc.status, self.last_key()
        await response.read(1 << 20)
        await response.aclose()
        return response.status, self.last_key()

    def last_key(self) -> str:
        request = self.upstream.requests[-1]
        value = request.header("authorization") or request.header("x-api-key") or ""
        return value.removeprefix("Bearer ")

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value("coder_aibridged_" + name, labels)


_ID = build_provider(name="pool", type_name="openai", base_url="", keys=KEYS[:1]).id


@pytest.fixture
async def bench(nursery: trio.Nursery, mock_clock: MockClock) -> AsyncIterator[Bench]:
    upstream = FakeUpstream()
    url = await nursery.start(serve_demo_upstream, upstream)
    async with open_upstream_client(UpstreamSettings()) as client:
        yield Bench(upstream, url, client)


def _retry_after(bench: Bench) -> str | None:
    found = bench.last_error.header(b"retry-after")
    return found.decode() if found is not None else None


async def test_a_rate_limited_key_cools_down_and_the_next_key_serves(
    bench: Bench, mock_clock: MockClock
) -> None:
    bench.upstream.fail_next(429, headers=[("retry-after", "20")])
    assert await bench.call() == (200, KEYS[1])
    assert len(bench.upstream.requests) == 2
    assert await bench.call() == (200, KEYS[1])  # the first key is still cooling down
    assert bench.sample("key_pool_state", provider="pool", state="temporary") == 1
    mock_clock.jump(20)
    assert await bench.call() == (200, KEYS[0])  # cooled down: first again
    assert bench.sample("key_pool_state", provider="pool", state="valid") == 3
    labels = {"provider": "pool", "key_index": "1", "reason": "rate_limited"}
    assert bench.sample("key_pool_state_transitions_total", **labels) == 1


async def test_every_key_rate_limited_answers_429_with_the_soonest_retry_after(
    bench: Bench, mock_clock: MockClock
) -> None:
    for seconds in ("50", "7", "30"):
        bench.upstream.fail_next(429, headers=[("retry-after", seconds)])
    assert (await bench.call())[0] == 429
    assert isinstance(bench.last_error, KeysExhausted)
    assert _retry_after(bench) == "7"
    body = json.loads(bench.last_error.body)
    assert (
        body["error"]["type"] == "rate_limit_exceeded"
        and "rate limited" in body["error"]["message"]
    )
    sent = len(bench.upstream.requests)
    mock_clock.jump(3)
    assert (await bench.call())[0] == 429  # no key usable: nothing goes upstream
    assert len(bench.upstream.requests) == sent
    assert _retry_after(bench) == "4"
    assert bench.sample("key_pool_exhaustions_total", provider="pool", outcome="rate_limited") == 2
    mock_clock.jump(4)
    assert await bench.call() == (200, KEYS[1])


async def test_a_refused_key_is_skipped_until_the_provider_changes(bench: Bench) -> None:
    bench.upstream.fail_next(401)
    assert await bench.call() == (200, KEYS[1])
    for _ in range(3):
        assert await bench.call() == (200, KEYS[1])
    assert bench.sample("key_pool_state", provider="pool", state="permanent") == 1
    bench.serve(KEYS, display_name="same keys, same revision")  # not a change of what serves
    assert await bench.call() == (200, KEYS[1])
    bench.serve(KEYS, settings={"note": "patched"})  # patched: the refused key is tried again
    assert await bench.call() == (200, KEYS[0])


async def test_cooldowns_survive_a_reload_that_kept_the_keys(
    bench: Bench, mock_clock: MockClock
) -> None:
    bench.upstream.fail_next(429, headers=[("retry-after", "60")])
    assert await bench.call() == (200, KEYS[1])
    bench.serve(KEYS, settings={"note": "patched"})
    assert await bench.call() == (200, KEYS[1])  # still cooling
    bench.serve((KEYS[0], KEYS[2]))  # the keys changed: a new pool
    assert await bench.call() == (200, KEYS[0])


async def test_server_errors_and_unreachable_upstreams_move_to_the_next_key(
    bench: Bench,
) -> None:
    bench.upstream.fail_next(503)
    bench.upstream.fail_next(500)
    assert await bench.call() == (200, KEYS[2])
    assert bench.sample("key_pool_state", provider="pool", state="valid") == 3  # no state kept
    bench.upstream.fail_next(502, times=3)
    status, _ = await bench.call()
    assert status == 502 and isinstance(bench.last_error, KeysExhausted)
    message = json.loads(bench.last_error.body)["error"]["message"]
    assert message == (
        'no key of provider "pool" could serve the request'
        " (key 1: status 502; key 2: status 502; key 3: status 502)"
    )
    assert bench.sample("key_pool_exhaustions_total", provider="pool", outcome="failed") == 1
    assert bench.sample("key_pool_failover_attempts_count", provider="pool") == 2
    assert bench.sample("key_pool_failover_attempts_sum", provider="pool") == 6


async def test_the_requests_own_errors_are_not_retried_with_other_keys(bench: Bench) -> None:
    bench.upstream.fail_next(400)
    assert await bench.call() == (400, KEYS[0])
    assert len(bench.upstream.requests) == 1
    assert not isinstance(bench.last_error, KeysExhausted)


async def test_a_single_key_relays_its_own_error_then_cools_down(
    bench: Bench, mock_clock: MockClock
) -> None:
    bench.serve(KEYS[:1])
    bench.upstream.fail_next(429, headers=[("retry-after", "5")])
    assert await bench.call() == (429, KEYS[0])
    assert not isinstance(bench.last_error, KeysExhausted)  # the upstream's own answer
    assert _retry_after(bench) == "5"
    sent = len(bench.upstream.requests)
    assert (await bench.call())[0] == 429
    assert len(bench.upstream.requests) == sent
    mock_clock.jump(5)
    assert await bench.call() == (200, KEYS[0])


async def test_the_breaker_opens_refuses_half_opens_and_closes(
    bench: Bench, mock_clock: MockClock
) -> None:
    bench.serve(KEYS[:1])
    bench.with_breaker()
    labels = {"provider": "pool", "endpoint": "/v1/chat/completions", "model": "gpt-demo"}
    bench.upstream.fail_next(503, times=3)
    for _ in range(3):
        assert (await bench.call())[0] == 503
    assert bench.sample("circuit_breaker_state", **labels) == 1
    assert bench.sample("circuit_breaker_trips_total", **labels) == 1
    sent = len(bench.upstream.requests)
    assert (await bench.call())[0] == 503
    refused = bench.last_error
    assert isinstance(refused, CircuitOpen) and len(bench.upstream.requests) == sent
    assert _retry_after(bench) == "30"
    body = json.loads(refused.body)["error"]
    assert (body["message"], body["type"], body["code"]) == (
        "circuit breaker is open",
        "server_error",
        "service_unavailable",
    )
    mock_clock.jump(12)
    await bench.call()
    assert _retry_after(bench) == "18"
    assert bench.sample("circuit_breaker_rejects_total", **labels) == 2
    mock_clock.jump(18)
    assert (await bench.call())[0] == 200  # half-open: a trial call goes through
    assert bench.sample("circuit_breaker_state", **labels) == 0.5
    assert (await bench.call())[0] == 200  # max_requests successes in a row: closed
    assert bench.sample("circuit_breaker_state", **labels) == 0


async def test_a_half_open_failure_opens_again_and_other_models_are_apart(
    bench: Bench, mock_clock: MockClock
) -> None:
    bench.serve(KEYS[:1])
    bench.with_breaker()
    bench.upstream.fail_next(504, times=3)
    for _ in range(3):
        await bench.call()
    other = {**CHAT, "model": "gpt-other"}
    assert (await bench.call(other))[0] == 200  # its own breaker: closed
    mock_clock.jump(30)
    bench.upstream.fail_next(503)
    assert (await bench.call())[0] == 503 and not isinstance(bench.last_error, CircuitOpen)
    assert (await bench.call())[0] == 503 and isinstance(bench.last_error, CircuitOpen)
    assert _retry_after(bench) == "30"


async def test_failures_must_be_consecutive_and_within_the_interval(
    bench: Bench, mock_clock: MockClock
) -> None:
    bench.serve(KEYS[:1])
    bench.with_breaker()
    for _ in range(2):
        bench.upstream.fail_next(503, times=2)
        await bench.call()
        await bench.call()
        assert (await bench.call())[0] == 200  # a success resets the count
    bench.upstream.fail_next(503, times=2)
    await bench.call()
    await bench.call()
    mock_clock.jump(10)  # the interval ends: the count starts over
    bench.upstream.fail_next(503)
    await bench.call()
    assert (await bench.call())[0] == 200
    labels = {"provider": "pool", "endpoint": "/v1/chat/completions", "model": "gpt-demo"}
    assert bench.sample("circuit_breaker_trips_total", **labels) is None


async def test_anthropic_overload_trips_the_breaker_in_anthropic_shape(
    bench: Bench, mock_clock: MockClock
) -> None:
    bench.serve(KEYS[:1], type_name="anthropic")
    bench.with_breaker(replace(BREAKER, failure_threshold=1))
    bench.upstream.fail_next(529)
    assert (await bench.call(MSG))[0] == 529
    assert (await bench.call(MSG))[0] == 503
    body = json.loads(bench.last_error.body)
    assert body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "circuit breaker is open"},
    }


async def test_a_429_is_not_a_breaker_failure(bench: Bench, mock_clock: MockClock) -> None:
    bench.serve(KEYS[:1])
    bench.with_breaker(replace(BREAKER, failure_threshold=1))
    bench.upstream.fail_next(429, headers=[("retry-after", "1")])
    assert (await bench.call())[0] == 429
    mock_clock.jump(1)
    assert (await bench.call())[0] == 200


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 60.0),
        (b"12", 12.0),
        (b"0", 1.0),
        (b"soon", 60.0),
        (b"inf", 60.0),
        (b"99999999", 86400.0),
        (b"Wed, 02 Dec 2026 10:00:30 GMT", 30.0),
    ],
)
def test_retry_after_is_seconds_or_a_date(header: bytes | None, seconds: float) -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
    assert retry_after_s(header, now_wall=now) == seconds
