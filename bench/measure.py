"""The measurements: relay check, concurrency-1 latency, saturated throughput, py-spy profiles."""

from __future__ import annotations

import shlex
import statistics
import threading
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from bench.httpclient import Connection, Timed
from bench.latency import Target, added_latency, interleaved
from bench.loadgen import LoadResult, LoadSpec, run_load
from bench.procs import (
    CpuSampler,
)
from bench.profile import py_spy_path, record, summarize
from bench.stack import CLIENT_CPU, HOST, Api, Stack, relative, relative_cmd, response_ok


def check_relay(stack: Stack, apis: dict[str, Api]) -> dict[str, Any]:
    """One request per API on both paths: both must succeed; are the bodies byte-identical?"""
    out: dict[str, Any] = {}
    for api in apis.values():
        results: list[Timed] = []
        for gateway, port in ((False, stack.upstream_port), (True, stack.gateway_port)):
            connection = Connection(HOST, port)
            try:
                results.append(
                    connection.request(api.raw(port, gateway=gateway, token=stack.token))
                )
            finally:
                connection.close()
        direct, through = results
        if not (response_ok(direct, stream=api.stream) and response_ok(through, stream=api.stream)):
            raise RuntimeError(
                f"{api.name}: direct {direct.status}, gateway {through.status}: "
                f"{through.body[:300]!r}"
            )
        out[api.name] = {"bytes": len(through.body), "identical": direct.body == through.body}
    return out


def _percentiles_only(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k.endswith("_ms")}


