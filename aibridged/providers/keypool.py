"""Key-pool state: which of a provider's keys may be tried now.

A provider holds up to five keys, tried in order. A key the upstream rate-limited (429) cools
down for the answer's `Retry-After` (60 s without one); a key it refused (401, 403) stays out
until the provider changes. The state lives beside the immutable provider snapshots, keyed by the
provider's id: cooldowns survive a reload that kept the keys, refusals are forgotten by any
change of the provider (an operator who fixed the key upstream patches or re-saves it).

Times are trio's clock (`trio.current_time()`), so tests drive cooldowns with `autojump_clock`.
"""

from __future__ import annotations

import enum
import hashlib
import math
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import trio
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from aibridged.providers.pool import Provider, ProviderRegistry

DEFAULT_COOLDOWN_S = 60.0
MAX_COOLDOWN_S = 24 * 3600.0  # a Retry-After beyond a day is taken as a day


class KeyState(enum.Enum):
    VALID = "valid"
    TEMPORARY = "temporary"  # cooling down after a 429
    PERMANENT = "permanent"  # refused (401/403) until the provider changes


@dataclass(slots=True)
class KeyPool:
    """The state of one provider's keys (by index; the keys themselves are never held here)."""

    keys_digest: str
    revision: str
    size: int
    cooldown_until: list[float] = field(default_factory=list)
    refused: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cooldown_until = [0.0] * self.size
        self.refused = [False] * self.size

    def state(self, index: int, now: float) -> KeyState:
        if self.refused[index]:
            return KeyState.PERMANENT
        if self.cooldown_until[index] > now:
            return KeyState.TEMPORARY
        return KeyState.VALID

    def usable(self, now: float) -> list[int]:
        """The indexes of the keys that may be tried now, in order."""
        return [i for i in range(self.size) if self.state(i, now) is KeyState.VALID]

    def cool_down(self, index: int, seconds: float, now: float) -> None:
        self.cooldown_until[index] = now + seconds

    def refuse(self, index: int) -> None:
        self.refused[index] = True

    def soonest_ready_in(self, now: float) -> float | None:
        """Seconds until the first cooling key may be tried again (None: none is cooling)."""
        waits = [
            until - now
            for i, until in enumerate(self.cooldown_until)
            if until > now and not self.refused[i]
        ]
        return min(waits) if waits else None


class KeyPools:
    """The key pools of every provider, and their `key_pool_state` gauge.

    The gauge is computed when scraped (a cooldown ends without an event), for the providers of
    the current snapshot only, so a deleted provider's series disappear with it.
    """

    def __init__(self, providers: ProviderRegistry) -> None:
        self._providers = providers
        self._pools: dict[uuid.UUID, KeyPool] = {}

    def pool_for(self, provider: Provider) -> KeyPool:
        digest = _digest(provider.keys)
        pool = self._pools.get(provider.id)
        if pool is None or pool.keys_digest != digest:
            pool = self._pools[provider.id] = KeyPool(digest, provider.revision, len(provider.keys))
        elif pool.revision != provider.revision:
            pool.revision = provider.revision  # changed, keys kept: refusals are retried
            pool.refused = [False] * pool.size
        return pool

    def states(self, now: float) -> Iterator[tuple[str, KeyState, int]]:
        """(provider name, state, number of keys in it) for each keyed provider being served."""
        live: set[uuid.UUID] = set()
        for provider in self._providers.current.providers.values():
            if not provider.keys:
                continue
            live.add(provider.id)
            pool = self.pool_for(provider)
            counts = dict.fromkeys(KeyState, 0)
            for index in range(pool.size):
                counts[pool.state(index, now)] += 1
            for state, count in counts.items():
                yield provider.name, state, count
        for gone in self._pools.keys() - live:
            del self._pools[gone]


class KeyPoolCollector(Collector):
    """`key_pool_state{provider,state}`: how many of each provider's keys are in each state."""

    def __init__(self, name: str, pools: KeyPools) -> None:
        self._name = name
        self._pools = pools

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            self._name,
            "Keys of each provider by state: valid, temporary (cooling down after a 429),"
            " permanent (refused with 401/403 until the provider changes).",
            labels=["provider", "state"],
        )
        try:
            now = trio.current_time()  # scrapes are served by the daemon's trio loop
        except RuntimeError:
            now = None  # a collect outside trio (a tool): no samples rather than wrong ones
        if now is not None:
            for provider, state, count in self._pools.states(now):
                family.add_metric([provider, state.value], count)
        yield family


def retry_after_s(value: bytes | None, *, now_wall: datetime | None = None) -> float:
    """The cooldown a `Retry-After` header asks for: delta-seconds or an HTTP date."""
    if not value:
        return DEFAULT_COOLDOWN_S
    text = value.decode("latin-1").strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return DEFAULT_COOLDOWN_S
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now_wall or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return DEFAULT_COOLDOWN_S
    return min(max(seconds, 1.0), MAX_COOLDOWN_S)  # a date in the past: try again soon


def _digest(keys: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for key in keys:
        digest.update(key.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()
