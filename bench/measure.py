"""The measurements: relay check, concurrency-1 latency, saturated throughput, py-spy profiles."""

from __future__ import annotations

import json
import shlex
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from bench.httpclient import Connection, Timed
from bench.latency import Target, added_latency, interleaved
from bench.loadgen import LoadSpec, run_load, start_load
from bench.procs import CpuSampler, pinned
from bench.profile import py_spy_path, record, summarize
from bench.stack import (
    CLIENT_CPU,
    GATEWAY_CPU,
    GATEWAYS,
    HOST,
    REPO,
    Api,
    Stack,
    relative,
    relative_cmd,
    response_ok,
)


def check_relay(stack: Stack, apis: dict[str, Api]) -> dict[str, Any]:
    """One request per API on every path. Direct and gateway must succeed (are the bodies
    byte-identical?); LiteLLM's answer is only recorded (it rewrites bodies; a path it fails on is
    left out of its measurements)."""
    out: dict[str, Any] = {}
    for api in apis.values():
        results: dict[str, Timed | str] = {}
        for via in stack.vias:
            connection = Connection(HOST, stack.port(via))
            try:
                results[via] = connection.request(stack.raw(api, via))
            except OSError as exc:
                results[via] = f"{type(exc).__name__}: {exc}"
            finally:
                connection.close()
        direct, through = results["direct"], results["gateway"]
        if not (
            isinstance(direct, Timed)
            and isinstance(through, Timed)
            and response_ok(direct, stream=api.stream)
            and response_ok(through, stream=api.stream)
        ):
            raise RuntimeError(f"{api.name}: direct {_said(direct)}, gateway {_said(through)}")
        out[api.name] = {"bytes": len(through.body), "identical": direct.body == through.body}
        norec = results["gateway_norec"]
        if not (isinstance(norec, Timed) and response_ok(norec, stream=api.stream)):
            raise RuntimeError(f"{api.name}: gateway with recording off {_said(norec)}")
        out[api.name]["norec_identical"] = norec.body == through.body
        for via in ("gateway_trace", "gateway_base"):  # tracing on; the baseline's code
            if via in results:
                answer = results[via]
                if not (isinstance(answer, Timed) and response_ok(answer, stream=api.stream)):
                    raise RuntimeError(f"{api.name}: {via} {_said(answer)}")
        if "litellm" in results:
            answer = results["litellm"]
            ok = isinstance(answer, Timed) and response_ok(answer, stream=api.stream)
            out[api.name]["litellm"] = {
                "ok": ok,
                "status": answer.status if isinstance(answer, Timed) else None,
                "bytes": len(answer.body) if isinstance(answer, Timed) else 0,
                **({} if ok else {"answer": _said(answer)}),
            }
    return out


def litellm_ok(relay: dict[str, Any], api: str) -> bool:
    return bool(relay.get(api, {}).get("litellm", {}).get("ok"))


def _said(answer: Timed | str) -> str:
    if isinstance(answer, str):
        return answer
    return f"{answer.status} {answer.body[:300]!r}"


LATENCY_APIS = ("chat", "messages", "messages_stream", "responses")


def _percentiles_only(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k.endswith("_ms")}


def measure_latency(
    stack: Stack, apis: dict[str, Api], *, requests: int, warmup: int
) -> dict[str, Any]:
    def targets(api: Api) -> tuple[Target, Target]:
        return (
            Target("direct", HOST, stack.upstream_port, stack.raw(api, "direct")),
            Target("gateway", HOST, stack.gateway_port, stack.raw(api, "gateway")),
        )

    return interleaved_paths(stack, apis, targets, requests=requests, warmup=warmup,
                              stream_details=True, says="added")  # fmt: skip


def measure_recording_latency(
    stack: Stack, apis: dict[str, Api], *, requests: int, warmup: int
) -> dict[str, Any]:
    """Concurrency 1, the gateway with recording off and with recording on interleaved request by
    request, exactly as direct and gateway are: ``added_ms`` is what recording adds (on - off)."""

    def targets(api: Api) -> tuple[Target, Target]:
        return (
            Target("recording_off", HOST, stack.gateway_norec_port, stack.raw(api, "gateway")),
            Target("recording_on", HOST, stack.gateway_port, stack.raw(api, "gateway")),
        )

    return interleaved_paths(stack, apis, targets, requests=requests, warmup=warmup,
                              stream_details=False, says="recording adds")  # fmt: skip


