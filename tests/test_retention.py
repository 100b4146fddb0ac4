"""The retention sweeper on a real PostgreSQL: it removes exactly the interceptions older than the
window with all their child records (whole day partitions dropped, the boundary day and the
DEFAULT partitions deleted in batches), nothing with retention 0, never waits for recording's
locks, lets one replica sweep at a time, and keeps its 10-minute period."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import trio
import trio.lowlevel
import trio.testing
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from aibridged.errors import StoreUnavailable
from aibridged.metrics import Metrics
from aibridged.recorder import ensure_partitions
from aibridged.records import (
    InterceptionEnd,
    InterceptionStart,
    ModelThought,
    PromptUsage,
    TokenUsage,
    ToolUsage,
)
from aibridged.retention import Pacing, RetentionSweeper, SweepReport, next_deadline
from aibridged.store import Store, open_store
from aibridged.store.records import Stamped, create_partitions, insert_starts, write_batch
from aibridged.store.retention import SWEEP_LOCK, TABLES, SweepConnection
from tests.gateway import start_gateway
from tests.logs import watch_logs

NOW = datetime(2026, 6, 15, 9, 30, tzinfo=UTC)
RETENTION = timedelta(days=10)
CUTOFF = NOW - RETENTION  # 2026-06-05 09:30: that day is the boundary partition
FIRST_DAY = date(2026, 5, 25)  # day partitions from here to 2026-06-16
DAYS = 23

# Start times: whole old days, the boundary day on both sides of the cutoff (exactly at the
# cutoff is kept), newer days, and days without a partition of their own (DEFAULT), old and new.
OLD = [
    datetime(2026, 5, 26, 1, tzinfo=UTC),
    datetime(2026, 5, 26, 23, 59, tzinfo=UTC),
    datetime(2026, 5, 31, 12, tzinfo=UTC),
    datetime(2026, 6, 4, 23, 59, 59, tzinfo=UTC),
]
BOUNDARY_OLD = [
    datetime(2026, 6, 5, 0, 0, tzinfo=UTC),
    datetime(2026, 6, 5, 3, tzinfo=UTC),
    datetime(2026, 6, 5, 7, tzinfo=UTC),
    datetime(2026, 6, 5, 9, tzinfo=UTC),
    CUTOFF - timedelta(microseconds=1),
]
BOUNDARY_KEPT = [CUTOFF, CUTOFF + timedelta(hours=3)]
NEWER = [datetime(2026, 6, 10, tzinfo=UTC), NOW - timedelta(minutes=1)]
DEFAULT_OLD = [datetime(2026, 4, 2, 10, tzinfo=UTC), datetime(2026, 4, 3, 10, tzinfo=UTC)]
DEFAULT_NEW = [datetime(2026, 8, 1, 10, tzinfo=UTC)]
ALL = OLD + BOUNDARY_OLD + BOUNDARY_KEPT + NEWER + DEFAULT_OLD + DEFAULT_NEW


def _start(started_at: datetime) -> InterceptionStart:
    return InterceptionStart(
        id=uuid.uuid4(), initiator_id=uuid.uuid4(), api_key_id="abcdefghij", provider="openai",
        provider_name="openai", model="gpt-x", client="Unknown", client_session_id=None,
        user_agent="test", credential_kind="centralized", credential_hint="sk-a...bcde",
        thread_parent_id=None, thread_root_id=None, started_at=started_at,
    )  # fmt: skip


async def _record(store: Store, times: Sequence[datetime], *, children: bool = True) -> None:
    """Interceptions as the recorder writes them: the start, then every kind of child row and
    the end in one batch."""
    starts = [_start(at) for at in times]
    await insert_starts(store, starts)
    rows = []
    for s in starts if children else ():
        for record in (
            TokenUsage("msg_1", input=10, output=5),
            PromptUsage("hello"),
            ToolUsage("msg_1", tool="Read", call_id=f"call_{s.id.hex}", input="{}"),
            ToolUsage("msg_1", tool="Edit", call_id="", input="{}"),
            ModelThought("msg_1", content="hmm", source="thinking"),
        ):
            rows.append(Stamped(s.id, s.started_at, s.started_at, record))
    ends = [InterceptionEnd(s.id, s.started_at, s.started_at, "", "completed") for s in starts]
    await write_batch(store, rows, ends)


async def _orphan_usage(store: Store, started_at: datetime) -> None:
    """A token usage whose interception was never written."""
    row = Stamped(uuid.uuid4(), started_at, started_at, TokenUsage("msg_x", input=1, output=1))
    await write_batch(store, [row], [])


async def _rows(store: Store) -> dict[str, list[datetime]]:
    """Every table's rows, by start time."""

    async def fetch(conn: Any) -> dict[str, list[datetime]]:
        found = {}
        for table in TABLES:
            rows = await conn.fetch(f"SELECT started_at FROM {table} ORDER BY started_at")
            found[table] = [r["started_at"] for r in rows]
        return found

    return await store.run(fetch)


