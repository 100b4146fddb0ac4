"""The many-open-streams scenario: thousands of slow Anthropic streams open at once through the
gateway (and, as a check of the fake side, directly against the paced upstream).

``bench.streamgen`` runs in its own process on the client CPU and reports progress twice a second;
on each report this module samples the measured process's RSS (``VmRSS`` in /proc/<pid>/status)
and open file descriptors, so the RSS at the moment the most streams were open is known. RSS
growth per stream = (RSS at the peak - RSS just before) / streams open at the peak.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.paced_upstream import Pacing
from bench.procs import CpuSampler, Proc, nofile_limit, open_fds, pinned
from bench.stack import CLIENT_CPU, HOST, NOFILE, Stack, relative_cmd, slow_stream_api

_PROBLEM = re.compile(rb"\[(error|warning|critical)\s*\]\s+(\S+)")


def _log_size(proc: Proc) -> int:
    return proc.log_path.stat().st_size if proc.log_path and proc.log_path.exists() else 0


def log_problems(proc: Proc, since: int) -> dict[str, int]:
    """Warning and error events (by level and name) the process logged after byte ``since``."""
    if proc.log_path is None or not proc.log_path.exists():
        return {}
    with open(proc.log_path, "rb") as file:
        file.seek(since)
        text = file.read()
    found = Counter(f"{lv.decode()} {name.decode()}" for lv, name in _PROBLEM.findall(text))
    return dict(found.most_common(10))


def _generator_cmd(port: int, path: str, headers: Any, body: Path, **options: Any) -> list[str]:
    cmd = [sys.executable, "-m", "bench.streamgen", "--host", HOST, "--port", str(port)]
    cmd += ["--path", path, "--body-file", str(body)]
    for name, value in headers:
        cmd += ["--header", f"{name}: {value}"]
    for key, value in options.items():
        cmd += [
            f"--{key.replace('_', '-')}",
            f"{value:g}" if isinstance(value, float) else str(value),
        ]
    return pinned(cmd, CLIENT_CPU)


def run_streams(
    stack: Stack, *, via: str, streams: int, pacing: Pacing, ramp: int
) -> dict[str, Any]:
    """``streams`` paced streams through ``via`` ("gateway" or "direct"), all held open at once."""
    api = slow_stream_api()
    measured = stack.gateway if via == "gateway" else stack.upstream
    port = stack.gateway_port if via == "gateway" else stack.paced_port
    spec = api.spec(port, via=via, token=stack.token)
    timeout_s = pacing.duration_s + 120
    before = measured.memory()
    fds_before = open_fds(measured.pid)
    log_start = _log_size(measured)
    samples: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        body = Path(tmp) / "body.json"
        body.write_bytes(spec.body)
        cmd = _generator_cmd(
            port,
            spec.path,
            spec.headers,
            body,
            streams=streams,
            expect_deltas=pacing.deltas,
            ramp=ramp,
            timeout=timeout_s,
            progress=0.5,
        )
        sampler = CpuSampler([measured])
        sampler.start()
        started = time.monotonic()
        generator = Proc(
            "streamgen", cmd, stdout_pipe=True, log_path=Path(tmp) / "streamgen.log", nofile=NOFILE
        )
        try:
            while True:
                try:
                    line = generator.read_line(timeout_s + 60)
                except RuntimeError:
                    break
                if not line:
                    break
                data = json.loads(line)
                if "result" in data:
                    result = data["result"]
                    break
                samples.append(
                    data
                    | {
                        "rss_kb": measured.memory().rss_kb,
                        "fds": open_fds(measured.pid),
                    }
                )
        finally:
            code = generator.stop(timeout_s=10)
            log = generator.log_tail()
        cpu = sampler.stop()
    if not result:
        return {"via": via, "error": f"the stream generator ended with {code}: {log}"}
    time.sleep(1.0)
    after = measured.memory()
    peak_open = result["peak_open"]
    at_peak = [s for s in samples if s["open"] == peak_open] or [
        max(samples, key=lambda s: s["open"], default={"rss_kb": before.rss_kb, "open": 0})
    ]
    rss_at_peak = max(s["rss_kb"] for s in at_peak)
    growth_kb = rss_at_peak - before.rss_kb
    out = {
        "via": via,
        "process": measured.name,
        "streams": streams,
        "pacing": {"interval_s": pacing.interval_s, "deltas": pacing.deltas},
        **result,
        "rss_kb_before": before.rss_kb,
        "rss_kb_at_peak": rss_at_peak,
        "rss_kb_max_sampled": max((s["rss_kb"] for s in samples), default=before.rss_kb),
        "rss_kb_after": after.rss_kb,
        "peak_rss_kb_vmhwm": after.peak_rss_kb,
        "rss_growth_kb": growth_kb,
        "rss_kb_per_stream": round(growth_kb / peak_open, 1) if peak_open else None,
        "fds_before": fds_before,
        "fds_at_peak": max((s["fds"] or 0 for s in at_peak), default=None),
        "nofile_limit": nofile_limit(measured.pid),
        "log_problems": log_problems(measured, log_start),
        "cpu_pct": cpu,
        "seconds": round(time.monotonic() - started, 1),
        "generator_command": shlex.join(
            [c if not c.endswith("body.json") else "<body>" for c in relative_cmd(cmd)]
        ),
        "timeline": [
            {k: s[k] for k in ("t", "opening", "open", "ok", "errors", "rss_kb", "fds")}
            for s in samples[:: max(1, len(samples) // 40)]
        ],
    }
    errors = sum(result["errors"].values())
    print(
        f"  {via:7}: {result['ok']:,}/{streams:,} complete, errors {errors} "
        f"{ {k: v for k, v in result['errors'].items() if v} }, peak open {peak_open:,}, "
        f"RSS {before.rss_kb / 1024:.0f} -> {rss_at_peak / 1024:.0f} MiB "
        f"({out['rss_kb_per_stream']} KB/stream), CPU % {cpu}",
        flush=True,
    )
    return out