def interleaved_paths(
    stack: Stack,
    apis: dict[str, Api],
    targets: Callable[[Api], tuple[Target, Target]],
    *,
    requests: int,
    warmup: int,
    stream_details: bool,
    says: str,
) -> dict[str, Any]:
    """Per body: two paths interleaved request by request; `added_ms` = second - first."""
    out: dict[str, Any] = {}
    for name in LATENCY_APIS:
        api = apis[name]
        first, second = targets(api)
        started = time.monotonic()
        sampler = CpuSampler(stack.procs())
        sampler.start()
        a, b, identical = interleaved(
            first,
            second,
            requests=requests,
            warmup=warmup,
            check=partial(response_ok, stream=api.stream),
            watch_events=api.stream,
        )
        # For streams the headline is the time to the first complete SSE event.
        metric = "first_event_s" if api.stream else "total_s"
        names = {"via": second.name, "base": first.name}
        result = added_latency(a, b, metric=metric, **names)
        result["body_bytes"] = len(api.body)
        result["identical_bodies"] = identical
        result["seconds"] = round(time.monotonic() - started, 1)
        result["cpu_pct"] = sampler.stop()
        if api.stream and stream_details:
            result["first_byte"] = _percentiles_only(
                added_latency(a, b, metric="first_byte_s", **names)
            )
            result["whole_stream"] = _percentiles_only(
                added_latency(a, b, metric="total_s", **names)
            )
        out[name] = result
        added = result["added_ms"]
        print(
            f"  {name:16} {says} p50 {added['p50']:.3f} ms, p99 {added['p99']:.3f} ms "
            f"({result['seconds']:.0f} s)",
            flush=True,
        )
    return out