async def _partitions(store: Store) -> set[str]:
    rows = await store.run(
        lambda conn: conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'aibridge_interceptions'::regclass"
        )
    )
    return {r["relname"] for r in rows}


def _sweeper(store: Store, metrics: Metrics, **kw: Any) -> RetentionSweeper:
    options: dict[str, Any] = {
        "retention_s": RETENTION.total_seconds(),
        "pacing": Pacing(ratio=0.0, after_drop_s=0.0),
        "clock": lambda: NOW,
        **kw,
    }
    return RetentionSweeper(store, metrics, **options)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry(), process_metrics=False)


@pytest.fixture
async def recorded(store: Store) -> dict[str, list[datetime]]:
    await create_partitions(store, FIRST_DAY, DAYS)
    await _record(store, ALL)
    await _orphan_usage(store, DEFAULT_OLD[0])  # removed: older than the window
    await _orphan_usage(store, DEFAULT_NEW[0])  # kept
    return await _rows(store)


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value("coder_aibridged_" + name, labels)
    return 0.0 if value is None else value


async def test_a_sweep_removes_exactly_what_is_older_than_the_window_with_its_children(
    store: Store, metrics: Metrics, recorded: dict[str, list[datetime]]
) -> None:
    report = await _sweeper(store, metrics, batch_rows=2).sweep_once()

    assert report is not None and report.cutoff == CUTOFF
    after = await _rows(store)
    for table in TABLES:
        assert after[table] == [at for at in recorded[table] if at >= CUTOFF], table
    assert len(after["aibridge_interceptions"]) == len(BOUNDARY_KEPT + NEWER + DEFAULT_NEW)
    assert len(after["aibridge_tool_usages"]) == 2 * len(after["aibridge_interceptions"])
    removed = len(OLD + BOUNDARY_OLD + DEFAULT_OLD)
    assert report.purged == {
        "interception": removed,
        "token_usage": removed + 1,  # the old orphan too
        "prompt_usage": removed,
        "tool_usage": 2 * removed,
        "model_thought": removed,
    }
    assert _sample(metrics, "retention_purged_records_total", record="tool_usage") == 2 * removed
    # The thread lookup's call index keeps the calls of the interceptions kept, and only those.
    calls = await store.run(
        lambda conn: conn.fetch("SELECT started_at FROM aibridge_tool_calls ORDER BY started_at")
    )
    assert [r["started_at"] for r in calls] == after["aibridge_interceptions"]
    assert report.tool_calls_deleted == removed
    assert _sample(metrics, "retention_sweeps_total", result="ok") == 1
    assert _sample(metrics, "retention_last_sweep_success_timestamp_seconds") > 0


