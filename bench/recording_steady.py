"""What recording costs a stream whose events arrive one by one, as a provider sends them.

The saturated SSE runs (``bench.measure.measure_throughput``) replay each stream's 10 events back
to back, as fast as the fake upstream writes them. How many reads the gateway then needs per
stream depends on scheduling, not on the stream: recording's group commit releases the requests
it held in one burst, the upstream serves them together and interleaves their events, and the
recording gateway reads each stream in more pieces (3.1-4.2 reads against 1.7-2.5 without
recording, measured; bench/results/README.md, 2026-12-03). Part of what that ratio shows is the
bench's own burst, which a provider that generates tokens never produces: its events come
milliseconds apart and each is one read, with recording or without.

Here every stream comes from the steady stream (``bench.stack.STEADY``: events 20 ms apart),
with the bench's 75 KB Messages request, ``connections`` streams at a time, below saturation
(the gateway's CPU is reported: a run near 100 % would let events pile up and read together
again). Each gateway runs alone, the two alternate which goes first, and what is compared is the
gateway's CPU per stream, measured from its process's CPU time: recording's cost in throughput
is ``1 - off ÷ on`` of that (a gateway bound by its CPU serves ``1 / CPU per stream``).

The same holds for blocking JSON. The saturated JSON runs send every request to
``bench.fast_upstream``, which answers at once but one request at a time, on the CPU it shares
with the database and the load generator: recording's group commit releases the requests it
held together, they queue at that upstream together, and the recording gateway waits idle for
them (12-25 % of its time at 32 connections, against 0.5 % without recording; measured,
bench/results/README.md, 2026-12-04). ``measure_recording_delayed`` sends the bench's Chat
request to the delayed answer instead (``bench.stack.DELAYED_S`` after each request, each on
its own, as a provider works on many requests at once), with enough connections that the
gateway's CPU is what limits the rate, and compares the requests per second: that is the
throughput recording leaves. A run in which the recording gateway was less busy than
``DELAYED_SATURATED_PCT`` measured something else, and gets no verdict.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.loadgen import run_load
from bench.measure import one_load_run
from bench.stack import (
    CLIENT_CPU,
    DELAYED_S,
    STEADY,
    Api,
    Stack,
    delayed_chat_api,
    steady_stream_api,
)

SATURATED_PCT = 80.0  # a gateway busier than this reads events in batches: not comparable
DELAYED_SATURATED_PCT = 90.0  # a recording gateway less busy than this is not what limits
PATHS = ("gateway", "gateway_norec")


def measure_recording_steady(
    stack: Stack,
    *,
    generator: str,
    connections: int,
    duration_s: float,
    warmup_s: float,
    rounds: int,
) -> dict[str, Any]:
    """``rounds`` x (recording on, recording off), order swapped every other round; medians."""
    runs = _alternating_runs(stack, steady_stream_api(), "steady SSE", generator=generator,
                             connections=connections, duration_s=duration_s, warmup_s=warmup_s,
                             rounds=rounds)  # fmt: skip
    return summarize(runs, connections=connections, duration_s=duration_s)


def measure_recording_delayed(
    stack: Stack,
    *,
    generator: str,
    connections: int,
    duration_s: float,
    warmup_s: float,
    rounds: int,
) -> dict[str, Any]:
    """The delayed Chat answer: ``rounds`` x (on, off), order swapped every other round;
    medians, and req/s on ÷ off."""
    runs = _alternating_runs(stack, delayed_chat_api(), "delayed JSON", generator=generator,
                             connections=connections, duration_s=duration_s, warmup_s=warmup_s,
                             rounds=rounds)  # fmt: skip
    out = _medians(runs, connections=connections, duration_s=duration_s)
    on, off = out["gateway_rps"], out["gateway_norec_rps"]
    least_busy = min((r["cpu_pct"] for r in runs if r["path"] == "gateway"), default=0.0)
    return {
        "delay_s": DELAYED_S,
        **out,
        "recording_ratio": round(on / off, 3) if on and off else None,
        "least_busy_recording_cpu_pct": least_busy,
        "saturated": least_busy >= DELAYED_SATURATED_PCT,
    }


def _alternating_runs(
    stack: Stack,
    api: Api,
    label: str,
    *,
    generator: str,
    connections: int,
    duration_s: float,
    warmup_s: float,
    rounds: int,
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for index in range(rounds):
        for via in PATHS if index % 2 == 0 else tuple(reversed(PATHS)):
            spec = stack.spec(api, via)
            run_load(spec, generator=generator, connections=connections, duration_s=warmup_s,
                     cpu=CLIENT_CPU)  # fmt: skip
            run = one_load_run(stack, spec, generator=generator, connections=connections,
                               duration_s=duration_s)  # fmt: skip
            rps, cpu_pct = run["rps"], run["cpu_pct"][via]  # the gateway process's CPU
            runs.append({
                "path": via,
                "rps": round(rps, 1),
                "requests": run["requests"],
                "errors": sum(run["errors"].values()),
                "cpu_ms_per_request": round(10 * cpu_pct / rps, 3) if rps else None,
                "cpu_pct": cpu_pct,
                "p50_ms": run["latency_ms"].get("p50"),
            })  # fmt: skip
            print(f"  {label} {via:14} {rps:6.1f} req/s, "
                  f"{runs[-1]['cpu_ms_per_request']} ms CPU each, {cpu_pct} % busy",
                  flush=True)  # fmt: skip
    return runs


def summarize(runs: list[dict[str, Any]], *, connections: int, duration_s: float) -> dict[str, Any]:
    out = _medians(runs, connections=connections, duration_s=duration_s)
    on, off = out["gateway_cpu_ms_per_request"], out["gateway_norec_cpu_ms_per_request"]
    busiest = max((r["cpu_pct"] for r in runs), default=0.0)
    return {
        "interval_s": STEADY.interval_s,
        "deltas": STEADY.deltas,
        **out,
        # streams per CPU-second, recording on ÷ off: what recording leaves of the throughput
        "recording_ratio": round(off / on, 3) if on and off else None,
        "busiest_cpu_pct": busiest,
        "below_saturation": busiest <= SATURATED_PCT,
    }


def _medians(runs: list[dict[str, Any]], *, connections: int, duration_s: float) -> dict[str, Any]:
    def median(path: str, key: str) -> float | None:
        values = [r[key] for r in runs if r["path"] == path and r[key] is not None]
        return round(statistics.median(values), 3) if values else None

    return {
        "connections": connections,
        "duration_s": duration_s,
        "rounds": len(runs) // len(PATHS),
        "runs": runs,
        "gateway_rps": median("gateway", "rps"),
        "gateway_norec_rps": median("gateway_norec", "rps"),
        "gateway_cpu_ms_per_request": median("gateway", "cpu_ms_per_request"),
        "gateway_norec_cpu_ms_per_request": median("gateway_norec", "cpu_ms_per_request"),
        "gateway_cpu_pct": median("gateway", "cpu_pct"),
        "gateway_norec_cpu_pct": median("gateway_norec", "cpu_pct"),
        "gateway_p50_ms": median("gateway", "p50_ms"),
        "gateway_norec_p50_ms": median("gateway_norec", "p50_ms"),
        "errors": sum(r["errors"] for r in runs),
    }
