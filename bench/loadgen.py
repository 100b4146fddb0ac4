"""Closed-loop load at a fixed number of keep-alive connections: ``wrk`` when it is installed
(C, one epoll thread: it stays far from being the bottleneck), else a trio generator in its own
process built on :mod:`bench.httpclient`'s parser (CI machines start without wrk).

The trio generator is also a module entry point:

    python -m bench.loadgen --host 127.0.0.1 --port 8080 --path /v1/messages \\
        --body-file body.json --header 'x-api-key: k' --connections 32 --duration 10

and prints one JSON object (requests, errors, latency percentiles) on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

from bench.httpclient import MAX_RECV, ProtocolError, ResponseParser, build_request
from bench.latency import percentile
from bench.procs import pinned

WRK_RESULT = "BENCH_RESULT"


@dataclass(frozen=True, slots=True)
class LoadSpec:
    host: str
    port: int
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"


@dataclass(slots=True)
class LoadResult:
    generator: str
    connections: int
    duration_s: float
    requests: int
    rps: float
    errors: dict[str, int]
    latency_ms: dict[str, float]
    generator_cpu_pct: float = 0.0
    command: list[str] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_version() -> str | None:
    path = wrk_path()
    if path is None:
        return None
    out = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)
    match = re.search(r"wrk (\S+)", out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII is a valid Lua string literal


def _wrk_script(body_path: Path, headers: Sequence[tuple[str, str]]) -> str:
    lines = [
        'wrk.method = "POST"',
        f"local f = assert(io.open({_lua_string(str(body_path))}, 'rb'))",
        "wrk.body = f:read('*a')",
        "f:close()",
    ]
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers]
    lines += [
        "function done(summary, latency, requests)",
        "  local e = summary.errors",
        f'  io.write(string.format("{WRK_RESULT} %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f '
        '%.0f %.0f %.0f %.0f\\n",',
        "    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,",
        "    e.status, e.timeout, latency:percentile(50), latency:percentile(90),",
        "    latency:percentile(99), latency.max))",
        "end",
    ]
    return "\n".join(lines) + "\n"


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(spec: LoadSpec, *, connections: int, duration_s: float, cpu: int | None) -> LoadResult:
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is not installed")
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        body_path = Path(tmp) / "body.json"
        body_path.write_bytes(spec.body)
        script = Path(tmp) / "post.lua"
        script.write_text(_wrk_script(body_path, spec.headers))
        cmd = pinned(
            [
                wrk,
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(duration_s))}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                spec.url,
            ],
            cpu,
        )
        cpu_before = _children_cpu_s()
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
        cpu_used = _children_cpu_s() - cpu_before
    line = next((x for x in out.stdout.splitlines() if x.startswith(WRK_RESULT)), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}"
        )
    values = [int(float(x)) for x in line.split()[1:]]
    requests, duration_us, _bytes, connect, read, write, status, timeout, p50, p90, p99, top = (
        values
    )
    elapsed = duration_us / 1e6
    return LoadResult(
        generator="wrk",
        connections=connections,
        duration_s=round(elapsed, 3),
        requests=requests,
        rps=round(requests / elapsed, 1),
        errors={
            "connect": connect,
            "read": read,
            "write": write,
            "status": status,
            "timeout": timeout,
        },
        latency_ms={"p50": p50 / 1000, "p90": p90 / 1000, "p99": p99 / 1000, "max": top / 1000},
        generator_cpu_pct=round(100 * cpu_used / elapsed, 1),
        command=[*cmd[:-3], "<script>", spec.url],
    )


def run_python(
    spec: LoadSpec,
    *,
    connections: int,
    duration_s: float,
    cpu: int | None,
    samples: Path | None = None,
) -> LoadResult:
    """The trio generator in a child process (pinned like wrk would be); `samples`: a file for
    each request's start time and latency."""
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        body_path = Path(tmp) / "body.json"
        body_path.write_bytes(spec.body)
        cmd = [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--host",
            spec.host,
            "--port",
            str(spec.port),
            "--path",
            spec.path,
            "--body-file",
            str(body_path),
            "--connections",
            str(connections),
            "--duration",
            f"{duration_s:g}",
        ]
        for name, value in spec.headers:
            cmd += ["--header", f"{name}: {value}"]
        if samples is not None:
            cmd += ["--samples", str(samples)]
        cmd = pinned(cmd, cpu)
        cpu_before = _children_cpu_s()
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
        cpu_used = _children_cpu_s() - cpu_before
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed ({out.returncode}): {out.stderr[-1000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return LoadResult(
        generator="python-trio",
        connections=connections,
        duration_s=data["duration_s"],
        requests=data["requests"],
        rps=round(data["requests"] / data["duration_s"], 1),
        errors=data["errors"],
        latency_ms=data["latency_ms"],
        generator_cpu_pct=round(100 * cpu_used / max(data["duration_s"], 1e-9), 1),
        command=[c if not c.endswith("body.json") else "<body>" for c in cmd],
    )


def run_load(
    spec: LoadSpec, *, generator: str, connections: int, duration_s: float, cpu: int | None
) -> LoadResult:
    runner = run_wrk if generator == "wrk" else run_python
    return runner(spec, connections=connections, duration_s=duration_s, cpu=cpu)


def start_load(
    spec: LoadSpec, *, generator: str, connections: int, duration_s: float, cpu: int | None
) -> tuple[threading.Thread, list[LoadResult]]:
    """`run_load` on a thread (to profile what it loads meanwhile): the started thread, and the
    list its result lands in once it is joined."""
    result: list[LoadResult] = []
    thread = threading.Thread(
        target=lambda: result.append(
            run_load(
                spec,
                generator=generator,
                connections=connections,
                duration_s=duration_s,
                cpu=cpu,
            )
        ),
        daemon=True,
    )
    thread.start()
    return thread, result


# --- the trio generator -------------------------------------------------------------------------


@dataclass(slots=True)
class _Stats:
    requests: int = 0
    latencies_s: list[float] = field(default_factory=list)
    started_at: list[float] = field(default_factory=list)  # unix time of each request's start
    errors: dict[str, int] = field(
        default_factory=lambda: {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    )


async def _connection_loop(
    host: str, port: int, raw: bytes, deadline: float, stats: _Stats
) -> None:
    stream: trio.SocketStream | None = None
    while time.monotonic() < deadline:
        if stream is None:
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError:
                stats.errors["connect"] += 1
                await trio.sleep(0.01)
                continue
        parser = ResponseParser()
        started, wall = time.perf_counter(), time.time()
        try:
            with trio.fail_after(10):
                await stream.send_all(raw)
                while not parser.complete:
                    data = await stream.receive_some(MAX_RECV)
                    if not data:
                        parser.feed_eof()
                    parser.feed(data)
        except trio.TooSlowError:
            stats.errors["timeout"] += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ProtocolError):
            stats.errors["read"] += 1
        else:
            stats.requests += 1
            stats.latencies_s.append(time.perf_counter() - started)
            stats.started_at.append(wall)
            if not 200 <= parser.status < 400:
                stats.errors["status"] += 1
            if parser.keep_alive:
                continue
        await stream.aclose()
        stream = None
    if stream is not None:
        await stream.aclose()


async def _generate(
    host: str, port: int, raw: bytes, connections: int, duration_s: float
) -> tuple[dict[str, Any], _Stats]:
    stats = _Stats()
    started = time.monotonic()
    deadline = started + duration_s
    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(_connection_loop, host, port, raw, deadline, stats)
    elapsed = time.monotonic() - started
    ordered = sorted(stats.latencies_s)
    latency = {f"p{q}": round(percentile(ordered, q) * 1000, 3) for q in (50, 90, 99)}
    latency["max"] = round(ordered[-1] * 1000, 3) if ordered else math.nan
    return {
        "requests": stats.requests,
        "duration_s": round(elapsed, 3),
        "errors": stats.errors,
        "latency_ms": latency,
    }, stats


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description="closed-loop load")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--header", action="append", default=[], help="'name: value'")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--samples", type=Path, help="write each request's start and latency")
    args = parser.parse_args(argv)
    headers = [
        (name.strip(), value.strip()) for name, _, value in (h.partition(":") for h in args.header)
    ]
    raw = build_request(
        "POST", f"{args.host}:{args.port}", args.path, headers, args.body_file.read_bytes()
    )
    result, stats = trio.run(_generate, args.host, args.port, raw, args.connections, args.duration)
    if args.samples is not None:  # each request: when it started (unix s), how long it took (s)
        pairs = zip(stats.started_at, stats.latencies_s, strict=True)
        args.samples.write_text("".join(f"{at:.6f} {took:.6f}\n" for at, took in pairs))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
