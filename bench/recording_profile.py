"""Where recording's cost goes under saturated load: py-spy on the recording gateway and on the
same gateway with recording off, in turns, under the same closed-loop load, then the functions
whose share of the busy samples differs most between the two.

The throughput ratio in ``bench.run`` counts everything recording changes on this 2-core
machine, the bench's PostgreSQL sharing CPU 0 with the upstream and the load generator included;
this shows how much of it is the gateway's own recording code (inclusive share of its samples)
and how much is a change elsewhere on the gateway's path.

    python -m bench.recording_profile [--seconds 12] [--rounds 2] [--connections 32]

Prints a JSON object: per API, the req/s of each run, and the share table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.loadgen import start_load, wrk_path
from bench.paced_upstream import Pacing
from bench.profile import record, summarize
from bench.stack import CLIENT_CPU, Stack, api_surfaces, running_stack

VIAS = ("gateway", "gateway_norec")
KINDS = ("chat", "messages_stream")
RATE_HZ = 250


def _inclusive_shares(raw: Path) -> tuple[int, Counter[str]]:
    """Busy samples, and per function the samples with it anywhere on the stack."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            total += int(count_text)
            for frame in set(stack.split(";")):
                inclusive[frame] += int(count_text)
    return total, inclusive


def _profiled_run(
    stack: Stack, kind: str, via: str, raw: Path, *, seconds: int, connections: int
) -> float:
    """One load run with py-spy appending its collapsed stacks to `raw`; the run's req/s."""
    spec = stack.spec(api_surfaces()[kind], via)
    generator = "wrk" if wrk_path() else "python"
    thread, load = start_load(
        spec, generator=generator, connections=connections, duration_s=seconds + 4, cpu=CLIENT_CPU
    )
    time.sleep(2)  # the load is on before sampling starts
    proc = stack.proc(via)
    assert proc is not None
    part = raw.with_suffix(".part")
    record(proc.pid, part, fmt="raw", duration_s=seconds, rate_hz=RATE_HZ, cpu=CLIENT_CPU)
    with raw.open("a") as out:
        out.write(part.read_text())
    thread.join()
    return load[0].rps


def _differences(raws: dict[str, Path], top: int) -> list[dict[str, Any]]:
    (on_total, on), (off_total, off) = (_inclusive_shares(raws[v]) for v in VIAS)
    rows: list[dict[str, Any]] = [
        {
            "function": frame,
            "on_pct": round(100 * on[frame] / on_total, 1),
            "off_pct": round(100 * off[frame] / off_total, 1),
        }
        for frame in set(on) | set(off)
    ]
    rows.sort(key=lambda r: float(r["off_pct"]) - float(r["on_pct"]))
    return rows[:top]


def measure(work: Path, *, seconds: int, rounds: int, connections: int) -> dict[str, Any]:
    out: dict[str, Any] = {"seconds": seconds, "rounds": rounds, "connections": connections}
    with running_stack(
        work, upstream_kind="fast", log_level="info", pacing=Pacing(), with_litellm=False
    ) as stack:
        for kind in KINDS:
            raws = {via: work / f"{kind}-{via}.txt" for via in VIAS}
            rps: dict[str, list[float]] = {via: [] for via in VIAS}
            for _ in range(rounds):
                for via in VIAS:
                    run = _profiled_run(
                        stack, kind, via, raws[via], seconds=seconds, connections=connections
                    )
                    rps[via].append(round(run, 1))
            out[kind] = {
                "rps": rps,
                "recording_share_on": summarize(raws["gateway"])["recording_inclusive"],
                "largest_differences": _differences(raws, 25),
            }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recording_profile", description=__doc__)
    parser.add_argument("--seconds", type=int, default=12, help="py-spy per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per gateway, in turns")
    parser.add_argument("--connections", type=int, default=32, help="closed-loop connections")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-recording-profile-") as tmp:
        result = measure(
            Path(tmp), seconds=args.seconds, rounds=args.rounds, connections=args.connections
        )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
