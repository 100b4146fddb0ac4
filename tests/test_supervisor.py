from __future__ import annotations

import itertools
from functools import partial

import pytest
import trio
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from aibridged.metrics import Metrics
from aibridged.supervisor import Backoff, open_writers, run_supervised


def _metrics() -> Metrics:
    return Metrics(CollectorRegistry(), process_metrics=False)


async def test_crashing_task_is_restarted_with_capped_exponential_backoff(
    autojump_clock: object,
) -> None:
    metrics = _metrics()
    starts: list[float] = []

    async def crashes(task_status: trio.TaskStatus[None]) -> None:
        starts.append(trio.current_time())
        task_status.started()
        raise RuntimeError("boom")

    with capture_logs() as logs, trio.move_on_after(40):
        await run_supervised("writer", crashes, metrics, backoff=Backoff(initial_s=1, max_s=8))
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(starts)]
    assert gaps[:6] == [1, 2, 4, 8, 8, 8]
    restarts = metrics.registry.get_sample_value(
        "coder_aibridged_task_restarts_total", {"task": "writer"}
    )
    assert restarts == len(starts)
    assert logs[0]["event"] == "supervisor.task_crashed"
    assert logs[0]["error"] == "RuntimeError: boom"


async def test_backoff_resets_after_a_long_healthy_run(autojump_clock: object) -> None:
    metrics = _metrics()
    starts: list[float] = []

    async def flaky(task_status: trio.TaskStatus[None]) -> None:
        starts.append(trio.current_time())
        task_status.started()
        if len(starts) == 3:
            await trio.sleep(100)  # healthy for a while, then crashes again
        raise ValueError("again")

    with trio.move_on_after(110):
        await run_supervised(
            "sweeper", flaky, metrics, backoff=Backoff(initial_s=1, reset_after_s=60)
        )
    assert [round(t, 6) for t in starts[:5]] == [0, 1, 3, 104, 106]


async def test_cancellation_stops_the_supervisor_without_counting_a_restart(
    autojump_clock: object,
) -> None:
    metrics = _metrics()

    async def forever(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep_forever()

    with trio.move_on_after(5):
        await run_supervised("reload", forever, metrics)
    assert (
        metrics.registry.get_sample_value("coder_aibridged_task_restarts_total", {"task": "reload"})
        is None
    )


async def test_started_is_reported_only_once_the_task_really_runs(
    nursery: trio.Nursery, autojump_clock: object
) -> None:
    """A task that crashes while starting keeps the caller waiting (consumers before
    producers): `start` returns once a run of it has reported started."""
    attempts: list[float] = []

    async def slow_to_start(task_status: trio.TaskStatus[None]) -> None:
        attempts.append(trio.current_time())
        if len(attempts) < 3:
            raise OSError("not yet")
        await trio.sleep(2)  # getting ready
        task_status.started()
        await trio.sleep_forever()

    await nursery.start(
        partial(run_supervised, "loop", slow_to_start, _metrics(), backoff=Backoff(initial_s=1))
    )
    assert attempts == [0, 1, 3] and trio.current_time() == 5
    nursery.cancel_scope.cancel()


async def test_a_task_that_returns_has_finished_and_is_not_restarted(
    autojump_clock: object,
) -> None:
    runs = 0

    async def done(task_status: trio.TaskStatus[None]) -> None:
        nonlocal runs
        runs += 1
        task_status.started()

    with capture_logs() as logs:
        await run_supervised("writer", done, _metrics())
    assert runs == 1 and [e["event"] for e in logs] == ["supervisor.task_finished"]


async def test_writers_drain_what_is_queued_after_their_input_closes(
    autojump_clock: object,
) -> None:
    written: list[int] = []
    drained_at: list[float] = []

    async def slow_writer(
        receive: trio.MemoryReceiveChannel[int], *, task_status: trio.TaskStatus[None]
    ) -> None:
        task_status.started()
        async for item in receive:
            await trio.sleep(1)  # a slow disk or database
            written.append(item)
        drained_at.append(trio.current_time())

    async with open_writers(_metrics()) as writers:
        send = await writers.start("records", slow_writer, capacity=10)
        for i in range(5):
            send.send_nowait(i)
    # Leaving the block closed the input and waited for the queue to empty.
    assert written == [0, 1, 2, 3, 4] and drained_at == [5]
    with pytest.raises(trio.ClosedResourceError):
        send.send_nowait(5)


async def test_a_writer_restarted_after_a_crash_keeps_what_was_queued(
    autojump_clock: object,
) -> None:
    written: list[int] = []

    async def crashes_on_three(
        receive: trio.MemoryReceiveChannel[int], *, task_status: trio.TaskStatus[None]
    ) -> None:
        task_status.started()
        async for item in receive:
            if item == 3 and 3 not in written:
                written.append(3)
                raise RuntimeError("a bad row")
            written.append(item)

    with capture_logs():
        async with open_writers(_metrics()) as writers:
            send = await writers.start("records", crashes_on_three, capacity=10)
            for i in range(6):
                send.send_nowait(i)
    assert written == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(("previous", "expected"), [(None, 0.5), (0.5, 1.0), (16, 30), (30, 30)])
def test_backoff_sequence(previous: float | None, expected: float) -> None:
    assert Backoff().next_delay(previous) == expected
