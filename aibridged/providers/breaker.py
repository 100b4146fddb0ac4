"""Circuit breakers, one per provider, endpoint and model (`[ai_gateway.circuit_breaker]`).

Closed, a breaker counts consecutive failures (an upstream 503 or 504, Anthropic's 529, or an
upstream that cannot be reached); `failure_threshold` of them open it, and the count starts over
every `interval`. Open, it refuses every call for `timeout`, then half-opens: `max_requests` calls
go through; as many successes in a row close it, one failure opens it again. A 429 is not a
failure: key failover handles it. Results of calls admitted before a state change are ignored,
so a slow call from an old state cannot flip the new one.

Times are trio's clock, so tests walk through the states under `autojump_clock`.
"""

from __future__ import annotations

import enum
import math
import uuid
from dataclasses import dataclass

import trio

from aibridged.config.tree import CircuitBreakerConfig
from aibridged.intercept.wire import WireFormat
from aibridged.metrics import MODEL_LABEL_CHARS, MODELS_PER_PROVIDER, OTHER_MODEL, Metrics
from aibridged.providers.pool import Provider
from aibridged.safe import bounded_text

_FAILURE_STATUSES = frozenset({503, 504})
_ANTHROPIC_FAILURE_STATUSES = frozenset({503, 504, 529})


class BreakerState(enum.Enum):
    CLOSED = 0.0
    HALF_OPEN = 0.5
    OPEN = 1.0


def is_failure(fmt: WireFormat, status: int) -> bool:
    """Whether an upstream answer of `status` counts against the breaker."""
    failures = _ANTHROPIC_FAILURE_STATUSES if fmt is WireFormat.ANTHROPIC else _FAILURE_STATUSES
    return status in failures


@dataclass(frozen=True, slots=True)
class Ticket:
    """One admitted call: report its result (or that it has none) exactly once."""

    breaker: CircuitBreaker
    generation: int

    def succeeded(self) -> None:
        self.breaker.report(self.generation, success=True)

    def failed(self) -> None:
        self.breaker.report(self.generation, success=False)

    def released(self) -> None:
        """The call ended without a verdict (the client left): its half-open slot is free."""
        self.breaker.report(self.generation, success=None)


class CircuitBreaker:
    def __init__(self, config: CircuitBreakerConfig, on_change: _Listener) -> None:
        self._config = config
        self._on_change = on_change
        self.state = BreakerState.CLOSED
        self._generation = 0
        self._failures = 0  # consecutive, closed
        self._successes = 0  # consecutive, half-open
        self._admitted = 0  # calls let through in this half-open generation
        self._expiry: float | None = self._closed_expiry(trio.current_time())

    def admit(self) -> Ticket | float:
        """A ticket for a call, or the seconds a refused caller should wait."""
        now = trio.current_time()
        self._advance(now)
        if self.state is BreakerState.OPEN:
            assert self._expiry is not None
            self._on_change.rejected()
            return max(1.0, math.ceil(self._expiry - now))
        if self.state is BreakerState.HALF_OPEN:
            if self._admitted >= self._config.max_requests:
                self._on_change.rejected()
                return 1.0  # the trial calls are out: their verdict comes soon
            self._admitted += 1
        return Ticket(self, self._generation)

    def report(self, generation: int, *, success: bool | None) -> None:
        now = trio.current_time()
        self._advance(now)
        if generation != self._generation:
            return
        if success is None:
            if self.state is BreakerState.HALF_OPEN:
                self._admitted -= 1
        elif success:
            self._on_success(now)
        else:
            self._on_failure(now)

    def _on_success(self, now: float) -> None:
        if self.state is BreakerState.CLOSED:
            self._failures = 0
        elif self.state is BreakerState.HALF_OPEN:
            self._successes += 1
            if self._successes >= self._config.max_requests:
                self._enter(BreakerState.CLOSED, now)

    def _on_failure(self, now: float) -> None:
        if self.state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self._config.failure_threshold:
                self._enter(BreakerState.OPEN, now)
        elif self.state is BreakerState.HALF_OPEN:
            self._enter(BreakerState.OPEN, now)

    def _advance(self, now: float) -> None:
        """The time-driven transitions: open → half-open, and the closed count's reset."""
        if self._expiry is None or now < self._expiry:
            return
        if self.state is BreakerState.OPEN:
            self._enter(BreakerState.HALF_OPEN, now)
        elif self.state is BreakerState.CLOSED:
            self._new_generation(now)

    def _enter(self, state: BreakerState, now: float) -> None:
        previous, self.state = self.state, state
        self._new_generation(now)
        self._on_change(previous, state)

    def _new_generation(self, now: float) -> None:
        self._generation += 1
        self._failures = self._successes = self._admitted = 0
        if self.state is BreakerState.OPEN:
            self._expiry = now + self._config.timeout_s
        elif self.state is BreakerState.CLOSED:
            self._expiry = self._closed_expiry(now)
        else:
            self._expiry = None  # half-open ends by results, not by time

    def _closed_expiry(self, now: float) -> float | None:
        return now + self._config.interval_s if self._config.interval_s > 0 else None


class _Listener:
    """Counts a breaker's transitions into its series."""

    def __init__(self, metrics: Metrics, labels: tuple[str, str, str]) -> None:
        self._metrics = metrics
        self._labels = labels

    def __call__(self, previous: BreakerState, state: BreakerState) -> None:
        metrics = self._metrics
        metrics.child(metrics.breaker_state, *self._labels).set(state.value)
        if state is BreakerState.OPEN:
            metrics.child(metrics.breaker_trips, *self._labels).inc()

    def rejected(self) -> None:
        self._metrics.child(self._metrics.breaker_rejects, *self._labels).inc()


@dataclass(slots=True)
class _ProviderBreakers:
    revision: str
    by_call: dict[tuple[str, str], CircuitBreaker]


class Breakers:
    """Every breaker, by provider; a provider that changed starts with closed breakers."""

    def __init__(self, config: CircuitBreakerConfig, metrics: Metrics) -> None:
        self.config = config
        self._metrics = metrics
        self._providers: dict[uuid.UUID, _ProviderBreakers] = {}

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def breaker_for(self, provider: Provider, endpoint: str, model: str) -> CircuitBreaker:
        found = self._providers.get(provider.id)
        if found is None or found.revision != provider.revision:
            if found is not None:
                self._forget(provider.name, found)
            found = self._providers[provider.id] = _ProviderBreakers(provider.revision, {})
        label = bounded_text(model, MODEL_LABEL_CHARS) if model else "unknown"
        key = (endpoint, label)
        breaker = found.by_call.get(key)
        if breaker is None:
            if len(found.by_call) >= MODELS_PER_PROVIDER:  # client-chosen names are bounded
                key = (endpoint, OTHER_MODEL)
                breaker = found.by_call.get(key)
            if breaker is None:
                listener = _Listener(self._metrics, (provider.name, *key))
                breaker = found.by_call[key] = CircuitBreaker(self.config, listener)
                self._metrics.child(self._metrics.breaker_state, provider.name, *key).set(0)
        return breaker

    def _forget(self, name: str, old: _ProviderBreakers) -> None:
        for endpoint, model in old.by_call:
            self._metrics.child(self._metrics.breaker_state, name, endpoint, model).set(0)
