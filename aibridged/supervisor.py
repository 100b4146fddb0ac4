"""Background tasks: restarts with capped exponential backoff, and writers that drain on shutdown.

Only non-critical loops (record writer, dump writer, sweeper, reload loop) run under
`run_supervised`. The HTTP listener and the store are not supervised: their failure ends the
daemon with a non-zero exit so that systemd restarts the whole unit.

Writers (`open_writers`) are supervised tasks fed by bounded channels. The daemon opens them after
the store and before the listener, so on shutdown the order is: the listener drains → the writers'
inputs close → each writer empties its channel and returns → the store closes: every pending
record and dump is flushed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import structlog
import trio

from aibridged.metrics import Metrics, TaskMetrics

log = structlog.get_logger("aibridged.supervisor")

T = TypeVar("T")
# A supervised task takes `task_status` and calls `task_status.started()` once it really runs.
SupervisedTask = Callable[..., Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    # A task that ran this long before crashing starts again from `initial_s`.
    reset_after_s: float = 60.0

    def next_delay(self, previous_s: float | None) -> float:
        if previous_s is None:
            return self.initial_s
        return min(previous_s * self.factor, self.max_s)


async def run_supervised(
    name: str,
    task: SupervisedTask,
    metrics: TaskMetrics,
    *,
    backoff: Backoff = Backoff(),
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run `task` until it returns or this is cancelled, restarting it whenever it crashes.

    Reports started only once the first run of `task` has reported started, so whatever the
    caller starts next ("consumers before producers") finds it running. A task that returns has
    finished its job (a writer whose input closed) and is not restarted.
    """
    delay: float | None = None
    reported = False
    while True:
        started = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(task)
                if not reported:
                    reported = True
                    task_status.started()
        # The one place that must survive any crash of the task it watches: that is its job.
        # Cancellation (a BaseException) still passes straight through.
        except Exception as exc:
            failure = _sole(exc)
        else:
            log.info("supervisor.task_finished", task=name)
            return
        if trio.current_time() - started >= backoff.reset_after_s:
            delay = None
        delay = backoff.next_delay(delay)
        metrics.task_restarts.labels(task=name).inc()
        log.error(
            "supervisor.task_crashed",
            task=name,
            restart_in_s=delay,
            error=f"{type(failure).__name__}: {failure}",
            exc_info=failure,
        )
        await trio.sleep(delay)


def _sole(exc: Exception) -> Exception:
    """The crash itself rather than the one-member groups the nurseries wrapped it in."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


WriterTask = Callable[..., Awaitable[None]]  # (receive_channel, *, task_status) -> None


class Writers:
    """The writer tasks of the daemon, each fed by a bounded channel of its own."""

    def __init__(self, nursery: trio.Nursery, metrics: Metrics) -> None:
        self._nursery = nursery
        self._metrics = metrics
        self._inputs: list[trio.MemorySendChannel[Any]] = []
        self._closers: list[Callable[[], None]] = []

    async def start(
        self, name: str, writer: WriterTask, *, capacity: int
    ) -> trio.MemorySendChannel[Any]:
        """Start `writer(receive_channel, task_status=...)` supervised; returns its input.

        A restarted writer gets the same channel back, so nothing queued is lost to a crash.
        """
        send: trio.MemorySendChannel[Any]
        send, receive = trio.open_memory_channel(capacity)
        await self._nursery.start(run_supervised, name, partial(writer, receive), self._metrics)
        self._inputs.append(send)
        return send

    async def start_task(
        self, name: str, run: Callable[..., Awaitable[None]], close: Callable[[], None]
    ) -> None:
        """Start a writer with its own queue: `run(task_status=...)` supervised, `close()` called
        when the producers are done (it must then drain and return)."""
        await self._nursery.start(run_supervised, name, run, self._metrics)
        self._closers.append(close)

    def close_inputs(self) -> None:
        """No more producers: each writer drains what is queued, then returns."""
        for send in self._inputs:
            send.close()
        for close in self._closers:
            close()


@asynccontextmanager
async def open_writers(metrics: Metrics) -> AsyncIterator[Writers]:
    """Writers live inside this block; leaving it closes their inputs and waits for the drain."""
    async with trio.open_nursery() as nursery:
        writers = Writers(nursery, metrics)
        try:
            yield writers
        finally:
            writers.close_inputs()