def recorder_statistics(stack: Stack) -> dict[str, Any]:
    """The recording gateway's recorder statistics, from its /readyz."""
    url = f"http://{HOST}:{stack.gateway_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            found: dict[str, Any] = json.loads(response.read()).get("recorder") or {}
            return found
    except (OSError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def measure_recorder_rate(
    stack: Stack, *, interceptions: int, concurrency: int, warmup: int
) -> dict[str, Any]:
    """``bench.recorder_rate`` pinned to the gateway's CPU, against the bench's PostgreSQL (a
    database of its own); the database's CPU sampled meanwhile."""
    cmd = pinned(
        [
            sys.executable,
            "-m",
            "bench.recorder_rate",
            "--server-uri",
            stack.database.uri,
            "--interceptions",
            str(interceptions),
            "--concurrency",
            str(concurrency),
            "--warmup",
            str(warmup),
        ],
        GATEWAY_CPU,
    )
    sampler = CpuSampler([stack.database.tree()])
    sampler.start()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    cpu = sampler.stop()
    if done.returncode != 0:
        return {"error": f"exit code {done.returncode}: {done.stderr[-800:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["cpu_pct"] = cpu
    result["command"] = shlex.join(relative_cmd(cmd))
    return result


def measure_litellm_latency(
    stack: Stack, apis: dict[str, Api], relay: dict[str, Any], *, requests: int, warmup: int
) -> dict[str, Any]:
    """Concurrency 1, direct and LiteLLM interleaved (fewer requests: LiteLLM takes ~10-25 ms
    each); APIs LiteLLM failed in the relay check are left out."""
    out: dict[str, Any] = {}
    for name in LATENCY_APIS:
        if not litellm_ok(relay, name):
            continue
        api = apis[name]
        direct = Target("direct", HOST, stack.upstream_port, stack.raw(api, "direct"))
        proxy = Target("litellm", HOST, stack.litellm.port, stack.raw(api, "litellm"))
        started = time.monotonic()
        sampler = CpuSampler(stack.procs())
        sampler.start()
        d, g, _ = interleaved(
            direct,
            proxy,
            requests=requests,
            warmup=warmup,
            check=partial(response_ok, stream=api.stream),
            watch_events=api.stream,
        )
        metric = "first_event_s" if api.stream else "total_s"
        result = added_latency(d, g, metric=metric, via="litellm")
        result["body_bytes"] = len(api.body)
        result["seconds"] = round(time.monotonic() - started, 1)
        result["cpu_pct"] = sampler.stop()
        out[name] = result
        if result["added_ms"]:
            print(
                f"  {name:16} LiteLLM p50 {result['litellm_ms']['p50']:.2f} ms, added p50 "
                f"{result['added_ms']['p50']:.2f} ms ({result['seconds']:.0f} s)",
                flush=True,
            )
    return out


def one_load_run(
    stack: Stack, spec: LoadSpec, *, generator: str, connections: int, duration_s: float
) -> dict[str, Any]:
    sampler = CpuSampler(stack.procs())
    sampler.start()
    result = run_load(
        spec, generator=generator, connections=connections, duration_s=duration_s, cpu=CLIENT_CPU
    )
    cpu = sampler.stop()
    out = {
        **result.as_dict(),
        "cpu_pct": cpu,
        "gateway_rss_kb_after": stack.gateway.memory().rss_kb,
        "gateway_norec_rss_kb_after": stack.gateway_norec.memory().rss_kb,
    }
    if stack.litellm.up and stack.litellm.proc is not None:
        out["litellm_rss_kb_after"] = stack.litellm.proc.memory().rss_kb
    return out


THROUGHPUT_APIS = (("json", "chat"), ("sse", "messages_stream"))


def measure_throughput(
    stack: Stack,
    apis: dict[str, Api],
    relay: dict[str, Any],
    *,
    generator: str,
    connections: Sequence[int],
    duration_s: float,
    warmup_s: float,
    rounds: int,
    litellm_warmup_s: float,
) -> list[dict[str, Any]]:
    """For each load and connection count, ``rounds`` x (direct, gateway, gateway_norec, litellm),
    each after a warm-up; only one path is under load at a time (recording on and off swap places
    every other round). LiteLLM also gets ``litellm_warmup_s`` of load
    per kind before its first measured run (its first requests are much slower)."""
    runs: list[dict[str, Any]] = []
    for kind, name in THROUGHPUT_APIS:
        api = apis[name]
        vias = [v for v in stack.vias if v != "litellm" or litellm_ok(relay, name)]
        if "litellm" in vias and litellm_warmup_s > 0:
            print(f"  warming LiteLLM up with {litellm_warmup_s:g} s of {kind} load", flush=True)
            run_load(
                stack.spec(api, "litellm"),
                generator=generator,
                connections=max(connections),
                duration_s=litellm_warmup_s,
                cpu=CLIENT_CPU,
            )
        for conns in connections:
            for round_index in range(1, rounds + 1):
                order = list(vias)
                if round_index % 2 == 0:
                    # the gateways run in reverse order every other round (no order bias)
                    reverse = iter([v for v in reversed(order) if v in GATEWAYS])
                    order = [next(reverse) if v in GATEWAYS else v for v in order]
                for via in order:
                    spec = stack.spec(api, via)
                    run_load(
                        spec,
                        generator=generator,
                        connections=conns,
                        duration_s=warmup_s,
                        cpu=CLIENT_CPU,
                    )
                    run = one_load_run(
                        stack, spec, generator=generator, connections=conns, duration_s=duration_s
                    )
                    runs.append(
                        {"kind": kind, "connections": conns, "round": round_index, "path": via}
                        | run
                    )
                    errors = sum(run["errors"].values())
                    print(
                        f"  {kind} c={conns} round {round_index} {via:13}: "
                        f"{run['rps']:8.1f} req/s, p99 {run['latency_ms']['p99']:6.1f} ms, "
                        f"errors {errors}, "
                        f"CPU % {run['cpu_pct']}",
                        flush=True,
                    )
    return runs


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if a and b else None


def summarize_throughput(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over rounds, per (load, connections)."""
    out: list[dict[str, Any]] = []
    for kind, conns in sorted({(r["kind"], r["connections"]) for r in runs}):
        group = [r for r in runs if (r["kind"], r["connections"]) == (kind, conns)]

        def median(
            path: str, key: str, sub: str | None = None, group: list[dict[str, Any]] = group
        ) -> float:
            values = [float(r[key][sub] if sub else r[key]) for r in group if r["path"] == path]
            return round(statistics.median(values), 1) if values else 0.0

        def spread(path: str, group: list[dict[str, Any]] = group) -> str:
            values = [r["rps"] for r in group if r["path"] == path]
            return f"{min(values):.0f}-{max(values):.0f}" if values else "-"

        def errors(path: str, group: list[dict[str, Any]] = group) -> int:
            return sum(sum(r["errors"].values()) for r in group if r["path"] == path)

        direct_rps, gateway_rps = median("direct", "rps"), median("gateway", "rps")
        litellm_rps = median("litellm", "rps")
        gateway_cpu = median("gateway", "cpu_pct", "gateway")
        summary = {
            "kind": kind,
            "connections": conns,
            "direct_rps": direct_rps,
            "gateway_rps": gateway_rps,
            "ratio": _ratio(gateway_rps, direct_rps) or 0.0,
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
            "errors": errors("direct") + errors("gateway"),
        }
        for via, ratio in (("gateway_trace", "tracing_ratio"), ("gateway_base", "baseline_ratio")):
            if any(r["path"] == via for r in group):
                rps, cpu = median(via, "rps"), median(via, "cpu_pct", via)
                summary |= {
                    f"{via}_rps": rps,
                    f"{via}_rps_range": spread(via),
                    f"{via}_p99_ms": median(via, "latency_ms", "p99"),
                    f"{via}_cpu_ms_per_request": round(10 * cpu / rps, 3) if rps else 0.0,
                    f"{via}_errors": errors(via),
                    # tracing on ÷ off; this code (tracing off) ÷ the baseline's
                    ratio: _ratio(rps, gateway_rps)
                    if via == "gateway_trace"
                    else _ratio(gateway_rps, rps),
                }
        if any(r["path"] == "gateway_norec" for r in group):
            norec_rps = median("gateway_norec", "rps")
            norec_cpu = median("gateway_norec", "cpu_pct", "gateway_norec")
            db_cpu_on = median("gateway", "cpu_pct", "postgres")
            summary |= {
                "gateway_norec_rps": norec_rps,
                "recording_ratio": _ratio(gateway_rps, norec_rps),
                "gateway_norec_rps_range": spread("gateway_norec"),
                "gateway_norec_p99_ms": median("gateway_norec", "latency_ms", "p99"),
                "gateway_norec_cpu_pct": norec_cpu,
                "gateway_norec_cpu_ms_per_request": round(10 * norec_cpu / norec_rps, 3)
                if norec_rps
                else None,
                "postgres_cpu_pct_gateway_run": db_cpu_on,
                "postgres_cpu_pct_norec_run": median("gateway_norec", "cpu_pct", "postgres"),
                "postgres_cpu_ms_per_request": round(10 * db_cpu_on / gateway_rps, 3)
                if gateway_rps
                else None,
                "gateway_norec_errors": errors("gateway_norec"),
                "gateway_errors": errors("gateway"),
            }
        if any(r["path"] == "litellm" for r in group):
            litellm_cpu = median("litellm", "cpu_pct", "litellm")
            summary |= {
                "litellm_rps": litellm_rps,
                "litellm_rps_range": spread("litellm"),
                "litellm_p99_ms": median("litellm", "latency_ms", "p99"),
                "litellm_cpu_pct": litellm_cpu,
                "litellm_cpu_ms_per_request": round(10 * litellm_cpu / litellm_rps, 3)
                if litellm_rps
                else None,
                "litellm_cpu_pct_in_gateway_runs": median("gateway", "cpu_pct", "litellm"),
                "upstream_cpu_pct_litellm_run": median("litellm", "cpu_pct", "upstream"),
                "gateway_over_litellm": _ratio(gateway_rps, litellm_rps),
                "litellm_over_direct": _ratio(litellm_rps, direct_rps),
                "litellm_errors": errors("litellm"),
            }
        out.append(summary)
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
    spec = stack.spec(api, "gateway")
    total_s = 2 * seconds + 6
    thread, load = start_load(
        spec, generator=generator, connections=connections, duration_s=total_s, cpu=CLIENT_CPU
    )
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
