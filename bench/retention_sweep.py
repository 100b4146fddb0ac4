"""The retention sweep under a recording load: the data plane's latency with and without it.

    python -m bench.retention_sweep [--rows 1000000] [--days 8] [--duration 60] [--connections 8]

1. Starts the bench's PostgreSQL and the fast upstream (CPU 0) and one recording gateway (CPU 1,
   ``aibridged serve`` of this checkout, metrics on), with a retention that puts the cutoff of
   its next sweep at noon (``bench.retention_data``). Its first sweep runs at start, on the
   empty database; the next one comes exactly 600 s after it.
2. Fills ``--rows`` old interceptions with their child records over ``--days`` days ending at
   the cutoff (the last one is the boundary day), and 1,000 newer ones to keep.
3. Runs the load (``bench.loadgen``'s trio generator: closed loop, ``--connections``
   keep-alive connections, blocking Chat Completions of ~40 KB, every one recorded) for
   ``--duration`` s without the sweep, ending shortly before the next sweep, then the same load
   from 5 s before that sweep: the sweep runs inside the second window.
4. Reads the sweep's start, end and removed records from the gateway's metrics, and counts in
   the database what is left older than the cutoff (nothing) and what was to be kept (all).

The report gives p50/p99 of both windows and of the requests that started while the sweep ran,
their ratios to the window without it (target: p99 ≤ 1.2x), and the sweep's work and time.
Writes ``<date>-retention-sweep.json`` and ``.md`` to ``--out`` (bench/results).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from prometheus_client.parser import text_string_to_metric_families

from bench import retention_data
from bench.database import Database, running_database
from bench.facts import machine_facts, source_state
from bench.latency import summary_ms
from bench.loadgen import run_python
from bench.procs import Proc, calibrate, free_port, pinned, wait_http_ok
from bench.retention_report import render_markdown
from bench.stack import CLIENT_CPU, HOST, NOFILE, REPO, api_surfaces, gateway_config, start_gateway

PERIOD_S = 600.0  # the sweeper's (aibridged/retention.py)
LEAD_S = 5.0  # the loaded window starts this long before the sweep
GAP_S = 8.0  # between the two windows
WARMUP_S = 10.0
BASE_RETENTION = dt.timedelta(days=60)
KEPT = 1_000
PREFIX = "coder_aibridged_retention_"


@dataclass(slots=True)
class Gateway:
    proc: Proc
    port: int
    metrics_port: int
    token: str
    log_path: Path

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        url = f"http://{HOST}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name.startswith(PREFIX)
        }

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((PREFIX + name, tuple(sorted(labels.items()))), 0.0)


@contextmanager
def running_gateway(work: Path, database: Database, retention: str) -> Iterator[Gateway]:
    upstream_port, metrics_port, port = free_port(), free_port(), free_port()
    upstream = Proc(
        "upstream",
        pinned(
            [
                sys.executable,
                "-m",
                "bench.upstream",
                "--kind",
                "fast",
                "--port",
                str(upstream_port),
            ],
            CLIENT_CPU,
        ),
        log_path=work / "upstream.log",
        stdout_pipe=True,
        cwd=REPO,
        nofile=NOFILE,
    )
    procs = [upstream]
    try:
        line = upstream.read_line(30)
        if not line.startswith("listening "):
            raise RuntimeError(f"upstream said {line!r}:\n{upstream.log_tail()}")
        state_dir = work / "state-gateway"
        text = gateway_config(
            state_dir, port, upstream_port, free_port(), "info", steady_port=free_port(),
            database_url=database.dsn("postgres"), recording=True,
            secrets_key_file=work / "secrets.key", retention=retention,
            metrics_address=f"{HOST}:{metrics_port}",
        )  # fmt: skip
        gateway = start_gateway("gateway", work, text, state_dir, port)
        procs.append(gateway)
        wait_http_ok(f"http://{HOST}:{metrics_port}/metrics", timeout_s=30, proc=gateway)
        token = (state_dir / "admin.token").read_text().strip()
        yield Gateway(gateway, port, metrics_port, token, work / "gateway.log")
    finally:
        for proc in reversed(procs):
            code = proc.stop(timeout_s=40)
            if proc.name == "gateway" and code != 0:
                print(f"warning: gateway exited with {code}:\n{proc.log_tail()}", file=sys.stderr)


def _wait(predicate: Any, *, timeout_s: float, what: str, proc: Proc) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} within {timeout_s:.0f} s:\n{proc.log_tail()}")
        time.sleep(0.2)


def _sleep_until(unix_s: float) -> float:
    """Sleeps until `unix_s`; returns how late it already was (0 when on time)."""
    late = time.time() - unix_s
    if late < 0:
        time.sleep(-late)
    return max(0.0, late)


def _phase(gateway: Gateway, database: Database, args: argparse.Namespace, work: Path,
           name: str) -> dict[str, Any]:  # fmt: skip
    """One load window: the load generator's result, each request's start and latency, the
    CPU the gateway and the database used."""
    spec = api_surfaces()["chat"].spec(gateway.port, via="gateway", token=gateway.token)
    samples = work / f"{name}.samples"
    cpu = (gateway.proc.cpu_seconds(), database.tree().cpu_seconds())
    started = time.time()
    result = run_python(spec, connections=args.connections, duration_s=args.duration,
                        cpu=CLIENT_CPU, samples=samples)  # fmt: skip
    elapsed = time.time() - started
    pairs = [tuple(map(float, line.split())) for line in samples.read_text().splitlines()]
    return {
        "start": started,
        "elapsed_s": round(elapsed, 2),
        "load": result.as_dict(),
        "samples": pairs,
        "gateway_cpu_pct": round(100 * (gateway.proc.cpu_seconds() - cpu[0]) / elapsed, 1),
        "database_cpu_pct": round(100 * (database.tree().cpu_seconds() - cpu[1]) / elapsed, 1),
    }


def _window(pairs: list[tuple[float, ...]], start: float, end: float) -> dict[str, Any]:
    inside = [took for at, took in pairs if start <= at <= end]
    return {"requests": len(inside), "latency_ms": summary_ms(inside)}


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    launch = dt.datetime.now(dt.UTC)
    plan = retention_data.plan(launch + dt.timedelta(seconds=PERIOD_S + 2), rows=args.rows,
                               days=args.days, base_retention=BASE_RETENTION)  # fmt: skip
    with (
        running_database(work / "postgres", cpu=CLIENT_CPU) as database,
        running_gateway(work, database, plan.retention) as gateway,
    ):
        _wait(lambda: gateway.metric("sweeps_total", result="ok") >= 1, timeout_s=60,
              what="first sweep", proc=gateway.proc)  # fmt: skip
        first_sweep = gateway.metric("last_sweep_timestamp_seconds")
        print(f"gateway up, first sweep at {first_sweep:.1f}; retention {plan.retention}")
        fill = trio.run(retention_data.prepare, database.dsn("postgres"), plan, KEPT)
        print(f"fill: {fill['total']:.1f} s", flush=True)
        before = trio.run(retention_data.counts, database.dsn("postgres"), plan.cutoff)
        ahead = LEAD_S + args.duration + GAP_S + WARMUP_S + 5
        sweep_at = first_sweep + PERIOD_S
        while sweep_at - ahead < time.time():
            sweep_at += PERIOD_S  # the fill took too long for this one: the next
        print(f"next sweep expected at {sweep_at:.1f} (in {sweep_at - time.time():.0f} s)",
              flush=True)  # fmt: skip
        _sleep_until(sweep_at - ahead)
        _phase(gateway, database, argparse.Namespace(**{**vars(args), "duration": WARMUP_S}),
               work, "warmup")  # fmt: skip
        late = _sleep_until(sweep_at - LEAD_S - GAP_S - args.duration)
        without = _phase(gateway, database, args, work, "without")
        late += _sleep_until(sweep_at - LEAD_S)
        ok_before = gateway.metric("sweeps_total", result="ok")
        purged_before = _purged(gateway)
        during = _phase(gateway, database, args, work, "with")
        _wait(lambda: gateway.metric("sweeps_total", result="ok") > ok_before, timeout_s=1800,
              what="sweep", proc=gateway.proc)  # fmt: skip
        sweep = _sweep_facts(gateway, purged_before)
        cutoff = dt.datetime.fromtimestamp(sweep["start"], dt.UTC) - dt.timedelta(
            seconds=plan.retention_s
        )
        after = trio.run(retention_data.counts, database.dsn("postgres"), cutoff)
        swept_line = _log_line(gateway.log_path, "retention.swept")
    sweep["inside_window"] = sweep["end"] <= during["start"] + during["elapsed_s"]
    return {
        "plan": {
            "retention_s": plan.retention_s,
            "cutoff": cutoff.isoformat(),
            "first_day": plan.shape.first_day.isoformat(),
            "days": plan.shape.days,
            "rows": plan.shape.interceptions,
            "kept": KEPT,
        },
        "fill_s": fill,
        "late_s": round(late, 1),
        "before": before,
        "after": after,
        "sweep": sweep,
        "swept_log_line": swept_line,
        "without": _summary(without, without["start"], without["start"] + args.duration + 1),
        "with": _summary(during, during["start"], during["start"] + args.duration + 1),
        "during_sweep": _window(during["samples"], sweep["start"], sweep["end"]),
    }


def _purged(gateway: Gateway) -> dict[str, float]:
    return {
        dict(labels)["record"]: value
        for (name, labels), value in gateway.metrics().items()
        if name == PREFIX + "purged_records_total"
    }


def _sweep_facts(gateway: Gateway, purged_before: dict[str, float]) -> dict[str, Any]:
    purged = {k: int(v - purged_before.get(k, 0.0)) for k, v in _purged(gateway).items()}
    return {
        "start": gateway.metric("last_sweep_timestamp_seconds"),
        "end": gateway.metric("last_sweep_success_timestamp_seconds"),
        "purged": purged,
        "purged_total": sum(purged.values()),
        "partitions_dropped": int(gateway.metric("partitions_dropped_total")),
        "drops_deferred": int(gateway.metric("drops_deferred_total")),
        "failed_sweeps": int(gateway.metric("sweeps_total", result="failed")),
    }


def _summary(phase: dict[str, Any], start: float, end: float) -> dict[str, Any]:
    found = {key: value for key, value in phase.items() if key != "samples"}
    found["window"] = _window(phase["samples"], start, end)
    return found


def _log_line(path: Path, event: str) -> str | None:
    lines = [line for line in path.read_text(errors="replace").splitlines() if event in line]
    return lines[-1].strip() if lines else None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.retention_sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="old interceptions")
    parser.add_argument("--days", type=int, default=8, help="days they spread over (≥ 2)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per load window")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--name", help="file name without extension (default: DATE-retention-sweep)"
    )
    args = parser.parse_args(argv)
    if args.days < 2 or args.rows < 1 or args.duration < 5 or args.connections < 1:
        parser.error("need --days ≥ 2, --rows ≥ 1, --duration ≥ 5 and --connections ≥ 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    arguments = list(argv if argv is not None else sys.argv[1:])
    command = shlex.join([os.path.relpath(sys.executable, REPO), "-m", "bench.retention_sweep",
                          *arguments])  # fmt: skip
    now = dt.datetime.now().astimezone()
    name = args.name or f"{now.date().isoformat()}-retention-sweep"
    source = source_state(REPO)
    speed_before = calibrate(None)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aibridged-retention-") as tmp:
        measured = measure(args, Path(tmp))
    results = {
        "date": now.isoformat(timespec="seconds"),
        "command": command,
        "seconds": round(time.monotonic() - started, 1),
        "calibration_ms": {"start": speed_before, "end": calibrate(None)},
        "machine": machine_facts({}),
        "source": source,
        "load": {
            "connections": args.connections,
            "duration_s": args.duration,
            "api": "chat (blocking, ~40 KB body), recorded",
        },
        **measured,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (args.out / f"{name}.md").write_text(render_markdown(results))
    print(f"wrote {args.out / name}.json and .md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
