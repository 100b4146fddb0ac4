"""Processes the bench starts: pinned with ``taskset``, sampled through /proc, stopped by PID.

Everything started here is stopped by its own PID (SIGTERM, then SIGKILL after a timeout); the
gateway's embedded PostgreSQL is stopped by the PID in its ``postmaster.pid`` if the gateway could
not stop it itself.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Protocol

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raise_nofile(limit: int) -> int:
    """Raise this process's open-file limit (soft and hard) to at least ``limit``, as far as the
    kernel allows (root may raise the hard limit up to fs.nr_open); returns the soft limit now."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < limit:
        _set_nofile(_nofile_target(limit))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def nofile_limit(pid: int) -> int | None:
    """The soft "Max open files" of process ``pid`` (from /proc/<pid>/limits)."""
    try:
        with open(f"/proc/{pid}/limits") as file:
            for line in file:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        pass
    return None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def pinning_available() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pinned(cmd: Sequence[str], cpu: int | None) -> list[str]:
    """``cmd`` run under ``taskset -c cpu`` (taskset execs it: the PID stays the command's)."""
    if cpu is None or not pinning_available():
        return list(cmd)
    return ["taskset", "-c", str(cpu), *cmd]


@dataclass(frozen=True, slots=True)
class Memory:
    rss_kb: int
    peak_rss_kb: int  # VmHWM


class Proc:
    """A started process, known by PID."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        stdout_pipe: bool = False,
        cwd: Path | None = None,
        nofile: int | None = None,
    ) -> None:
        """``nofile``: the open-file limit the process starts with (raised in the child)."""
        self.name = name
        self.cmd = list(cmd)
        self.log_path = log_path
        self._log: IO[bytes] | None = open(log_path, "wb") if log_path else None  # noqa: SIM115
        self.popen = subprocess.Popen(
            self.cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else (self._log or subprocess.DEVNULL),
            stderr=self._log or subprocess.DEVNULL,
            preexec_fn=None if nofile is None else partial(_set_nofile, _nofile_target(nofile)),
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU time so far (from /proc/<pid>/stat)."""
        with open(f"/proc/{self.pid}/stat", "rb") as file:
            fields = file.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def memory(self) -> Memory:
        values: dict[str, int] = {}
        with open(f"/proc/{self.pid}/status") as file:
            for line in file:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0])
        return Memory(rss_kb=values.get("VmRSS", 0), peak_rss_kb=values.get("VmHWM", 0))

    def read_line(self, timeout_s: float) -> str:
        """One line of stdout (only with ``stdout_pipe=True``)."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.popen.stdout], [], [], 0.1)
            if ready:
                return self.popen.stdout.readline().decode()
            if not self.alive():
                break
        raise RuntimeError(
            f"{self.name} printed nothing within {timeout_s:.0f} s ({self.log_tail()})"
        )

    def log_tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "no log"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, *, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed. Returns the exit code."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.popen.returncode


def _nofile_target(limit: int) -> tuple[int, int]:
    """(soft, hard) for a child: ``limit`` within what this process may set."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if os.geteuid() == 0:
        try:
            with open("/proc/sys/fs/nr_open") as file:
                limit = min(limit, int(file.read()))
        except (OSError, ValueError):
            pass
        return limit, max(hard, limit)
    return min(limit, hard), hard


def _set_nofile(limits: tuple[int, int]) -> None:
    """Runs in the child between fork and exec: system calls only. Without CAP_SYS_RESOURCE even
    root cannot raise the hard limit: then the soft limit goes up to the hard one."""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)
    except (OSError, ValueError):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(limits[0], hard), hard))


def stop_postmaster(data_dir: Path, *, timeout_s: float = 20.0) -> bool:
    """Stop a PostgreSQL left running in ``data_dir`` (by its postmaster.pid). True if one was."""
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def wait_http_ok(url: str, *, timeout_s: float, proc: Proc | None = None) -> float:
    """Poll ``url`` until it answers 200; returns the seconds waited."""
    started = time.monotonic()
    deadline = started + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(
                f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    tail = proc.log_tail() if proc is not None else ""
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s ({last})\n{tail}")


def core_times() -> dict[str, tuple[int, int]]:
    """Per CPU (``cpu0``, ``cpu1``, ...): (busy, total) jiffies from /proc/stat."""
    out: dict[str, tuple[int, int]] = {}
    with open("/proc/stat") as file:
        for line in file:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                values = [
                    int(v) for v in fields[:8]
                ]  # user nice system idle iowait irq softirq steal
                idle = values[3] + values[4]
                out[name] = (sum(values) - idle, sum(values))
    return out


def busy_per_core(seconds: float) -> dict[str, float]:
    """How busy each CPU is over ``seconds`` (everything on the machine), in %."""
    before = core_times()
    time.sleep(seconds)
    after = core_times()
    return {
        core: round(100.0 * (busy - before[core][0]) / max(1, total - before[core][1]), 1)
        for core, (busy, total) in after.items()
    }


def wait_until_quiet(*, max_wait_s: float, busy_pct: float = 10.0) -> dict[str, float]:
    """Sample each second until every CPU is below ``busy_pct`` or ``max_wait_s`` has passed;
    returns the last sample."""
    deadline = time.monotonic() + max_wait_s
    while True:
        sample = busy_per_core(1.0)
        if all(v < busy_pct for v in sample.values()) or time.monotonic() >= deadline:
            return sample


def calibrate(cpu: int | None, *, repeats: int = 5) -> float:
    """Milliseconds a fixed pure-Python loop takes on ``cpu`` (best of ``repeats``).

    Shared virtual machines change speed under us (a 2x swing was seen while writing this): the
    same number at the start and the end of a run says the machine kept its speed.
    """
    previous = os.sched_getaffinity(0)
    if cpu is not None and pinning_available():
        os.sched_setaffinity(0, {cpu})
    try:
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            total = 0
            for i in range(200_000):
                total += i % 7
            best = min(best, time.perf_counter() - started)
        return round(best * 1000, 2)
    finally:
        os.sched_setaffinity(0, previous)


class Sampled(Protocol):
    """What ``CpuSampler`` samples: a ``Proc``, or a process tree (``bench.database``)."""

    name: str

    def alive(self) -> bool: ...

    def cpu_seconds(self) -> float: ...


class CpuSampler:
    """CPU used between ``start()`` and ``stop()``: by some processes (as % of one core), and
    per core by everything (to see other work on the machine)."""

    def __init__(self, procs: Sequence[Sampled]) -> None:
        self._procs = [p for p in procs if p.alive()]
        self._start: dict[str, float] = {}
        self._cores: dict[str, tuple[int, int]] = {}
        self._started_at = 0.0

    def start(self) -> None:
        self._started_at = time.monotonic()
        self._start = {p.name: p.cpu_seconds() for p in self._procs}
        self._cores = core_times()

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._started_at
        out = {
            p.name: round(100.0 * (p.cpu_seconds() - self._start[p.name]) / elapsed, 1)
            for p in self._procs
        }
        for core, (busy, total) in core_times().items():
            busy0, total0 = self._cores.get(core, (busy, total))
            if total > total0:
                out[f"{core}_busy"] = round(100.0 * (busy - busy0) / (total - total0), 1)
        return out
