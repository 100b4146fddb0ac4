"""The recorder: interception starts committed before anything goes upstream, everything else
written behind the request by a batching writer.

- **Starts** are committed before the request's first byte goes upstream, by group commit
  (aibridged/group_commit.py): `submit` queues one, the request prepares its upstream call
  while the commit is in flight, and waits for it (`PendingStart.committed`) just before sending.
  A start that cannot be committed fails its request (500 `failed to record interception`).
  The daemon commits them on a trio-native connection of their own (`starts_runner`): its
  round trip skips trio-asyncio's scheduling rounds. What the request records before its start
  is committed waits on the `PendingStart` and is queued once it is (dropped, with the start, if
  the commit failed: no row of an interception that does not exist).
- **Child rows** (token usage, prompts, tools, thoughts) go into a bounded queue; the request
  never waits for them. A full queue drops the new row, counted per kind
  (`coder_aibridged_recorder_dropped_total{record}`) and logged at most every 10 s.
- **Ends** are never dropped: each committed start owns one end, so their queue is bounded by
  the interceptions in flight (a database that is down fails new starts, so no new ends come).
- The writer retries a failed batch with backoff and keeps it; at shutdown it drains what is
  queued, giving up after `drain_timeout_s` with what is left counted as dropped.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
import trio

from aibridged.errors import StoreError
from aibridged.group_commit import START_TIMEOUT_S, StartBatch, StartCommitter
from aibridged.metrics import Metrics
from aibridged.records import (
    InterceptionEnd,
    InterceptionStart,
    ModelThought,
    PromptUsage,
    TokenUsage,
    ToolUsage,
    child_log_fields,
    start_log_fields,
)
from aibridged.store.db import Runner
from aibridged.store.native import NativePool
from aibridged.store.records import Stamped, write_batch
from aibridged.store.retention import Created, create_partitions_ahead

log = structlog.get_logger("aibridged.recorder")

RETRY_START_S, RETRY_MAX_S = 0.5, 5.0
DROP_LOG_EVERY_S = 10.0
KNOWN_CALLS = 100_000  # tool call ids remembered for threads (the database answers the rest)

ChildRecord = TokenUsage | PromptUsage | ToolUsage | ModelThought
_KIND = {
    TokenUsage: "token_usage",
    PromptUsage: "prompt_usage",
    ToolUsage: "tool_usage",
    ModelThought: "model_thought",
}


class RecordTap(Protocol):
    """Told of each record as the request hands it over (tracing makes its spans of them)."""

    def added(self, interception: InterceptionStart, record: ChildRecord) -> None: ...

    def ended(self, record: InterceptionEnd) -> None: ...


@dataclass(frozen=True, slots=True)
class RecorderStatistics:
    queued_rows: int
    queued_ends: int
    starts_committed: int
    start_commits: int  # group commits: starts_committed / start_commits starts shared each
    batches: int
    rows_written: int
    ends_written: int
    dropped: int
    last_error: str


class PendingStart:
    """A submitted start, and what its interception records until the start is committed."""

    __slots__ = ("_batch", "_end", "_recorder", "_rows", "record")

    def __init__(self, recorder: Recorder, record: InterceptionStart, batch: StartBatch) -> None:
        self._recorder, self.record, self._batch = recorder, record, batch
        self._rows: list[ChildRecord] = []
        self._end: InterceptionEnd | None = None
        batch.settle.append(self._settle)

    @property
    def failed(self) -> bool:
        return self._batch.error is not None

    async def wait_sent(self) -> None:
        """Until this start's commit (or the one in flight before it) is on its way."""
        if not self._batch.done.is_set():
            await self._recorder._committer.wait_sent()

    async def committed(self) -> InterceptionStart:
        """The start as committed, with its thread; StoreError if it could not be."""
        await self._batch.done.wait()
        if self._batch.error is not None:
            error = self._batch.error
            raise StoreError(f"failed to record interception: {error}") from error
        return self.record

    def add(self, record: ChildRecord) -> None:
        """`Recorder.add`, once the start is committed (never, if it failed)."""
        recorder = self._recorder
        recorder._tapped(self.record, record)
        if self._batch.done.is_set():
            if self._batch.error is None:
                recorder._queue_row(self.record, record)
        else:
            self._rows.append(record)

    def end(self, record: InterceptionEnd) -> None:
        """`Recorder.end`, once the start is committed (never, if it failed)."""
        recorder = self._recorder
        if recorder.tap is not None:
            recorder.tap.ended(record)
        if self._batch.done.is_set():
            if self._batch.error is None:
                recorder._queue_end(record)
        else:
            self._end = record

    def _settle(self, batch: StartBatch) -> None:
        if batch.error is not None:
            self._rows.clear()
            self._end = None
            return
        self.record = self._recorder._committed(self.record, batch)
        for row in self._rows:
            self._recorder._queue_row(self.record, row)
        self._rows.clear()
        if self._end is not None:
            self._recorder._queue_end(self._end)
            self._end = None


