"""The retention sweeper: interceptions (and their child records) older than
`ai_gateway.retention` go; the day partitions recording needs next are made ahead.

A sweep runs at start and then every `period_s` (10 minutes) on a fixed grid: each deadline is
the previous one plus the period, whatever the sweep took, and a sweep that overran skips the
beats it missed instead of running back to back. One sweep, on one connection of its own
(aibridged/store/retention.py says why):

1. takes the sweep lock (`pg_try_advisory_lock`); held by another replica: skipped;
2. drops every day partition that lies wholly before the cutoff (now - retention), table by
   table, the interceptions' first, up to `DROP_GROUP` of one table in one transaction.
   Partitions whose lock is not granted at once stay for the next sweep, and so do their days'
   child tables when they are the interceptions';
3. deletes what is older than the cutoff from the boundary day's partitions and the DEFAULT
   partitions, in batches of `batch_rows` interceptions with their child records, each batch
   one transaction; then child rows in the DEFAULT partitions whose interception is gone;
4. deletes the thread lookup's call index rows (`aibridge_tool_calls`) of interceptions older
   than the cutoff, in batches (an index of the tool usages, not records: not in `purged`);
5. creates the day partitions from yesterday to a week ahead (aibridged/recorder.py).

With `retention_s` 0 only step 5 runs. After each step the sweeper rests (`Pacing`) as long
as the step took, so it never takes more than about half of the database's time from
recording, and at least a second after a DROP.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial

import structlog
import trio

from aibridged.errors import StoreError
from aibridged.metrics import Metrics
from aibridged.recorder import ensure_partitions
from aibridged.store import Store
from aibridged.store.retention import (
    CHILDREN,
    KINDS,
    PARENT,
    TABLES,
    Partition,
    SweepConnection,
    count_rows,
    delete_batch,
    delete_orphans,
    delete_tool_calls,
    drop_partitions,
    list_partitions,
    open_sweep_connection,
    try_lock,
    unlock,
)

log = structlog.get_logger("aibridged.retention")

SWEEP_PERIOD_S = 600.0
BATCH_ROWS = 5_000  # interceptions per delete statement (each with its child records)
DROP_GROUP = 8  # partitions of one table dropped in one transaction


@dataclass(frozen=True, slots=True)
class Pacing:
    """How long the sweeper rests after each step: `ratio` x the time the step took, and at
    least `after_drop_s` after a DROP (each holds recording up for its lock's few ms)."""

    ratio: float = 1.0
    after_drop_s: float = 1.0


PACING = Pacing()
DAY = timedelta(days=1)


@dataclass(slots=True)
class SweepReport:
    """What one sweep did."""

    skipped: bool = False  # another replica holds the lock
    cutoff: datetime | None = None  # None: retention 0, nothing is removed
    purged: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS.values(), 0))
    partitions_dropped: int = 0
    drops_deferred: int = 0
    batches: int = 0  # delete statements of the boundary and DEFAULT partitions
    tool_calls_deleted: int = 0  # rows of the call index
    partitions_created: int = 0
    duration_s: float = 0.0

    @property
    def purged_total(self) -> int:
        return sum(self.purged.values())


@dataclass(frozen=True, slots=True)
class RetentionStatistics:
    retention_s: float
    sweeps: int  # that ran (not skipped)
    skipped: int
    failures: int
    purged: int  # records removed since start
    last_success_at: str  # ISO time, "" before the first
    last_duration_s: float
    last_error: str


