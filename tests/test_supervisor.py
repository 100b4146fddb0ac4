from __future__ import annotations

import itertools

import pytest
import trio
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from aibridged.metrics import Metrics
from aibridged.supervisor import Backoff, run_supervised


async def test_crashing_task_is_restarted_with_capped_exponential_backoff(
    autojump_clock: object,
) -> None:
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    starts: list[float] = []

    async def crashes() -> None:
        starts.append(trio.current_time())
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
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    starts: list[float] = []

    async def flaky() -> None:
        starts.append(trio.current_time())
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
    metrics = Metrics(CollectorRegistry(), process_metrics=False)

    async def forever() -> None:
        await trio.sleep_forever()

    with trio.move_on_after(5):
        await run_supervised("reload", forever, metrics)
    assert metrics.registry.get_sample_value(
        "coder_aibridged_task_restarts_total", {"task": "reload"}
    ) in (None, 0.0)


@pytest.mark.parametrize(("previous", "expected"), [(None, 0.5), (0.5, 1.0), (16, 30), (30, 30)])
def test_backoff_sequence(previous: float | None, expected: float) -> None:
    assert Backoff().next_delay(previous) == expected
