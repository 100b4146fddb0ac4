"""What tracing costs, in the hot-path bench (``python -m bench.run``).

- **Tracing on vs off**: ``gateway`` (tracing off, the default) and ``gateway_trace`` (the same,
  with ``[trace] enable = true`` exporting OTLP/HTTP to ``bench.otlp_sink`` on CPU 0) interleaved
  request by request at concurrency 1; saturated, ``gateway_trace`` runs in the same rounds as
  the other gateways.
- **Tracing off vs before tracing** (``--baseline REF``): ``gateway_base`` runs git REF's code
  (the commit before tracing, say) with the same configuration, interleaved with ``gateway``.
- **The noise floor**: ``gateway`` interleaved with itself. Tracing off counts as "within noise"
  when, for every body, |added p50 (off - baseline)| ≤ max(2 x the largest |added p50| of the
  noise pairs, ``NOISE_FLOOR_MS``).
- **The hooks alone**: the calls the data plane makes per request with tracing off, timed in this
  process (``hook_cost``).
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from typing import Any

from aibridged.auth import Principal
from aibridged.tracing import TRACING_OFF
from bench.latency import Target
from bench.measure import LATENCY_APIS, interleaved_paths
from bench.stack import HOST, Api, Stack
from bench.tables import RECORDING_LATENCY_HEADERS, paired_latency_rows, table

NOISE_FLOOR_MS = 0.02
HOOK_ITERATIONS = 200_000


def measure_tracing_latency(
    stack: Stack, apis: dict[str, Api], *, requests: int, warmup: int
) -> dict[str, Any]:
    """The pairs, each interleaved per body: {pair: {body: added_latency result}}."""
    off = stack.gateway_port
    pairs: dict[str, tuple[str, int, str, int, str]] = {}
    if stack.gateway_base is not None:
        pairs["off_vs_baseline"] = (
            "baseline",
            stack.gateway_base_port,
            "tracing_off",
            off,
            "tracing off adds",
        )
    pairs["noise"] = ("tracing_off", off, "tracing_off_again", off, "A/A differs by")
    pairs["on_vs_off"] = ("tracing_off", off, "tracing_on", stack.gateway_trace_port,
                          "tracing adds")  # fmt: skip
    out: dict[str, Any] = {}
    for pair, (first, first_port, second, second_port, says) in pairs.items():
        print(f"latency at concurrency 1, {first} and {second} interleaved:", flush=True)

        def targets(
            api: Api, a: str = first, pa: int = first_port, b: str = second, pb: int = second_port
        ) -> tuple[Target, Target]:
            raw = stack.raw(api, "gateway")
            return Target(a, HOST, pa, raw), Target(b, HOST, pb, raw)

        out[pair] = interleaved_paths(stack, apis, targets, requests=requests, warmup=warmup,
                                      stream_details=False, says=says)  # fmt: skip
    return out


def within_noise(latency: dict[str, Any]) -> dict[str, Any]:
    """The verdict on tracing off's cost against the baseline (see the module's docstring)."""
    cost, noise = latency.get("off_vs_baseline"), latency.get("noise")
    if not cost or not noise:
        return {"verdict": "n/a", "detail": "no --baseline given"}
    band = max(
        [NOISE_FLOOR_MS] + [2 * abs(r["added_ms"]["p50"]) for r in noise.values() if r["added_ms"]]
    )
    added = {name: r["added_ms"]["p50"] for name, r in cost.items() if r["added_ms"]}
    worst = max(added.values(), key=abs) if added else None
    ok = worst is not None and len(added) == len(LATENCY_APIS) and abs(worst) <= band
    return {
        "verdict": "PASS" if ok else "FAIL",
        "worst_added_p50_ms": worst,
        "noise_band_ms": round(band, 3),
        "added_p50_ms": added,
    }


def hook_cost() -> dict[str, float]:
    """ns per request of the data plane's tracing hooks with tracing off (the calls it makes on
    `TRACING_OFF` and `NO_TRACE`), against an empty loop of the same length."""
    principal = Principal(uuid.uuid4(), "bench", "member", "0123456789")
    scope = {"method": "POST", "path": "/x", "headers": []}

    def hooks(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            with TRACING_OFF.intercept(scope, None, "/x", principal) as trace:  # type: ignore[arg-type]
                with trace.creating(None):  # type: ignore[arg-type]
                    pass
                with trace.recording():
                    pass
                with trace.processing(None):  # type: ignore[arg-type]
                    trace.upstream_call(None)  # type: ignore[arg-type]
                    trace.observer(None)
        return time.perf_counter() - started

    def empty(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            pass
        return time.perf_counter() - started

    hooks(HOOK_ITERATIONS // 10)  # warm-up
    best = min(hooks(HOOK_ITERATIONS) - empty(HOOK_ITERATIONS) for _ in range(5))
    return {"ns_per_request": round(best / HOOK_ITERATIONS * 1e9, 1),
            "iterations": HOOK_ITERATIONS}  # fmt: skip


def collector_statistics(stack: Stack) -> dict[str, Any]:
    """What the local collector received from the tracing gateway, and whether the gateway said
    its span queue overflowed (the SDK's warning, in its log)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{stack.sink_port}/stats", timeout=5) as r:
            found: dict[str, Any] = json.loads(r.read())
    except (OSError, ValueError) as exc:
        found = {"error": f"{type(exc).__name__}: {exc}"}
    log = stack.gateway_trace.log_path
    text = log.read_text(errors="replace") if log is not None and log.exists() else ""
    found["queue_full_warnings"] = text.count("Queue full")
    return found


# -- the report ----------------------------------------------------------------------------------

_PAIR_TITLES = {
    "off_vs_baseline": ("baseline", "tracing_off", "before tracing (`{base}`) vs tracing off"),
    "noise": ("tracing_off", "tracing_off_again", "tracing off vs itself (the noise floor)"),
    "on_vs_off": ("tracing_off", "tracing_on", "tracing off vs tracing on (OTLP to CPU 0)"),
}


def _headers(first: str, second: str) -> tuple[str, ...]:
    names = {"off p50": f"{first} p50", "on p50": f"{second} p50"}
    return tuple(names.get(h, h) for h in RECORDING_LATENCY_HEADERS)


def tracing_section(results: dict[str, Any]) -> list[str]:
    tracing = results.get("tracing") or {}
    if not tracing:
        return []
    c = results["config"]
    lines = [
        "## Tracing off, tracing on, before tracing",
        "",
        f"Tracing on: `{c.get('gateway_trace_command', '-')}` (recording on, `[trace] enable = "
        "true`, OTLP/HTTP to `bench.otlp_sink` on CPU 0); baseline: "
        + (
            f"`{c['baseline']}` (git), `{c.get('gateway_base_command')}`"
            if c.get("baseline")
            else "none (`--baseline` not given)"
        )
        + ". Concurrency 1, interleaved request by request, same bodies.",
        "",
    ]
    for pair, latency in (tracing.get("latency") or {}).items():
        first, second, title = _PAIR_TITLES[pair]
        lines += [
            f"### {title.format(base=c.get('baseline', ''))}",
            "",
            table(_headers(first, second), paired_latency_rows(latency, first, second)),
            "",
        ]
    verdict = tracing.get("within_noise") or {}
    hooks = tracing.get("hook_cost") or {}
    lines += [
        f"Tracing off vs the baseline: **{verdict.get('verdict', 'n/a')}** (worst added p50 "
        f"{verdict.get('worst_added_p50_ms')} ms, noise band {verdict.get('noise_band_ms')} ms = "
        f"max(2 x the largest |added p50| of tracing off vs itself, {NOISE_FLOOR_MS} ms)). The "
        f"hooks alone, with tracing off: {hooks.get('ns_per_request')} ns per request (timed in "
        "the bench's process).",
        "",
    ]
    rows = [s for s in results["throughput_summary"] if "gateway_trace_rps" in s]
    if rows:
        lines += [
            "Saturated (medians of the rounds):",
            "",
            table(
                (
                    "saturated",
                    "off req/s",
                    "on req/s",
                    "on ÷ off",
                    "base req/s",
                    "off ÷ base",
                    "off CPU ms/req",
                    "on CPU ms/req",
                    "on p99 ms",
                    "errors on",
                ),
                [
                    [
                        f"{'JSON chat' if s['kind'] == 'json' else 'SSE messages'} "
                        f"c={s['connections']}",
                        s["gateway_rps"],
                        s["gateway_trace_rps"],
                        s.get("tracing_ratio"),
                        s.get("gateway_base_rps", "-"),
                        s.get("baseline_ratio", "-"),
                        s["gateway_cpu_ms_per_request"],
                        s["gateway_trace_cpu_ms_per_request"],
                        s["gateway_trace_p99_ms"],
                        s["gateway_trace_errors"],
                    ]
                    for s in rows
                ],
            ),
            "",
        ]
    sink = tracing.get("collector") or {}
    lines += [
        f"The collector received {sink.get('spans', 0):,} spans in {sink.get('exports', 0):,} "
        f"exports ({sink.get('bytes', 0):,} bytes); the tracing gateway logged "
        f"{sink.get('queue_full_warnings', 0)} span-queue-full warnings. Spans by name: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted((sink.get("spans_by_name") or {}).items()))
        + ".",
        "",
    ]
    return lines