def next_deadline(previous: float, period_s: float, now: float) -> float:
    """The first `previous + k * period_s` (k ≥ 1) that lies after `now`."""
    missed = max(0, math.floor((now - previous) / period_s))
    return previous + (missed + 1) * period_s


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RetentionSweeper:
    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        retention_s: float,
        period_s: float = SWEEP_PERIOD_S,
        batch_rows: int = BATCH_ROWS,
        pacing: Pacing = PACING,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._store, self._metrics = store, metrics
        self._retention = timedelta(seconds=retention_s)
        self._period_s, self._batch_rows = period_s, batch_rows
        self._pacing, self._clock = pacing, clock
        self._counts = {"sweeps": 0, "skipped": 0, "failures": 0, "purged": 0}
        self._last_success_at = ""
        self._last_duration_s = 0.0
        self._last_error = ""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sweep now, then every period, until cancelled."""
        task_status.started()
        deadline = trio.current_time()
        while True:
            await self.sweep_once()
            deadline = next_deadline(deadline, self._period_s, trio.current_time())
            await trio.sleep_until(deadline)

    async def sweep_once(self) -> SweepReport | None:
        """One sweep, counted and logged; None when it failed (the next one tries again)."""
        self._metrics.retention_last_sweep.set(time.time())
        started = trio.current_time()
        try:
            report = await self.sweep()
        except StoreError as exc:
            self._failed(exc, trio.current_time() - started)
            return None
        if report.skipped:
            self._counts["skipped"] += 1
            self._metrics.child(self._metrics.retention_sweeps, "skipped").inc()
            log.info("retention.sweep_skipped", reason="another replica holds the lock")
            return report
        report.duration_s = trio.current_time() - started
        self._succeeded(report)
        return report

    async def sweep(self) -> SweepReport:
        """One sweep, uncounted; StoreError when a step failed (what was done stays done)."""
        async with open_sweep_connection(self._store) as conn:
            if not await conn.run(try_lock):
                return SweepReport(skipped=True)
            try:
                return await self._sweep_locked(conn)
            finally:
                # Closing the connection would release the lock too, but only once the server
                # has noticed: unlock, so the next sweeper (of any replica) finds it free.
                # A broken connection: the server drops its locks with it.
                with trio.CancelScope(shield=True), trio.move_on_after(5), suppress(StoreError):
                    await conn.run(unlock)

    async def _sweep_locked(self, conn: SweepConnection) -> SweepReport:
        now = self._clock()
        report = SweepReport()
        if self._retention:
            report.cutoff = now - self._retention
            partitions = await conn.run(list_partitions)
            await self._drop_old_days(conn, partitions, report)
            await self._delete_boundary(conn, partitions, report)
            await self._delete_tool_calls(conn, report)
        created = await ensure_partitions(conn, today=now)
        report.partitions_created = created.partitions
        if created.deferred:
            log.info("retention.partitions_deferred", days=[str(d) for d in created.deferred],
                     reason="table lock not granted at once")  # fmt: skip
        if created.blocked:
            log.warning("retention.partitions_blocked", days=[str(d) for d in created.blocked],
                        reason="rows of these days are in a DEFAULT partition already")  # fmt: skip
        return report

    async def _drop_old_days(
        self, conn: SweepConnection, partitions: list[Partition], report: SweepReport
    ) -> None:
        assert report.cutoff is not None
        cutoff = report.cutoff
        old = sorted(
            (p for p in partitions if p.day and _day_start(p.day) + DAY <= cutoff),
            key=lambda p: p.name,
        )
        # Table by table, the interceptions first: once they are gone no listing shows their
        # days, so a child table left for the next sweep is invisible meanwhile. Recording
        # waits while a DROP holds its table's lock, so a few days go in one transaction (one
        # short wait instead of one per day) and the sweeper rests after each.
        staying: set[date | None] = set()  # days whose interceptions stay: their children too
        for table in TABLES:
            mine = [p for p in old if p.table == table and p.day not in staying]
            for first in range(0, len(mine), DROP_GROUP):
                group = mine[first : first + DROP_GROUP]
                if not await self._drop_group(conn, group, report) and table == PARENT:
                    staying |= {p.day for p in group}

    async def _drop_group(
        self, conn: SweepConnection, group: list[Partition], report: SweepReport
    ) -> bool:
        started = trio.current_time()
        rows = [await conn.run(count_rows, partition) for partition in group]
        dropped = await conn.run(drop_partitions, group)
        await self._rest(trio.current_time() - started, at_least_s=self._pacing.after_drop_s)
        if not dropped:
            report.drops_deferred += len(group)
            self._metrics.retention_drops_deferred.inc(len(group))
            log.info("retention.drop_deferred", partitions=[p.name for p in group],
                     reason="table lock not granted at once")  # fmt: skip
            return False
        report.partitions_dropped += len(group)
        self._metrics.retention_partitions_dropped.inc(len(group))
        for partition, count in zip(group, rows, strict=True):
            self._purged(report, KINDS[partition.table], count)
        return True

    async def _delete_boundary(
        self, conn: SweepConnection, partitions: list[Partition], report: SweepReport
    ) -> None:
        assert report.cutoff is not None
        boundary = report.cutoff.astimezone(UTC).date()
        defaults = {p.table: p.name for p in partitions if p.day is None}
        day = {p.table: p.name for p in partitions if p.day == boundary}
        targets: list[dict[str, str]] = []
        # A child table without the day's partition has that day's rows in its DEFAULT one.
        if PARENT in day and all(t in day or t in defaults for t in CHILDREN):
            targets.append({t: day[t] if t in day else defaults[t] for t in TABLES})
        has_defaults = all(t in defaults for t in TABLES)
        if has_defaults:
            targets.append(defaults)
        for target in targets:
            await self._delete_in_batches(conn, target, report)
        if has_defaults:
            for child in CHILDREN:
                await self._delete_orphans(conn, child, defaults, report)

    async def _delete_in_batches(
        self, conn: SweepConnection, target: dict[str, str], report: SweepReport
    ) -> None:
        assert report.cutoff is not None
        while True:
            started = trio.current_time()
            counts = await conn.run(delete_batch, target, report.cutoff, self._batch_rows)
            report.batches += 1
            for kind, rows in counts.items():
                self._purged(report, kind, rows)
            await self._rest(trio.current_time() - started)
            if counts["interception"] < self._batch_rows:
                return

    async def _delete_orphans(
        self, conn: SweepConnection, child: str, defaults: dict[str, str], report: SweepReport
    ) -> None:
        """Rows of `child`'s DEFAULT partition older than the cutoff whose interception is gone."""
        assert report.cutoff is not None
        await self._until_short(
            conn,
            partial(delete_orphans, child=defaults[child], parent=defaults[PARENT],
                    cutoff=report.cutoff),
            partial(self._purged, report, KINDS[child]),
        )  # fmt: skip

    async def _delete_tool_calls(self, conn: SweepConnection, report: SweepReport) -> None:
        assert report.cutoff is not None

        def deleted(rows: int) -> None:
            report.tool_calls_deleted += rows

        await self._until_short(conn, partial(delete_tool_calls, cutoff=report.cutoff), deleted)

    async def _until_short(
        self,
        conn: SweepConnection,
        delete: Callable[..., Awaitable[int]],
        counted: Callable[[int], None],
    ) -> None:
        """`delete` (given the connection and `limit`) in batches, each counted as it commits,
        resting after each, until a batch comes back short."""
        while True:
            started = trio.current_time()
            rows = await conn.run(delete, limit=self._batch_rows)
            counted(rows)
            await self._rest(trio.current_time() - started)
            if rows < self._batch_rows:
                return

    async def _rest(self, step_s: float, *, at_least_s: float = 0.0) -> None:
        await trio.sleep(max(step_s * self._pacing.ratio, at_least_s))

    def _purged(self, report: SweepReport, kind: str, rows: int) -> None:
        # Counted as each step commits: a sweep that fails later still reports what it removed.
        if rows:
            report.purged[kind] += rows
            self._counts["purged"] += rows
            self._metrics.child(self._metrics.retention_purged, kind).inc(rows)

    def _succeeded(self, report: SweepReport) -> None:
        self._counts["sweeps"] += 1
        self._last_success_at = datetime.now(UTC).isoformat()
        self._last_duration_s = report.duration_s
        self._metrics.child(self._metrics.retention_sweeps, "ok").inc()
        self._metrics.retention_sweep_duration.observe(report.duration_s)
        self._metrics.retention_last_sweep_success.set(time.time())
        fields = {
            "cutoff": report.cutoff.isoformat() if report.cutoff else None,
            "purged": report.purged_total,
            **{k: v for k, v in report.purged.items() if v},
            "partitions_dropped": report.partitions_dropped,
            "drops_deferred": report.drops_deferred,
            "batches": report.batches,
            "tool_calls_deleted": report.tool_calls_deleted,
            "partitions_created": report.partitions_created,
            "duration_s": round(report.duration_s, 3),
        }
        if report.purged_total or report.partitions_dropped or report.partitions_created:
            log.info("retention.swept", **fields)
        else:
            log.debug("retention.swept", **fields)

    def _failed(self, exc: StoreError, duration_s: float) -> None:
        self._counts["sweeps"] += 1
        self._counts["failures"] += 1
        self._last_error = str(exc)
        self._metrics.child(self._metrics.retention_sweeps, "failed").inc()
        self._metrics.retention_sweep_duration.observe(duration_s)
        log.warning("retention.sweep_failed", error=str(exc), retry_in_s=self._period_s)

    def statistics(self) -> RetentionStatistics:
        return RetentionStatistics(
            retention_s=self._retention.total_seconds(),
            sweeps=self._counts["sweeps"],
            skipped=self._counts["skipped"],
            failures=self._counts["failures"],
            purged=self._counts["purged"],
            last_success_at=self._last_success_at,
            last_duration_s=round(self._last_duration_s, 3),
            last_error=self._last_error,
        )


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
