"""The recorder: interception starts committed before anything goes upstream, everything else
written behind the request by a batching writer.

- **Starts** are committed synchronously (the request waits), by group commit: starts that
  arrive while a commit is in flight share the next one, so a burst costs one round trip, not
  one each. A start that cannot be committed fails its request (500 `failed to record
  interception`). The daemon commits them on a trio-native connection of their own
  (`starts_runner`): its round trip skips trio-asyncio's scheduling rounds.
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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
import trio

from aibridged.errors import StoreError
from aibridged.metrics import Metrics
from aibridged.records import (
    InterceptionEnd,
    InterceptionStart,
    ModelThought,
    PromptUsage,
    TokenUsage,
    ToolUsage,
)
from aibridged.store.db import Runner
from aibridged.store.native import NativePool
from aibridged.store.records import (
    Stamped,
    insert_starts,
    insert_starts_finding_threads,
    write_batch,
)
from aibridged.store.retention import Created, create_partitions_ahead

log = structlog.get_logger("aibridged.recorder")

START_TIMEOUT_S = 5.0
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
    batches: int
    rows_written: int
    ends_written: int
    dropped: int
    last_error: str


@dataclass(slots=True)
class _StartBatch:
    records: list[InterceptionStart] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None
    threads: dict[uuid.UUID, tuple[uuid.UUID | None, uuid.UUID | None]] = field(
        default_factory=dict
    )


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
        self._starts_runner: Runner | NativePool = starts_runner or runner
        self._queue_rows, self._batch_rows = queue_rows, batch_rows
        self._flush_interval_s, self._drain_timeout_s = flush_interval_s, drain_timeout_s
        self._structured = structured_logging
        self._rows: deque[Stamped] = deque()
        self._ends: deque[InterceptionEnd] = deque()
        self._next_starts = _StartBatch()  # threads known (or none)
        self._next_lookups = _StartBatch()  # threads to find in the database
        self._starts_wanted = trio.Event()
        self._rows_wanted = trio.Event()
        self._written = trio.Event()  # set (and replaced) after each batch written
        self._closed = False
        self._calls: OrderedDict[str, tuple[uuid.UUID, uuid.UUID]] = OrderedDict()
        self._counts = {"starts": 0, "batches": 0, "rows": 0, "ends": 0, "dropped": 0}
        self._last_error = ""
        self._last_drop_log = -DROP_LOG_EVERY_S
        self.tap: RecordTap | None = None
        metrics.recorder_queue.labels(queue="rows").set_function(lambda: len(self._rows))
        metrics.recorder_queue.labels(queue="ends").set_function(lambda: len(self._ends))

    # -- the request side -----------------------------------------------------------------------

    async def start(self, record: InterceptionStart) -> InterceptionStart:
        """Commit `record` (with whatever starts arrive meanwhile); StoreError if it failed.
        Returns it with its thread as committed (found in the database when it answers a
        tool call this replica does not know of)."""
        if record.thread_parent_id is None and record.correlating_call_id:
            known = self._calls.get(record.correlating_call_id)
            if known is not None:
                record = replace(record, thread_parent_id=known[0], thread_root_id=known[1])
        lookup = record.thread_parent_id is None and record.correlating_call_id is not None
        batch = self._next_lookups if lookup else self._next_starts
        batch.records.append(record)
        self._starts_wanted.set()
        await batch.done.wait()
        if batch.error is not None:
            raise StoreError(f"failed to record interception: {batch.error}") from batch.error
        if lookup:
            parent, root = batch.threads.get(record.id, (None, None))
            if parent is not None:  # `replace` costs more than the lookup's bookkeeping
                record = replace(record, thread_parent_id=parent, thread_root_id=root)
        if self._structured:  # the fields are built only for a line that is written
            self._log_record("interception_start", record.id, _start_fields(record))
        return record

    def add(self, interception: InterceptionStart, record: ChildRecord) -> None:
        """Queue a child row (never waits; a full queue drops it, counted)."""
        kind = _KIND[type(record)]
        if self.tap is not None:
            self.tap.added(interception, record)
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
            self._log_record(kind, interception.id, _child_fields(record, now))

    def end(self, record: InterceptionEnd) -> None:
        """Queue the end of a started interception (never dropped)."""
        if self.tap is not None:
            self.tap.ended(record)
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
        self._starts_wanted.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._commit_starts)
            task_status.started()
            await self._write_rows()
            nursery.cancel_scope.cancel()

    async def _commit_starts(self) -> None:
        while True:
            await self._starts_wanted.wait()
            self._starts_wanted = trio.Event()
            plain, self._next_starts = self._next_starts, _StartBatch()
            lookups, self._next_lookups = self._next_lookups, _StartBatch()
            if plain.records:
                await self._commit(plain, lookup=False)
            if lookups.records:
                await self._commit(lookups, lookup=True)

    async def _commit(self, batch: _StartBatch, *, lookup: bool) -> None:
        try:
            with trio.fail_after(START_TIMEOUT_S):
                if lookup:
                    batch.threads = await insert_starts_finding_threads(
                        self._starts_runner, batch.records
                    )
                else:
                    await insert_starts(self._starts_runner, batch.records)
            self._counts["starts"] += len(batch.records)
        except (StoreError, trio.TooSlowError) as exc:
            batch.error = exc
            self._note_error(exc)
        finally:
            batch.done.set()

    async def _write_rows(self) -> None:
        backoff = RETRY_START_S
        drain_deadline: float | None = None
        while True:
            if not self._rows and not self._ends:
                if self._closed:
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
            starts_committed=self._counts["starts"],
            batches=self._counts["batches"],
            rows_written=self._counts["rows"],
            ends_written=self._counts["ends"],
            dropped=self._counts["dropped"],
            last_error=self._last_error,
        )


def _start_fields(record: InterceptionStart) -> dict[str, Any]:
    return {
        "initiator_id": str(record.initiator_id),
        "api_key_id": record.api_key_id,
        "provider": record.provider,
        "provider_name": record.provider_name,
        "model": record.model,
        "client": record.client,
        "client_session_id": record.client_session_id,
        "started_at": record.started_at.isoformat(),
        "thread_parent_id": str(record.thread_parent_id) if record.thread_parent_id else None,
        "thread_root_id": str(record.thread_root_id) if record.thread_root_id else None,
        "metadata": dict(record.metadata),
    }


def _child_fields(record: ChildRecord, created_at: datetime) -> dict[str, Any]:
    fields: dict[str, Any] = {"created_at": created_at.isoformat()}
    if isinstance(record, TokenUsage):
        fields.update(msg_id=record.response_id, input_tokens=record.input,
                      output_tokens=record.output, cache_read_input_tokens=record.cache_read,
                      cache_write_input_tokens=record.cache_write,
                      metadata=dict(record.extra))  # fmt: skip
    elif isinstance(record, PromptUsage):
        fields.update(msg_id=record.response_id, prompt=record.prompt)
    elif isinstance(record, ToolUsage):
        fields.update(msg_id=record.response_id, tool_call_id=record.call_id, tool=record.tool,
                      input=record.input, server_url=record.server_url, injected=record.injected,
                      invocation_error=record.invocation_error)  # fmt: skip
    else:
        fields.update(content=record.content, metadata={"source": record.source})
    return fields


PARTITION_DAYS_AHEAD = 7


async def ensure_partitions(runner: Runner, *, today: datetime | None = None) -> Created:
    """Day partitions from yesterday to a week ahead exist (creates what is missing, day by
    day, never waiting for a table lock). At startup; the retention sweeper
    (aibridged/retention.py) keeps them ahead from then on."""
    day = (today or datetime.now(UTC)).date() - timedelta(days=1)
    return await runner.run(create_partitions_ahead, day, PARTITION_DAYS_AHEAD + 2)
