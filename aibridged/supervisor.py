"""Restarting crashed background tasks with capped exponential backoff.

Only non-critical loops (record writer, dump writer, sweeper, reload loop) run under
`run_supervised`. The HTTP listener and the store are not supervised: their failure ends the
daemon with a non-zero exit so that systemd restarts the whole unit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
import trio

from aibridged.metrics import Metrics

log = structlog.get_logger("aibridged.supervisor")


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
    task: Callable[[], Awaitable[None]],
    metrics: Metrics,
    *,
    backoff: Backoff = Backoff(),
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run `task` until cancelled, restarting it whenever it crashes or returns."""
    task_status.started()
    delay: float | None = None
    while True:
        started = trio.current_time()
        try:
            await task()
        # The one place that must survive any crash of the task it watches: that is its job.
        # Cancellation (a BaseException) still passes straight through.
        except Exception as exc:
            failure: BaseException | None = exc
        else:
            failure = None
        if trio.current_time() - started >= backoff.reset_after_s:
            delay = None
        delay = backoff.next_delay(delay)
        metrics.task_restarts.labels(task=name).inc()
        if failure is None:
            log.error("supervisor.task_returned", task=name, restart_in_s=delay)
        else:
            log.error(
                "supervisor.task_crashed",
                task=name,
                restart_in_s=delay,
                error=f"{type(failure).__name__}: {failure}",
                exc_info=failure,
            )
        await trio.sleep(delay)
