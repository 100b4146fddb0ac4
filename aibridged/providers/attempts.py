"""Opening a provider's upstream answer: the attempts a provider type makes for one call.

Each attempt gets its credential from the provider type and is built by it (`ProviderFamily`), so
what varies by vendor stays with the vendor. Nothing reaches the client until an attempt has
succeeded, which is what lets a call move to the provider's next key (`providers/keypool.py`)
and lets the circuit breaker refuse it outright (`providers/breaker.py`).

Key failover walks a provider's keys in order: a 429 cools the key down and moves on, a 401 or
403 takes the key out until the provider changes and moves on, a 5xx or an unreachable upstream
moves on; any other error is the request's own and goes back to the client at once. When every
key is out, the client gets 429 with the soonest `Retry-After` if some key is only cooling down,
else 502. A provider with a single key relays that key's own error instead, as a plain proxy
would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import structlog
import trio

from aibridged.config.tree import CircuitBreakerConfig
from aibridged.errors import (
    CircuitOpen,
    KeysExhausted,
    UpstreamConnectError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from aibridged.intercept.attempt import open_attempt
from aibridged.intercept.routes import UpstreamCall
from aibridged.intercept.shapes import error_body
from aibridged.intercept.upstream import ExchangeTap, UpstreamClient, UpstreamResponse
from aibridged.intercept.wire import WireFormat
from aibridged.metrics import Metrics
from aibridged.providers.breaker import Breakers, Ticket, is_failure
from aibridged.providers.family import Credential
from aibridged.providers.keypool import KeyPool, KeyPoolCollector, KeyPools, retry_after_s
from aibridged.providers.pool import Provider, ProviderRegistry

log = structlog.get_logger("aibridged.providers")

_JSON = (b"content-type", b"application/json")
_REFUSED_REASONS = {401: "unauthorized", 403: "forbidden"}


@dataclass(slots=True)
class Attempts:
    """What the attempts of one call used, for the log line and the record."""

    count: int = 0
    credential: Credential | None = None  # of the last attempt
    # Gives each attempt a tap of its own (API dumps: a pair of files per attempt); None: off.
    new_tap: Callable[[], ExchangeTap] | None = None


class Resilience:
    """The per-provider runtime state the attempts consult: key pools and circuit breakers."""

    def __init__(
        self, breaker_config: CircuitBreakerConfig, metrics: Metrics, providers: ProviderRegistry
    ) -> None:
        self.breakers = Breakers(breaker_config, metrics)
        self.keys = KeyPools(providers)
        self.metrics = metrics
        metrics.registry.register(KeyPoolCollector(metrics.key_pool_state_name, self.keys))


async def open_upstream(
    client: UpstreamClient,
    provider: Provider,
    call: UpstreamCall,
    attempts: Attempts,
    resilience: Resilience,
    model: str = "",
) -> UpstreamResponse:
    """A successful upstream answer for `call`; raises the last attempt's `UpstreamError`."""
    breakers = resilience.breakers
    if not breakers.enabled or not call.route.intercepted:
        return await _open_with_keys(client, provider, call, attempts, resilience)
    breaker = breakers.breaker_for(provider, call.route.pattern, model)
    ticket = breaker.admit()
    if not isinstance(ticket, Ticket):
        raise _circuit_open(call.route.wire_format, ticket)
    try:
        response = await _open_with_keys(client, provider, call, attempts, resilience)
    except UpstreamError as exc:
        ticket.failed() if _breaker_failure(call.route.wire_format, exc) else ticket.succeeded()
        raise
    except BaseException:
        ticket.released()  # cancelled (the client left): no verdict on the upstream
        raise
    ticket.succeeded()
    return response


async def _open_with_keys(
    client: UpstreamClient,
    provider: Provider,
    call: UpstreamCall,
    attempts: Attempts,
    resilience: Resilience,
) -> UpstreamResponse:
    family = provider.family
    credential = family.credential(provider, call)
    if credential.kind != "centralized" or not provider.keys:
        return await _attempt(client, provider, call, attempts, credential)
    pool = resilience.keys.pool_for(provider)
    walk = _KeyWalk(provider, pool, resilience)
    for index in pool.usable(trio.current_time()):
        credential = family.key_credential(provider.keys[index])
        try:
            response = await _attempt(client, provider, call, attempts, credential)
        except (UpstreamStatusError, UpstreamConnectError) as exc:
            walk.failed(index, exc)  # raises when no other key would fare better
            continue
        walk.done(attempts.count)
        return response
    raise walk.exhausted(call.route.wire_format, attempts.count)