class Recorder:
    def __init__(
        self,
        runner: Runner,
        metrics: Metrics,
        *,
        queue_rows: int = 50_000,
        batch_rows: int = 2_000,
        flush_interval_s: float = 0.05,
        drain_timeout_s: float = 10.0,
        structured_logging: bool = False,
        starts_runner: NativePool | None = None,
    ) -> None:
        """`runner` writes the batches; `starts_runner`, when given, commits the starts (the
        daemon's: a trio-native connection, its round trip without trio-asyncio's
        scheduling, store/native.py), else `runner` does."""
        self._runner, self._metrics = runner, metrics
        self._queue_rows, self._batch_rows = queue_rows, batch_rows
        self._flush_interval_s, self._drain_timeout_s = flush_interval_s, drain_timeout_s
        self._structured = structured_logging
        self._rows: deque[Stamped] = deque()
        self._ends: deque[InterceptionEnd] = deque()
        self._committer = StartCommitter(
            starts_runner or runner,
            on_error=self._note_error,
            on_round=lambda: self._rows_wanted.set(),  # a drain waits for the last commit
        )
        self._rows_wanted = trio.Event()
        self._written = trio.Event()  # set (and replaced) after each batch written
        self._closed = False
        self._calls: OrderedDict[str, tuple[uuid.UUID, uuid.UUID]] = OrderedDict()
        self._counts = {"batches": 0, "rows": 0, "ends": 0, "dropped": 0}
        self._last_error = ""
        self._last_drop_log = -DROP_LOG_EVERY_S
        self.tap: RecordTap | None = None
        metrics.recorder_queue.labels(queue="rows").set_function(lambda: len(self._rows))
        metrics.recorder_queue.labels(queue="ends").set_function(lambda: len(self._ends))

    # -- the request side -----------------------------------------------------------------------

    def submit(self, record: InterceptionStart) -> PendingStart:
        """Queue `record` for the next group commit (never waits). Its thread comes from the
        tool calls this replica remembers, else the commit finds it in the database."""
        if record.thread_parent_id is None and record.correlating_call_id:
            known = self._calls.get(record.correlating_call_id)
            if known is not None:
                record = replace(record, thread_parent_id=known[0], thread_root_id=known[1])
        lookup = record.thread_parent_id is None and record.correlating_call_id is not None
        return PendingStart(self, record, self._committer.submit(record, lookup=lookup))

    async def start(self, record: InterceptionStart) -> InterceptionStart:
        """Commit `record` (with whatever starts arrive meanwhile); StoreError if it failed.
        Returns it with its thread as committed."""
        return await self.submit(record).committed()

    def _committed(self, record: InterceptionStart, batch: StartBatch) -> InterceptionStart:
        """`record` as `batch` committed it (its thread, if the statement found one)."""
        if batch.lookup:
            parent, root = batch.threads.get(record.id, (None, None))
            if parent is not None:  # `replace` costs more than the lookup's bookkeeping
                record = replace(record, thread_parent_id=parent, thread_root_id=root)
        if self._structured:  # the fields are built only for a line that is written
            self._log_record("interception_start", record.id, start_log_fields(record))
        return record

    def add(self, interception: InterceptionStart, record: ChildRecord) -> None:
        """Queue a child row of a committed start (never waits; a full queue drops it,
        counted)."""
        self._tapped(interception, record)
        self._queue_row(interception, record)

    def end(self, record: InterceptionEnd) -> None:
        """Queue the end of a committed start (never dropped)."""
        if self.tap is not None:
            self.tap.ended(record)
        self._queue_end(record)

    def _tapped(self, interception: InterceptionStart, record: ChildRecord) -> None:
        # The tap (tracing) sees a record where it is handed over: in its request's task.
        if self.tap is not None:
            self.tap.added(interception, record)

    def _queue_row(self, interception: InterceptionStart, record: ChildRecord) -> None:
        kind = _KIND[type(record)]
        if isinstance(record, ToolUsage) and record.call_id:
            self._remember_call(record.call_id, interception)
        if len(self._rows) >= self._queue_rows:
            self._dropped(kind)
            return
        now = datetime.now(UTC)
        root = interception.thread_root_id
        self._rows.append(Stamped(interception.id, interception.started_at, now, record, root))
        self._rows_wanted.set()
        self._count_metrics(interception, record)
        if self._structured:
            self._log_record(kind, interception.id, child_log_fields(record, now))

    def _queue_end(self, record: InterceptionEnd) -> None:
        self._ends.append(record)
        self._rows_wanted.set()
        if self._structured:
            self._log_record(
                "interception_end", record.id, {"ended_at": record.ended_at.isoformat()}
            )

    def _remember_call(self, call_id: str, interception: InterceptionStart) -> None:
        root = interception.thread_root_id or interception.id
        self._calls[call_id] = (interception.id, root)
        if len(self._calls) > KNOWN_CALLS:
            self._calls.popitem(last=False)

    def _dropped(self, kind: str) -> None:
        self._counts["dropped"] += 1
        self._metrics.recorder_dropped.labels(record=kind).inc()
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_EVERY_S:
            self._last_drop_log = now
            log.warning("recorder.dropped", record=kind, queued=len(self._rows),
                        dropped_so_far=self._counts["dropped"])  # fmt: skip

    def count_prompt(self, interception: InterceptionStart, *, answered: bool) -> None:
        """`prompts_total`, once the answer's status is known (a model name is admitted as a
        label only after a 2xx, like the other series do)."""
        provider = interception.provider_name
        if answered:
            model = self._metrics.admit_model(provider, interception.model)
        else:
            model = self._metrics.model_label(provider, interception.model)
        self._metrics.child(self._metrics.prompts, provider, model).inc()

    def _count_metrics(self, interception: InterceptionStart, record: ChildRecord) -> None:
        # Usage, tools and thoughts come from a successful (2xx) upstream answer.
        provider = interception.provider_name
        model = self._metrics.admit_model(provider, interception.model)
        if isinstance(record, TokenUsage):
            for kind, value in (("input", record.input), ("output", record.output),
                                ("cache_read", record.cache_read),
                                ("cache_write", record.cache_write)):  # fmt: skip
                if value:
                    self._metrics.child(self._metrics.tokens, provider, model, kind).inc(value)
        elif isinstance(record, ToolUsage) and not record.injected:
            self._metrics.child(self._metrics.tool_selections, provider, model).inc()

    def _log_record(self, kind: str, interception_id: uuid.UUID, fields: dict[str, Any]) -> None:
        if self._structured:
            log.info("interception log", record_type=kind, interception_id=str(interception_id),
                     **fields)  # fmt: skip

    # -- the writer side ------------------------------------------------------------------------

    def close(self) -> None:
        """No more records: the writer drains what is queued, then returns."""
        self._closed = True
        self._rows_wanted.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._committer.run)
            task_status.started()
            await self._write_rows()
            nursery.cancel_scope.cancel()

    async def _write_rows(self) -> None:
        backoff = RETRY_START_S
        drain_deadline: float | None = None
        while True:
            if not self._rows and not self._ends:
                if self._closed and self._committer.settled:
                    return
                await self._rows_wanted.wait()
                self._rows_wanted = trio.Event()
                if not self._closed and len(self._rows) < self._batch_rows:
                    await trio.sleep(self._flush_interval_s)  # let a batch gather
                continue
            if self._closed and drain_deadline is None:
                drain_deadline = trio.current_time() + self._drain_timeout_s
            rows = [self._rows.popleft() for _ in range(min(len(self._rows), self._batch_rows))]
            ends = [self._ends.popleft() for _ in range(min(len(self._ends), self._batch_rows))]
            try:
                await self._write(rows, ends)
                backoff = RETRY_START_S
            except (StoreError, trio.TooSlowError) as exc:
                self._note_error(exc)
                self._rows.extendleft(reversed(rows))  # kept, in order, for the next try
                self._ends.extendleft(reversed(ends))
                if drain_deadline is not None and trio.current_time() >= drain_deadline:
                    self._give_up()
                    return
                await trio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)

    async def _write(self, rows: list[Stamped], ends: list[InterceptionEnd]) -> None:
        with trio.fail_after(START_TIMEOUT_S * 2):
            await write_batch(self._runner, rows, ends)
        self._counts["batches"] += 1
        self._counts["rows"] += len(rows)
        self._counts["ends"] += len(ends)
        self._written.set()
        self._written = trio.Event()
        self._metrics.recorder_batches.inc()
        for row in rows:
            self._metrics.child(self._metrics.recorder_rows, _KIND[type(row.record)]).inc()
        if ends:
            self._metrics.child(self._metrics.recorder_rows, "interception_end").inc(len(ends))

    def _give_up(self) -> None:
        lost_rows, lost_ends = len(self._rows), len(self._ends)
        for row in self._rows:
            self._metrics.recorder_dropped.labels(record=_KIND[type(row.record)]).inc()
        if lost_ends:
            self._metrics.recorder_dropped.labels(record="interception_end").inc(lost_ends)
        self._counts["dropped"] += lost_rows + lost_ends
        log.error("recorder.drain_gave_up", rows=lost_rows, ends=lost_ends,
                  error=self._last_error)  # fmt: skip
        self._rows.clear()
        self._ends.clear()

    def _note_error(self, exc: BaseException) -> None:
        self._last_error = str(exc) or "timed out"
        self._metrics.recorder_errors.inc()
        log.warning("recorder.write_failed", error=self._last_error)

    async def wait_written(self, ends: int) -> None:
        """Until at least `ends` interception ends have been written in all."""
        while self._counts["ends"] < ends:
            await self._written.wait()

    def statistics(self) -> RecorderStatistics:
        return RecorderStatistics(
            queued_rows=len(self._rows),
            queued_ends=len(self._ends),
            starts_committed=self._committer.starts,
            start_commits=self._committer.commits,
            batches=self._counts["batches"],
            rows_written=self._counts["rows"],
            ends_written=self._counts["ends"],
            dropped=self._counts["dropped"],
            last_error=self._last_error,
        )


PARTITION_DAYS_AHEAD = 7


async def ensure_partitions(runner: Runner, *, today: datetime | None = None) -> Created:
    """Day partitions from yesterday to a week ahead exist (creates what is missing, day by
    day, never waiting for a table lock). At startup; the retention sweeper
    (aibridged/retention.py) keeps them ahead from then on."""
    day = (today or datetime.now(UTC)).date() - timedelta(days=1)
    return await runner.run(create_partitions_ahead, day, PARTITION_DAYS_AHEAD + 2)
