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
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.loadgen import run_load
from bench.measure import one_load_run
from bench.stack import CLIENT_CPU, STEADY, Stack, steady_stream_api

SATURATED_PCT = 80.0  # a gateway busier than this reads events in batches: not comparable
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
    api = steady_stream_api()
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
            print(f"  steady SSE {via:14} {rps:6.1f} req/s, "
                  f"{runs[-1]['cpu_ms_per_request']} ms CPU each, {cpu_pct} % busy",
                  flush=True)  # fmt: skip
    return summarize(runs, connections=connections, duration_s=duration_s)


def summarize(runs: list[dict[str, Any]], *, connections: int, duration_s: float) -> dict[str, Any]:
    def median(path: str, key: str) -> float | None:
        values = [r[key] for r in runs if r["path"] == path and r[key] is not None]
        return round(statistics.median(values), 3) if values else None

    on, off = median("gateway", "cpu_ms_per_request"), median("gateway_norec", "cpu_ms_per_request")
    busiest = max((r["cpu_pct"] for r in runs), default=0.0)
    return {
        "interval_s": STEADY.interval_s,
        "deltas": STEADY.deltas,
        "connections": connections,
        "duration_s": duration_s,
        "rounds": len(runs) // len(PATHS),
        "runs": runs,
        "gateway_rps": median("gateway", "rps"),
        "gateway_norec_rps": median("gateway_norec", "rps"),
        "gateway_cpu_ms_per_request": on,
        "gateway_norec_cpu_ms_per_request": off,
        "gateway_cpu_pct": median("gateway", "cpu_pct"),
        "gateway_norec_cpu_pct": median("gateway_norec", "cpu_pct"),
        "gateway_p50_ms": median("gateway", "p50_ms"),
        "gateway_norec_p50_ms": median("gateway_norec", "p50_ms"),
        "errors": sum(r["errors"] for r in runs),
        # streams per CPU-second, recording on ÷ off: what recording leaves of the throughput
        "recording_ratio": round(off / on, 3) if on and off else None,
        "busiest_cpu_pct": busiest,
        "below_saturation": busiest <= SATURATED_PCT,
    }