def measure_latency(
    stack: Stack, apis: dict[str, Api], *, requests: int, warmup: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("chat", "messages", "messages_stream"):
        api = apis[name]
        up, gw = stack.upstream_port, stack.gateway_port
        direct = Target("direct", HOST, up, api.raw(up, gateway=False, token=stack.token))
        gateway = Target("gateway", HOST, gw, api.raw(gw, gateway=True, token=stack.token))
        started = time.monotonic()
        sampler = CpuSampler([stack.gateway, stack.upstream])
        sampler.start()
        d, g, identical = interleaved(
            direct,
            gateway,
            requests=requests,
            warmup=warmup,
            check=partial(response_ok, stream=api.stream),
            watch_events=api.stream,
        )
        # For streams the headline is the time to the first complete SSE event.
        result = added_latency(d, g, metric="first_event_s" if api.stream else "total_s")
        result["body_bytes"] = len(api.body)
        result["identical_bodies"] = identical
        result["seconds"] = round(time.monotonic() - started, 1)
        result["cpu_pct"] = sampler.stop()
        if api.stream:
            result["first_byte"] = _percentiles_only(added_latency(d, g, metric="first_byte_s"))
            result["whole_stream"] = _percentiles_only(added_latency(d, g, metric="total_s"))
        out[name] = result
        added = result["added_ms"]
        print(
            f"  {name:16} added p50 {added['p50']:.3f} ms, p99 {added['p99']:.3f} ms "
            f"({result['seconds']:.0f} s)",
            flush=True,
        )
    return out


def _one_load_run(
    stack: Stack, spec: LoadSpec, *, generator: str, connections: int, duration_s: float
) -> dict[str, Any]:
    sampler = CpuSampler([stack.gateway, stack.upstream])
    sampler.start()
    result = run_load(
        spec, generator=generator, connections=connections, duration_s=duration_s, cpu=CLIENT_CPU
    )
    cpu = sampler.stop()
    return {
        **result.as_dict(),
        "cpu_pct": cpu,
        "gateway_rss_kb_after": stack.gateway.memory().rss_kb,
    }


def measure_throughput(
    stack: Stack,
    apis: dict[str, Api],
    *,
    generator: str,
    connections: Sequence[int],
    duration_s: float,
    warmup_s: float,
    rounds: int,
) -> list[dict[str, Any]]:
    """For each load and connection count, ``rounds`` x (direct, gateway), each after a warm-up."""
    runs: list[dict[str, Any]] = []
    for kind, api in (("json", apis["chat"]), ("sse", apis["messages_stream"])):
        for conns in connections:
            for round_index in range(1, rounds + 1):
                for path in ("direct", "gateway"):
                    port = stack.gateway_port if path == "gateway" else stack.upstream_port
                    spec = api.spec(port, gateway=path == "gateway", token=stack.token)
                    run_load(
                        spec,
                        generator=generator,
                        connections=conns,
                        duration_s=warmup_s,
                        cpu=CLIENT_CPU,
                    )
                    run = _one_load_run(
                        stack, spec, generator=generator, connections=conns, duration_s=duration_s
                    )
                    runs.append(
                        {
                            "kind": kind,
                            "connections": conns,
                            "round": round_index,
                            "path": path,
                            **run,
                        }
                    )
                    errors = sum(run["errors"].values())
                    print(
                        f"  {kind} c={conns} round {round_index} {path:7}: "
                        f"{run['rps']:8.1f} req/s, p99 {run['latency_ms']['p99']:6.1f} ms, "
                        f"errors {errors}, "
                        f"CPU % {run['cpu_pct']}",
                        flush=True,
                    )
    return runs


def summarize_throughput(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over rounds, per (load, connections)."""
    out: list[dict[str, Any]] = []
    for kind, conns in sorted({(r["kind"], r["connections"]) for r in runs}):
        group = [r for r in runs if (r["kind"], r["connections"]) == (kind, conns)]

        def median(
            path: str, key: str, sub: str | None = None, group: list[dict[str, Any]] = group
        ) -> float:
            values = [float(r[key][sub] if sub else r[key]) for r in group if r["path"] == path]
            return round(statistics.median(values), 1)

        def spread(path: str, group: list[dict[str, Any]] = group) -> str:
            values = [r["rps"] for r in group if r["path"] == path]
            return f"{min(values):.0f}-{max(values):.0f}"

        direct_rps, gateway_rps = median("direct", "rps"), median("gateway", "rps")
        gateway_cpu = median("gateway", "cpu_pct", "gateway")
        out.append(
            {
                "kind": kind,
                "connections": conns,
                "direct_rps": direct_rps,
                "gateway_rps": gateway_rps,
                "ratio": round(gateway_rps / direct_rps, 3) if direct_rps else 0.0,
                "direct_rps_range": spread("direct"),
                "gateway_rps_range": spread("gateway"),
                "direct_p99_ms": median("direct", "latency_ms", "p99"),
                "gateway_p99_ms": median("gateway", "latency_ms", "p99"),
                "gateway_cpu_pct": gateway_cpu,
                "gateway_cpu_ms_per_request": round(10 * gateway_cpu / gateway_rps, 3)
                if gateway_rps
                else 0.0,
                "upstream_cpu_pct_direct_run": median("direct", "cpu_pct", "upstream"),
                "upstream_cpu_pct_gateway_run": median("gateway", "cpu_pct", "upstream"),
                "generator_cpu_pct_direct_run": median("direct", "generator_cpu_pct"),
                "generator_cpu_pct_gateway_run": median("gateway", "generator_cpu_pct"),
                "errors": sum(sum(r["errors"].values()) for r in group),
            }
        )
    return out


def profile_gateway(
    stack: Stack,
    kind: str,
    api: Api,
    out_dir: Path,
    date: str,
    *,
    generator: str,
    connections: int,
    seconds: int,
    rate_hz: int,
) -> dict[str, Any]:
    """py-spy twice (flamegraph, then collapsed stacks) during one long saturating load run."""
    if py_spy_path() is None:
        return {"error": "py-spy is not installed (pip install -e '.[bench]')"}
    svg = out_dir / f"{date}-profile-{kind}.svg"
    raw = out_dir / f"{date}-profile-{kind}.txt"
    spec = api.spec(stack.gateway_port, gateway=True, token=stack.token)
    total_s = 2 * seconds + 6
    load: list[LoadResult] = []
    thread = threading.Thread(
        target=lambda: load.append(
            run_load(
                spec,
                generator=generator,
                connections=connections,
                duration_s=total_s,
                cpu=CLIENT_CPU,
            )
        ),
        daemon=True,
    )
    thread.start()
    try:
        time.sleep(2)
        kwargs: dict[str, Any] = {"duration_s": seconds, "rate_hz": rate_hz, "cpu": CLIENT_CPU}
        commands = [
            record(stack.gateway.pid, svg, fmt="flamegraph", **kwargs).command,
            record(stack.gateway.pid, raw, fmt="raw", **kwargs).command,
        ]
    except RuntimeError as exc:
        return {"error": str(exc)}
    finally:
        thread.join(total_s + 60)
    return {
        **summarize(raw),
        "svg": relative(svg),
        "raw": relative(raw),
        "rate_hz": rate_hz,
        "duration_s": seconds,
        "connections": connections,
        "load": f"{kind} ({api.name}, {'streaming' if api.stream else 'blocking'})",
        "rps_while_profiled": load[0].rps if load else None,
        "errors_while_profiled": load[0].error_count if load else None,
        "commands": [shlex.join(relative_cmd(c)) for c in commands],
    }
