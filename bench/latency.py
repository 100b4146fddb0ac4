"""Concurrency-1 measurements, direct and through the gateway interleaved request by request.

Each pair sends the same body to the upstream directly and through the gateway, alternating which
goes first, on two keep-alive connections, with the garbage collector off while sampling. Both
paths pay the same client cost, so the difference is the gateway's.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.httpclient import Connection, Timed


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), ``q`` in [0, 100]."""
    if not sorted_values:
        return math.nan
    rank = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/mean/max of seconds, in milliseconds (3 decimals)."""
    ordered = sorted(values_s)
    if not ordered:
        return {}
    out = {f"p{q:g}": percentile(ordered, q) * 1000 for q in (50, 90, 99, 99.9)}
    out["mean"] = sum(ordered) / len(ordered) * 1000
    out["min"] = ordered[0] * 1000
    out["max"] = ordered[-1] * 1000
    return {key: round(value, 3) for key, value in out.items()}


@dataclass(frozen=True, slots=True)
class Target:
    """Where one path sends its request."""

    name: str
    host: str
    port: int
    request: bytes  # complete raw request, headers and body


Check = Callable[[Timed], bool]


@dataclass(slots=True)
class PathSamples:
    total_s: list[float] = field(default_factory=list)
    first_byte_s: list[float] = field(default_factory=list)
    first_event_s: list[float] = field(default_factory=list)
    errors: int = 0
    reconnects: int = 0


def interleaved(
    direct: Target,
    gateway: Target,
    *,
    requests: int,
    warmup: int,
    check: Check,
    watch_events: bool = False,
) -> tuple[PathSamples, PathSamples, int]:
    """``requests`` timed exchanges per path after ``warmup`` untimed pairs (``direct`` is the
    first path, the baseline: the upstream, or the gateway with recording off).

    Returns the samples of both paths and how many pairs had byte-identical bodies.
    """
    connections = [Connection(t.host, t.port) for t in (direct, gateway)]
    samples = (PathSamples(), PathSamples())
    identical = 0
    try:
        for _ in range(warmup):
            for target, connection in zip((direct, gateway), connections, strict=True):
                connection.request(target.request, watch_events=watch_events)
        gc.collect()
        gc.disable()
        for index in range(requests):
            order = (0, 1) if index % 2 == 0 else (1, 0)
            bodies: list[bytes] = [b"", b""]
            for which in order:
                target = (direct, gateway)[which]
                timed = connections[which].request(target.request, watch_events=watch_events)
                bodies[which] = timed.body
                path = samples[which]
                if not check(timed):
                    path.errors += 1
                    continue
                path.total_s.append(timed.total_s)
                path.first_byte_s.append(timed.first_byte_s)
                if timed.first_event_s is not None:
                    path.first_event_s.append(timed.first_event_s)
            identical += bodies[0] == bodies[1]
    finally:
        gc.enable()
        for path, connection in zip(samples, connections, strict=True):
            path.reconnects = connection.reconnects
            connection.close()
    return samples[0], samples[1], identical


def paired_difference_ms(gateway: Sequence[float], direct: Sequence[float]) -> dict[str, float]:
    """Percentiles of per-pair (gateway - direct), when both lists line up."""
    diffs = [g - d for g, d in zip(gateway, direct, strict=False)]
    return summary_ms(diffs)


def added_latency(
    direct: PathSamples,
    gateway: PathSamples,
    *,
    metric: str = "total_s",
    via: str = "gateway",
    base: str = "direct",
) -> dict[str, Any]:
    """Both paths' summaries, the difference of their percentiles, and the paired differences.
    ``via`` names the second path in the keys (``gateway_ms``, or ``litellm_ms`` for LiteLLM),
    ``base`` the first (``direct_ms``; ``recording_off_ms`` for recording on vs off)."""
    d: list[float] = getattr(direct, metric)
    g: list[float] = getattr(gateway, metric)
    ds, gs = summary_ms(d), summary_ms(g)
    return {
        "samples": {base: len(d), via: len(g)},
        "errors": {base: direct.errors, via: gateway.errors},
        "reconnects": {base: direct.reconnects, via: gateway.reconnects},
        f"{base}_ms": ds,
        f"{via}_ms": gs,
        "added_ms": {
            key: round(gs[key] - ds[key], 3) for key in ("p50", "p90", "p99", "p99.9", "mean")
        }
        if gs and ds
        else {},
        "paired_diff_ms": paired_difference_ms(g, d)
        if direct.errors == 0 and gateway.errors == 0
        else {},
    }