async def test_days_wholly_outside_the_window_are_dropped_and_the_boundary_day_kept(
    store: Store, metrics: Metrics, recorded: dict[str, list[datetime]]
) -> None:
    report = await _sweeper(store, metrics, batch_rows=2).sweep_once()

    assert report is not None
    old_days = (CUTOFF.date() - FIRST_DAY).days  # 2026-05-25 .. 2026-06-04
    assert report.partitions_dropped == old_days * len(TABLES)
    assert _sample(metrics, "retention_partitions_dropped_total") == old_days * len(TABLES)
    left = await _partitions(store)
    assert "aibridge_interceptions_20260604" not in left
    assert {"aibridge_interceptions_20260605", "aibridge_interceptions_default"} <= left
    # The boundary day's five old interceptions went in batches of two: 2 + 2 + 1; the DEFAULT
    # partition's two in one batch of 2 and an empty one.
    assert report.batches == 3 + 2


async def test_with_retention_0_nothing_is_removed_and_partitions_are_still_made_ahead(
    store: Store, metrics: Metrics, recorded: dict[str, list[datetime]]
) -> None:
    before = await _partitions(store)
    report = await _sweeper(store, metrics, retention_s=0).sweep_once()

    assert report is not None and report.cutoff is None and report.purged_total == 0
    assert await _rows(store) == recorded
    made = await _partitions(store) - before
    ahead = [NOW.date() + timedelta(days=n) for n in range(2, 8)]  # 06-17 .. 06-22 were missing
    assert made == {f"aibridge_interceptions_{day:%Y%m%d}" for day in ahead}
    assert report.partitions_created == len(ahead) * len(TABLES)


async def test_a_day_whose_rows_are_in_default_already_does_not_stop_the_days_after_it(
    store: Store, metrics: Metrics, recorded: dict[str, list[datetime]]
) -> None:
    early = datetime(2026, 6, 18, 8, tzinfo=UTC)  # before the partitions ahead reach it
    await _record(store, [early])
    with capture_logs() as logs:
        report = await _sweeper(store, metrics, retention_s=0).sweep_once()

    assert report is not None
    made = {f"aibridge_interceptions_202606{day}" for day in (17, 19, 20, 21, 22)}
    assert made <= await _partitions(store)
    assert "aibridge_interceptions_20260618" not in await _partitions(store)
    [blocked] = [e for e in logs if e["event"] == "retention.partitions_blocked"]
    assert blocked["days"] == ["2026-06-18"]
    assert early in (await _rows(store))["aibridge_interceptions"]


async def test_a_drop_that_would_wait_for_recording_is_left_for_the_next_sweep(
    store: Store, metrics: Metrics, recorded: dict[str, list[datetime]], database_url: str
) -> None:
    recording = await store.connect()  # a writer in the middle of its transaction
    try:
        await store.call(recording.execute, "BEGIN")
        await store.call(
            recording.execute, "LOCK TABLE aibridge_interceptions IN ROW EXCLUSIVE MODE"
        )
        with capture_logs() as logs:
            with trio.fail_after(10):
                report = await _sweeper(store, metrics).sweep_once()
        await store.call(recording.execute, "ROLLBACK")
    finally:
        await store.call(recording.close)

    assert report is not None
    old_days = (CUTOFF.date() - FIRST_DAY).days
    assert (report.partitions_dropped, report.drops_deferred) == (0, old_days)
    assert "aibridge_interceptions_20260526" in await _partitions(store)
    deferred = [e for e in logs if e["event"] == "retention.drop_deferred"]
    assert deferred[0]["partitions"][0] == "aibridge_interceptions_20260525"
    assert len(deferred) == 2  # 11 days: groups of 8 and 3
    # The day's children stay with their interceptions; the boundary's batches do not need the
    # table lock and went ahead.
    after = await _rows(store)
    assert after["aibridge_token_usages"].count(OLD[0]) == 1
    assert not [
        at for at in after["aibridge_interceptions"] if at.date() == CUTOFF.date() and at < CUTOFF
    ]
    assert _sample(metrics, "retention_drops_deferred_total") == old_days

    report = await _sweeper(store, metrics).sweep_once()
    assert report is not None and report.partitions_dropped == old_days * len(TABLES)
    assert min((await _rows(store))["aibridge_token_usages"]) >= CUTOFF


