"""Profiling the gateway with py-spy while it is under load, and summarising where time goes.

py-spy attaches to the running gateway by PID (sampling at ``rate`` Hz, pausing it briefly per
sample), writes a flamegraph SVG and, in a second window, collapsed stacks ("raw") that
``summarize`` turns into own-time and inclusive-time tables plus a per-package split.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import pinned


def py_spy_path() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def py_spy_version() -> str | None:
    path = py_spy_path()
    if path is None:
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip().removeprefix("py-spy ") or None


@dataclass(frozen=True, slots=True)
class Recording:
    path: Path
    command: list[str]


def record(
    pid: int, output: Path, *, fmt: str, duration_s: int, rate_hz: int, cpu: int | None
) -> Recording:
    """One py-spy recording of ``pid`` (``fmt``: flamegraph or raw), per function."""
    py_spy = py_spy_path()
    if py_spy is None:
        raise RuntimeError("py-spy is not installed (pip install -e '.[bench]')")
    cmd = pinned(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(duration_s),
            "--rate",
            str(rate_hz),
            "--nolineno",
            "--format",
            fmt,
            "--output",
            str(output),
        ],
        cpu,
    )
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60, check=False)
    if out.returncode != 0 or not output.exists():
        raise RuntimeError(f"py-spy failed ({out.returncode}): {out.stderr[-800:]}")
    return Recording(output, cmd)


def _package(frame: str) -> str:
    """``func (pkg/mod.py)`` → ``pkg`` (the stdlib module name for top-level files)."""
    start = frame.rfind("(")
    location = frame[start + 1 : -1] if start >= 0 else frame
    head = location.split("/", 1)[0]
    return head.removesuffix(".py") if "/" not in location else head


# What recording adds to the hot path, by where its frames are (a sample counts once per group).
RECORDING_FRAMES: dict[str, tuple[str, ...]] = {
    "the recorder (aibridged/recorder.py)": ("(aibridged/recorder.py)",),
    "the request's recording (aibridged/api/recording.py)": ("(aibridged/api/recording.py)",),
    "recording's SQL (aibridged/store/records.py, native.py)": (
        "(aibridged/store/records.py)",
        "(aibridged/store/native.py)",
    ),
    "extraction (aibridged/intercept/extract/)": ("(aibridged/intercept/extract/",),
    "the database bridge (trio_asyncio, asyncio, asyncpg)": (
        "(trio_asyncio/",
        "(asyncio/",
        "(asyncpg/",
    ),
}
RECORDING_ANY = "any of these"


def _touches(stack: str, marks: tuple[str, ...]) -> bool:
    return any(mark in stack for mark in marks)


def summarize(raw: Path, *, top: int = 20) -> dict[str, Any]:
    """Own time (the sampled leaf frame), inclusive time and own time per package."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    recording: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count
        touched = {name for name, marks in RECORDING_FRAMES.items() if _touches(stack, marks)}
        for name in touched:
            recording[name] += count
        if touched:
            recording[RECORDING_ANY] += count
    if total == 0:
        return {"samples": 0}

    def rows(counter: Counter[str], limit: int, skip_over: float = 2.0) -> list[dict[str, Any]]:
        picked = [(k, v) for k, v in counter.most_common() if v / total < skip_over][:limit]
        return [{"function": k, "samples": v, "pct": round(100 * v / total, 1)} for k, v in picked]

    return {
        "samples": total,
        "own": rows(own, top),
        # Frames on (nearly) every stack — the entry point, trio's run loop — say nothing.
        "inclusive": rows(inclusive, top, skip_over=0.97),
        # The gateway's own stages, to see which step of the hot path the time belongs to.
        "aibridged_inclusive": [
            row
            for row in rows(inclusive, 10_000, skip_over=0.97)
            if "(aibridged/" in row["function"]
        ][:top],
        # Stacks in recording's code (inclusive): where a recording gateway's extra time goes.
        "recording_inclusive": [
            {
                "function": name,
                "samples": recording[name],
                "pct": round(100 * recording[name] / total, 1),
            }
            for name in (*RECORDING_FRAMES, RECORDING_ANY)
        ],
        "own_by_package": [
            {"package": k, "samples": v, "pct": round(100 * v / total, 1)}
            for k, v in packages.most_common(15)
        ],
    }