async def _attempt(
    client: UpstreamClient,
    provider: Provider,
    call: UpstreamCall,
    attempts: Attempts,
    credential: Credential,
) -> UpstreamResponse:
    attempts.count += 1
    attempts.credential = credential
    request = provider.family.build_request(provider, call, credential)
    request.before_send = call.before_send
    if attempts.new_tap is not None:
        request.tap = attempts.new_tap()
    return await open_attempt(client, request, call.route.wire_format)


class _KeyWalk:
    """What one call's walk over the keys learned, and the answer when every key is out."""

    def __init__(self, provider: Provider, pool: KeyPool, resilience: Resilience) -> None:
        self._provider = provider
        self._pool = pool
        self._metrics = resilience.metrics
        self._failures: list[str] = []
        self._upstream_failed = False

    def failed(self, index: int, exc: UpstreamStatusError | UpstreamConnectError) -> None:
        status = exc.status
        if isinstance(exc, UpstreamStatusError) and status < 500 and status != 429:
            if status not in _REFUSED_REASONS:
                raise exc  # the request's own fault: another key would get the same answer
            self._pool.refuse(index)
            self._taken_out(index, _REFUSED_REASONS[status], exc)
        elif status == 429 and isinstance(exc, UpstreamStatusError):
            seconds = retry_after_s(exc.header(b"retry-after"))
            self._pool.cool_down(index, seconds, trio.current_time())
            self._taken_out(index, "rate_limited", exc, cooldown_s=seconds)
        else:
            self._upstream_failed = True
            log.warning("provider.key_failover", provider=self._provider.name,
                        key_index=index + 1, error=str(exc))  # fmt: skip
        self._failures.append(f"key {index + 1}: {_describe(exc)}")
        if len(self._provider.keys) == 1:
            raise exc  # a single key: its own answer is the most useful one

    def _taken_out(
        self, index: int, reason: str, exc: UpstreamError, cooldown_s: float | None = None
    ) -> None:
        name = self._provider.name
        self._metrics.child(self._metrics.key_pool_transitions, name, str(index + 1), reason).inc()
        log.warning("provider.key_out", provider=name, key_index=index + 1, reason=reason,
                    cooldown_s=cooldown_s, error=str(exc))  # fmt: skip

    def done(self, count: int) -> None:
        name = self._provider.name
        self._metrics.child(self._metrics.key_pool_failover_attempts, name).observe(count)

    def exhausted(self, fmt: WireFormat, count: int) -> KeysExhausted:
        name = self._provider.name
        self.done(count)
        wait = self._pool.soonest_ready_in(trio.current_time())
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            self._metrics.child(self._metrics.key_pool_exhaustions, name, "rate_limited").inc()
            message = f'every key of provider "{name}" is rate limited: retry in {seconds} s'
            headers = [_JSON, (b"retry-after", str(seconds).encode())]
            body = error_body(fmt, 429, message, "rate_limit_exceeded")
            return KeysExhausted(429, body, headers, message, upstream_failed=self._upstream_failed)
        self._metrics.child(self._metrics.key_pool_exhaustions, name, "failed").inc()
        tried = "; ".join(self._failures) or "every key was refused (401/403) earlier"
        message = f'no key of provider "{name}" could serve the request ({tried})'
        body = error_body(fmt, 502, message)
        return KeysExhausted(502, body, [_JSON], message, upstream_failed=self._upstream_failed)


def _describe(exc: UpstreamError) -> str:
    if isinstance(exc, UpstreamStatusError):
        return f"status {exc.status}"
    return "unreachable"


def _breaker_failure(fmt: WireFormat, exc: UpstreamError) -> bool:
    if isinstance(exc, KeysExhausted):
        return exc.upstream_failed
    if isinstance(exc, UpstreamStatusError):
        return is_failure(fmt, exc.status)
    return isinstance(exc, (UpstreamConnectError, UpstreamTimeout))


def _circuit_open(fmt: WireFormat, retry_after_s: float) -> CircuitOpen:
    seconds = str(max(1, math.ceil(retry_after_s))).encode()
    message = "circuit breaker is open"
    body = error_body(fmt, 503, message, "service_unavailable")
    return CircuitOpen(503, body, [_JSON, (b"retry-after", seconds)], message)