async def test_a_failing_sweep_is_logged_and_counted_and_keeps_what_it_did(
    store: Store, metrics: Metrics, recorded: dict[str, list[datetime]]
) -> None:
    await store.run(
        lambda conn: conn.execute(
            "ALTER FUNCTION aibridge_create_partitions(date, integer) RENAME TO elsewhere"
        )
    )
    sweeper = _sweeper(store, metrics)
    with capture_logs() as logs:
        assert await sweeper.sweep_once() is None
    failed = [e for e in logs if e["event"] == "retention.sweep_failed"]
    assert len(failed) == 1 and "aibridge_create_partitions" in failed[0]["error"]
    assert _sample(metrics, "retention_sweeps_total", result="failed") == 1
    assert _sample(metrics, "retention_sweep_duration_seconds_count") == 1
    assert _sample(metrics, "retention_last_sweep_success_timestamp_seconds") == 0
    assert sweeper.statistics().failures == 1
    # Creating partitions ahead is the last step: what was older than the window went anyway.
    assert min((await _rows(store))["aibridge_interceptions"]) >= CUTOFF

    await store.run(
        lambda conn: conn.execute(
            "ALTER FUNCTION elsewhere(date, integer) RENAME TO aibridge_create_partitions"
        )
    )
    assert await sweeper.sweep_once() is not None
    assert _sample(metrics, "retention_sweeps_total", result="ok") == 1


