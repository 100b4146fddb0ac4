"""The bench's PostgreSQL: one embedded server (the gateway's own ``pgserver`` binaries) that both
gateways use (``database.url``), the recording-on one writing its interceptions to it, and that the
recorder's write-rate scenario (``bench.recorder_rate``) writes to in a database of its own.

The server is started by the bench, pinned to one CPU (``taskset`` semantics: the postmaster and
every backend it forks inherit the affinity of the thread that started it), and stopped by the bench
(by its ``postmaster.pid`` if the clean stop fails). ``ProcessTree`` samples the CPU of the
postmaster and all its backends, so the report can say what the database cost.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.procs import CLOCK_TICKS, pinning_available, stop_postmaster


@dataclass(slots=True)
class Database:
    uri: str  # the server's own database (``postgres``)
    data_dir: Path
    pid: int
    cpu: int | None
    startup_s: float

    def dsn(self, database: str) -> str:
        """The URI of another database on the same server."""
        head, sep, tail = self.uri.partition("/postgres?")
        if sep:
            return f"{head}/{database}?{tail}"
        return self.uri.replace("/postgres", f"/{database}")

    def tree(self) -> ProcessTree:
        return ProcessTree("postgres", self.pid)


class ProcessTree:
    """A process and its children, duck-typed like ``procs.Proc`` for ``CpuSampler``: CPU time
    of the live processes plus what the root has reaped (``cutime``/``cstime``)."""

    def __init__(self, name: str, pid: int) -> None:
        self.name = name
        self.pid = pid

    def alive(self) -> bool:
        return Path(f"/proc/{self.pid}").exists()

    def pids(self) -> list[int]:
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            for task in _tasks(pid):
                with contextlib.suppress(OSError, ValueError):
                    todo += [
                        int(c)
                        for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                    ]
        return out

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            fields = _stat(pid)
            if fields:
                total += int(fields[11]) + int(fields[12])
                if pid == self.pid:
                    total += int(fields[13]) + int(fields[14])
        return total / CLOCK_TICKS


def _tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def _stat(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return []


@contextlib.contextmanager
def running_database(data_dir: Path, *, cpu: int | None) -> Iterator[Database]:
    """Start the embedded server under ``data_dir`` pinned to ``cpu`` (None: unpinned), stop it
    on the way out."""
    from aibridged.store.embedded import start_embedded_postgres

    previous = os.sched_getaffinity(0)
    started = time.monotonic()
    server = None
    try:
        if cpu is not None and pinning_available():
            os.sched_setaffinity(0, {cpu})  # this thread only: what pg_ctl and postgres inherit
        try:
            server = start_embedded_postgres(data_dir)
        finally:
            os.sched_setaffinity(0, previous)
        pid = server.pid
        if pid is None:
            raise RuntimeError(f"the bench's PostgreSQL under {data_dir} has no PID")
        yield Database(server.uri, data_dir, pid, cpu, time.monotonic() - started)
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop()
        stop_postmaster(data_dir)