class _HeldSweeper(RetentionSweeper):
    """Stops inside the sweep lock until `release` is set."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.holding = trio.Event()
        self.release = trio.Event()

    async def _sweep_locked(self, conn: SweepConnection) -> SweepReport:
        self.holding.set()
        await self.release.wait()
        return await super()._sweep_locked(conn)


async def test_two_sweepers_on_one_database_never_sweep_at_once(
    store: Store, metrics: Metrics, recorded: dict[str, list[datetime]], database_url: str
) -> None:
    first = _HeldSweeper(store, metrics, retention_s=RETENTION.total_seconds(), pacing=Pacing(0, 0),
                         clock=lambda: NOW)  # fmt: skip
    async with open_store(
        database_url, pool_size=2, connect_timeout_s=10
    ) as other_store:  # another replica: a pool of its own
        second = _sweeper(other_store, metrics)
        async with trio.open_nursery() as nursery:
            results: list[SweepReport | None] = []

            async def sweep_first() -> None:
                results.append(await first.sweep_once())

            nursery.start_soon(sweep_first)
            with trio.fail_after(10):
                await first.holding.wait()
            with capture_logs() as logs:
                skipped = await second.sweep_once()
            assert skipped is not None and skipped.skipped and skipped.purged_total == 0
            assert logs[-1]["event"] == "retention.sweep_skipped"
            assert logs[-1]["reason"] == "another replica holds the lock"
            assert (await _rows(store)) == recorded  # nothing moved while the first held on
            first.release.set()
        assert results[0] is not None and results[0].purged["interception"] > 0
        # The first let go of the lock: the second sweeps now (and finds nothing left).
        done = await second.sweep_once()
        assert done is not None and not done.skipped and done.purged_total == 0
    assert _sample(metrics, "retention_sweeps_total", result="skipped") == 1
    assert _sample(metrics, "retention_sweeps_total", result="ok") == 2


async def test_a_lock_held_by_any_other_session_makes_the_sweep_skip(
    store: Store, metrics: Metrics, recorded: dict[str, list[datetime]], database_url: str
) -> None:
    other = await store.connect()
    try:
        assert await store.call(other.fetchval, "SELECT pg_try_advisory_lock($1)", SWEEP_LOCK)
        report = await _sweeper(store, metrics).sweep_once()
        assert report is not None and report.skipped
        assert await _rows(store) == recorded
    finally:
        await store.call(other.close)


class _TimedSweeper(RetentionSweeper):
    """No database: each sweep takes the virtual time it is told, or fails."""

    def __init__(self, metrics: Metrics, durations: list[float | None]) -> None:
        super().__init__(cast(Store, None), metrics, retention_s=0)
        self.durations = durations
        self.starts: list[float] = []
        self.done = trio.Event()

    async def sweep(self) -> SweepReport:
        self.starts.append(trio.current_time())
        duration = self.durations[len(self.starts) - 1]
        if len(self.starts) == len(self.durations):
            self.done.set()
        if duration is None:
            raise StoreUnavailable("database unavailable: connection refused")
        await trio.sleep(duration)
        return SweepReport()


async def test_the_period_holds_however_long_a_sweep_takes(
    metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    sweeper = _TimedSweeper(metrics, [250.0, 10.0, 599.0, 0.0, 0.0])
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        nursery.start_soon(sweeper.run)
        await sweeper.done.wait()
        nursery.cancel_scope.cancel()
    assert [t - start for t in sweeper.starts] == [0.0, 600.0, 1200.0, 1800.0, 2400.0]


async def test_a_sweep_that_overruns_skips_the_beats_it_missed(
    metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    sweeper = _TimedSweeper(metrics, [700.0, 0.0, 1300.0, 0.0])
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        nursery.start_soon(sweeper.run)
        await sweeper.done.wait()
        nursery.cancel_scope.cancel()
    assert [t - start for t in sweeper.starts] == [0.0, 1200.0, 1800.0, 3600.0]


async def test_after_a_failed_sweep_the_next_runs_on_time(
    metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    sweeper = _TimedSweeper(metrics, [None, 5.0, None])
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            nursery.start_soon(sweeper.run)
            await sweeper.done.wait()
            await trio.lowlevel.checkpoint()  # the third's failure is logged
            nursery.cancel_scope.cancel()
    assert [t - start for t in sweeper.starts] == [0.0, 600.0, 1200.0]
    assert [e["event"] for e in logs if e["event"].startswith("retention.")] == [
        "retention.sweep_failed",
        "retention.swept",
        "retention.sweep_failed",
    ]
    assert _sample(metrics, "retention_sweeps_total", result="failed") == 2
    assert _sample(metrics, "retention_sweeps_total", result="ok") == 1
    assert sweeper.statistics().failures == 2


def test_next_deadline_keeps_the_grid() -> None:
    assert next_deadline(0.0, 600.0, 0.5) == 600.0
    assert next_deadline(600.0, 600.0, 1199.0) == 1200.0
    assert next_deadline(600.0, 600.0, 1200.0) == 1800.0  # a sweep of exactly one period
    assert next_deadline(0.0, 600.0, 1900.0) == 2400.0


async def test_the_daemon_sweeps_at_start(
    nursery: trio.Nursery, store: Store, database_url: str, tmp_path: Path
) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    await create_partitions(store, old.date(), 1)
    await ensure_partitions(store)
    await _record(store, [old, datetime.now(UTC)])
    with watch_logs() as logs:
        gw = await start_gateway(
            nursery,
            database_url=database_url,
            state_dir=tmp_path,
            flags={"ai_gateway.retention": "1d"},
        )
        with trio.fail_after(30):  # 5 drops, each followed by a second of rest
            [swept] = await logs.wait_for("retention.swept")
    assert swept["interception"] == 1 and swept["partitions_dropped"] == len(TABLES)
    assert (await _rows(store))["aibridge_interceptions"][0] > old
    sweeps = gw.registry.get_sample_value(
        "coder_aibridged_retention_sweeps_total", {"result": "ok"}
    )
    assert sweeps == 1
