"""The recorder on a real PostgreSQL: group-committed starts, batched rows, ends that are never
dropped, bounded memory while the database is away, and the drain."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from aibridged.errors import StoreError, StoreUnavailable
from aibridged.metrics import Metrics
from aibridged.recorder import Recorder, ensure_partitions
from aibridged.records import (
    InterceptionEnd,
    InterceptionStart,
    ModelThought,
    PromptUsage,
    TokenUsage,
    ToolUsage,
)
from aibridged.startup import recorder_connections
from aibridged.store import Store
from aibridged.store.native import NativePool
from aibridged.store.records import Stamped, insert_starts, write_batch


def _start(**kw: Any) -> InterceptionStart:
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "initiator_id": uuid.uuid4(),
        "api_key_id": "abcdefghij",
        "provider": "openai",
        "provider_name": "openai",
        "model": "gpt-x",
        "client": "Unknown",
        "client_session_id": None,
        "user_agent": "test",
        "credential_kind": "centralized",
        "credential_hint": "sk-a...bcde",
        "thread_parent_id": None,
        "thread_root_id": None,
        "started_at": datetime.now(UTC),
    }
    return InterceptionStart(**{**fields, **kw})


def _end(start: InterceptionStart) -> InterceptionEnd:
    return InterceptionEnd(start.id, start.started_at, datetime.now(UTC), "", "completed")


class CountingRunner:
    """The store, counting the statements that reach it, failing while `down` is set."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: list[str] = []
        self.down = False
        self.refused: set[str] = set()  # statements that fail (by function name)
        self.hold: trio.Event | None = None  # while set and not released, calls wait

    async def run(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kw: Any) -> Any:
        self.calls.append(fn.__name__)
        if self.hold is not None:
            await self.hold.wait()
        if self.down or fn.__name__ in self.refused:
            raise StoreUnavailable("database unavailable: connection refused")
        return await self.store.run(fn, *args, **kw)


@pytest.fixture
async def runner(store: Store) -> CountingRunner:
    await ensure_partitions(store)
    return CountingRunner(store)


@pytest.fixture
async def recorder(runner: CountingRunner) -> AsyncIterator[Recorder]:
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    rec = Recorder(runner, metrics, queue_rows=100, flush_interval_s=0.01, drain_timeout_s=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(rec.run)
        yield rec
        rec.close()


async def _count(store: Store, table: str) -> int:
    return int(await store.run(lambda conn: conn.fetchval(f"SELECT count(*) FROM {table}")))


async def test_starts_arriving_together_share_one_commit(
    recorder: Recorder, runner: CountingRunner, store: Store
) -> None:
    starts = [_start() for _ in range(20)]
    runner.hold = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.start, starts[0])
        await trio.testing.wait_all_tasks_blocked()
        assert runner.calls == ["_insert_starts"]  # the first commit is in flight
        for start in starts[1:]:
            nursery.start_soon(recorder.start, start)
        await trio.testing.wait_all_tasks_blocked()
        runner.hold.set()
    # The 19 that arrived while the first commit was in flight shared the next one.
    assert runner.calls.count("_insert_starts") == 2
    assert await _count(store, "aibridge_interceptions") == 20


async def test_a_start_whose_thread_is_looked_up_is_committed_apart(
    recorder: Recorder, runner: CountingRunner, store: Store
) -> None:
    plain = [_start() for _ in range(3)]
    lookup = _start(correlating_call_id="call_unknown")
    runner.refused = {"_insert_starts_finding_threads"}
    runner.hold = trio.Event()
    failed: list[BaseException] = []

    async def start_lookup() -> None:
        try:
            await recorder.start(lookup)
        except StoreError as exc:
            failed.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.start, _start())  # holds the committer
        await trio.testing.wait_all_tasks_blocked()
        for start in plain:
            nursery.start_soon(recorder.start, start)
        nursery.start_soon(start_lookup)
        await trio.testing.wait_all_tasks_blocked()
        runner.hold.set()
    # The plain starts shared one commit of their own; the lookup's failure was its own alone.
    assert runner.calls == ["_insert_starts", "_insert_starts", "_insert_starts_finding_threads"]
    assert len(failed) == 1
    assert await _count(store, "aibridge_interceptions") == 4


async def test_child_rows_and_ends_are_written_in_batches(
    recorder: Recorder, runner: CountingRunner, store: Store
) -> None:
    start = _start()
    await recorder.start(start)
    recorder.add(start, PromptUsage("hello"))
    recorder.add(start, TokenUsage("r1", 10, 5, cache_read=3, cache_write=2, extra={"x": 1}))
    recorder.add(start, ToolUsage("r1", "get_weather", "call_1", '{"city":"Paris"}'))
    recorder.add(start, ModelThought("r1", "thinking...", "thinking"))
    recorder.end(_end(start))
    with trio.fail_after(5):
        await recorder.wait_written(ends=1)
    assert runner.calls.count("_write_batch") == 1
    row = await store.run(
        lambda conn: conn.fetchrow(
            "SELECT i.ended_at, i.metadata, t.input_tokens, t.cache_read_input_tokens,"
            " t.cache_write_input_tokens, t.metadata AS extra FROM aibridge_interceptions i"
            " JOIN aibridge_token_usages t ON t.interception_id = i.id"
        )
    )
    assert row["ended_at"] is not None and '"status": "completed"' in row["metadata"]
    tokens = ("input_tokens", "cache_read_input_tokens", "cache_write_input_tokens")
    assert tuple(row[name] for name in tokens) == (10, 3, 2)
    assert await _count(store, "aibridge_tool_usages") == 1
    follow = await recorder.start(_start(correlating_call_id="call_1"))  # known in memory
    assert (follow.thread_parent_id, follow.thread_root_id) == (start.id, start.id)


async def test_what_a_pending_start_records_waits_for_its_commit(
    recorder: Recorder, runner: CountingRunner, store: Store
) -> None:
    runner.hold = trio.Event()
    pending = recorder.submit(_start())
    pending.add(PromptUsage("early"))
    pending.end(_end(pending.record))  # a request that ended before its commit was done
    await trio.testing.wait_all_tasks_blocked()
    stats = recorder.statistics()
    assert runner.calls == ["_insert_starts"] and (stats.queued_rows, stats.queued_ends) == (0, 0)
    runner.hold.set()
    await pending.committed()
    with trio.fail_after(5):
        await recorder.wait_written(ends=1)
    assert await _count(store, "aibridge_user_prompts") == 1
    ended = "SELECT count(*) FROM aibridge_interceptions WHERE ended_at IS NOT NULL"
    assert await store.run(lambda conn: conn.fetchval(ended)) == 1


async def test_a_start_that_fails_takes_what_waited_on_it_along(
    recorder: Recorder, runner: CountingRunner, store: Store
) -> None:
    runner.refused = {"_insert_starts"}
    pending = recorder.submit(_start())
    pending.add(PromptUsage("never stored"))
    with pytest.raises(StoreError, match="failed to record interception"):
        await pending.committed()
    pending.add(TokenUsage("r1", 1, 1))  # what comes after the failure goes nowhere either
    pending.end(_end(pending.record))
    stats = recorder.statistics()
    assert pending.failed and (stats.queued_rows, stats.queued_ends, stats.dropped) == (0, 0, 0)
    runner.refused = set()
    ok = await recorder.start(_start())
    recorder.end(_end(ok))
    with trio.fail_after(5):
        await recorder.wait_written(ends=1)
    assert await _count(store, "aibridge_user_prompts") == 0
    assert await _count(store, "aibridge_token_usages") == 0


async def test_wait_sent_returns_once_the_commit_is_on_its_way(
    recorder: Recorder, runner: CountingRunner
) -> None:
    runner.hold = trio.Event()  # the commit goes out, its answer does not come
    first = recorder.submit(_start())
    with trio.fail_after(5):
        await first.wait_sent()
    assert runner.calls == ["_insert_starts"]
    second = recorder.submit(_start())  # a commit is in flight: this one goes in the next
    with trio.fail_after(5):
        await second.wait_sent()
    assert runner.calls == ["_insert_starts"]
    runner.hold.set()
    with trio.fail_after(5):
        await first.committed()
        await second.committed()
    assert recorder.statistics().start_commits == 2


async def test_a_start_the_database_refuses_raises(
    recorder: Recorder, runner: CountingRunner
) -> None:
    runner.down = True
    with pytest.raises(StoreError, match="failed to record interception"):
        await recorder.start(_start())


async def test_while_the_database_is_away_rows_are_bounded_and_ends_are_kept(
    recorder: Recorder, runner: CountingRunner, store: Store
) -> None:
    starts = [_start() for _ in range(3)]
    for start in starts:
        await recorder.start(start)
    runner.down = True
    for i in range(500):  # the queue holds 100
        recorder.add(starts[0], TokenUsage(f"r{i}", 1, 1))
    for start in starts:
        recorder.end(_end(start))
    stats = recorder.statistics()
    assert stats.queued_rows == 100 and stats.dropped == 400 and stats.queued_ends == 3
    runner.down = False
    with trio.fail_after(20):
        await recorder.wait_written(ends=3)
    assert await _count(store, "aibridge_token_usages") == 100
    ended = "SELECT count(*) FROM aibridge_interceptions WHERE ended_at IS NOT NULL"
    assert await store.run(lambda conn: conn.fetchval(ended)) == 3


async def test_closing_drains_what_is_queued(runner: CountingRunner, store: Store) -> None:
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    rec = Recorder(runner, metrics, flush_interval_s=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(rec.run)
        start = _start()
        await rec.start(start)
        rec.add(start, PromptUsage("last words"))
        rec.end(_end(start))
        rec.close()  # the writer drains, then run returns and the nursery ends
    assert rec.statistics().rows_written == 1 and rec.statistics().ends_written == 1
    assert await _count(store, "aibridge_user_prompts") == 1


async def test_closing_waits_for_the_commit_in_flight(runner: CountingRunner, store: Store) -> None:
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    rec = Recorder(runner, metrics, flush_interval_s=10.0)
    runner.hold = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(rec.run)
        pending = rec.submit(_start())
        pending.end(_end(pending.record))  # cut at the shutdown deadline before its commit
        rec.close()
        await trio.testing.wait_all_tasks_blocked()
        runner.hold.set()  # the commit completes after the close: its end is still written
    assert rec.statistics().ends_written == 1


async def test_a_drain_that_cannot_reach_the_database_gives_up_and_counts(
    runner: CountingRunner,
) -> None:
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    rec = Recorder(runner, metrics, drain_timeout_s=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(rec.run)
        start = _start()
        await rec.start(start)
        runner.down = True
        rec.add(start, PromptUsage("lost"))
        rec.end(_end(start))
        rec.close()
    assert rec.statistics().dropped == 2
    dropped = metrics.recorder_dropped
    assert dropped.labels(record="interception_end")._value.get() == 1
    assert dropped.labels(record="prompt_usage")._value.get() == 1


async def test_odd_strings_from_clients_are_stored_not_refused(
    recorder: Recorder, store: Store
) -> None:
    start = _start(model="m\ud800", client_session_id="s\x00id")
    await recorder.start(start)
    recorder.add(start, PromptUsage("a\x00b \ud83d"))
    recorder.end(_end(start))
    with trio.fail_after(5):
        await recorder.wait_written(ends=1)
    prompt = await store.run(lambda conn: conn.fetchval("SELECT prompt FROM aibridge_user_prompts"))
    assert prompt.startswith("a\ufffdb")


async def test_what_an_upstream_sends_cannot_stop_the_writer(
    recorder: Recorder, store: Store
) -> None:
    """Ids with lone surrogates or NUL, counts past 64 bits, NUL in an error: each is stored
    cleaned or clamped. Refused, the batch would be retried forever and hold up every record
    behind it."""
    start = await recorder.start(_start(correlating_call_id="call_\ud800\x00"))
    huge = 2**70
    recorder.add(start, TokenUsage("resp_\udc00", huge, 1, extra={"odd\ud800": huge}))
    recorder.add(start, PromptUsage("hi", response_id="resp_\x00"))
    recorder.add(start, ToolUsage("resp_\x00", "t", "call_\ud800", "{}", item_id="fc_\x00",
                                  invocation_error="boom\x00"))  # fmt: skip
    recorder.add(start, ToolUsage("resp_1", "t", "call_\udfff", "{}"))  # cleans to the same id
    recorder.end(InterceptionEnd(start.id, start.started_at, datetime.now(UTC), "", "failed",
                                 error="upstream said \x00\ud800"))  # fmt: skip
    with trio.fail_after(5):
        await recorder.wait_written(ends=1)
    usage = await store.run(
        lambda conn: conn.fetchrow("SELECT input_tokens, metadata FROM aibridge_token_usages")
    )
    assert usage["input_tokens"] == 2**63 - 1 and '"odd?"' in usage["metadata"]
    assert await _count(store, "aibridge_tool_usages") == 2
    ended = await store.run(
        lambda conn: conn.fetchval("SELECT metadata->>'error' FROM aibridge_interceptions")
    )
    assert ended == "upstream said \ufffd?"


async def test_structured_logging_logs_one_line_per_record(runner: CountingRunner) -> None:
    from tests.logs import watch_logs

    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    rec = Recorder(runner, metrics, structured_logging=True)
    with watch_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(rec.run)
            start = _start()
            await rec.start(start)
            rec.add(start, PromptUsage("hello"))
            rec.add(start, TokenUsage("r1", 7, 3))
            rec.add(start, ToolUsage("r1", "read_file", "call_9", "{}"))
            rec.add(start, ModelThought("r1", "hmm", "thinking"))
            rec.end(_end(start))
            rec.close()
    lines = logs.matching("interception log", interception_id=str(start.id))
    assert [line["record_type"] for line in lines] == [
        "interception_start", "prompt_usage", "token_usage", "tool_usage", "model_thought",
        "interception_end",
    ]  # fmt: skip
    assert lines[2]["input_tokens"] == 7 and lines[3]["tool_call_id"] == "call_9"
    assert lines[0]["initiator_id"] == str(start.initiator_id)


async def test_a_tool_call_made_before_a_restart_is_found_in_the_database(
    recorder: Recorder, runner: CountingRunner
) -> None:
    start = _start()
    await recorder.start(start)
    recorder.add(start, ToolUsage("r1", "read_file", "call_before_restart", "{}"))
    recorder.end(_end(start))
    with trio.fail_after(5):
        await recorder.wait_written(ends=1)
    fresh = Recorder(runner, Metrics(CollectorRegistry(), process_metrics=False))  # no memory
    async with trio.open_nursery() as nursery:
        await nursery.start(fresh.run)
        calls_before = len(runner.calls)
        child = await fresh.start(_start(correlating_call_id="call_before_restart"))
        orphan = await fresh.start(_start(correlating_call_id="call_never_made"))
        # Found by the insert itself: one statement per start, no separate lookup.
        assert runner.calls[calls_before:] == ["_insert_starts_finding_threads"] * 2
        fresh.close()
    assert (child.thread_parent_id, child.thread_root_id) == (start.id, start.id)
    assert (orphan.thread_parent_id, orphan.thread_root_id) == (None, None)
    rows = await runner.store.run(
        lambda conn: conn.fetch(
            "SELECT id, thread_parent_id, session_id FROM aibridge_interceptions WHERE id = $1",
            child.id,
        )
    )
    assert rows[0]["thread_parent_id"] == start.id and rows[0]["session_id"] == str(start.id)


async def test_a_call_is_found_by_its_newest_use_with_its_threads_root(
    recorder: Recorder, runner: CountingRunner, store: Store
) -> None:
    """The call index (migration 0007) keeps the newest tool call per call id, and the root of
    the thread that made it: a follow-up links to the call's interception, under its root."""
    root = await recorder.start(_start())
    middle = await recorder.start(_start(thread_parent_id=root.id, thread_root_id=root.id))
    older = _start(started_at=datetime(2026, 1, 1, tzinfo=UTC))
    await insert_starts(store, [older])

    async def older_use(created_at: datetime) -> None:
        used = ToolUsage("r0", "old", "call_reused", "{}")
        await write_batch(store, [Stamped(older.id, older.started_at, created_at, used)], [])

    await older_use(older.started_at)  # before the newest use: replaced by it
    recorder.add(middle, ToolUsage("r1", "read_file", "call_reused", "{}"))
    recorder.add(middle, ToolUsage("r1", "read_file", "call_reused", '{"again": true}'))
    recorder.end(_end(middle))
    with trio.fail_after(5):
        await recorder.wait_written(ends=1)
    await older_use(older.started_at)  # written later, yet older: ignored
    fresh = Recorder(runner, Metrics(CollectorRegistry(), process_metrics=False))  # no memory
    async with trio.open_nursery() as nursery:
        await nursery.start(fresh.run)
        child = await fresh.start(_start(correlating_call_id="call_reused"))
        fresh.close()
    assert (child.thread_parent_id, child.thread_root_id) == (middle.id, root.id)
    rows = await store.run(lambda conn: conn.fetch("SELECT * FROM aibridge_tool_calls"))
    assert [(r["call_id"], r["interception_id"], r["thread_root_id"]) for r in rows] == [
        ("call_reused", middle.id, root.id)
    ]


async def test_the_recorders_own_connections_commit_without_waiting_for_the_disk(
    store: Store,
) -> None:
    for synchronous, shown in ((False, "off"), (True, "on")):
        batches, starts = await recorder_connections(store, synchronous_commit=synchronous)
        show = await batches.run(lambda conn: conn.fetchval("SHOW synchronous_commit"))
        assert (show, await starts.query("SHOW synchronous_commit")) == (shown, [(shown,)])
    assert await store.run(lambda conn: conn.fetchval("SHOW synchronous_commit")) == "on"


async def _calling_tool(recorder: Recorder, call_id: str) -> InterceptionStart:
    """A committed, written interception whose answer called a tool as `call_id`."""
    parent = await recorder.start(_start())
    recorder.add(parent, ToolUsage("r1", "read_file", call_id, "{}"))
    recorder.end(_end(parent))
    with trio.fail_after(5):
        await recorder.wait_written(ends=1)
    return parent


async def test_the_start_connection_plans_its_statements_once(store: Store) -> None:
    """A custom plan per commit cost the thread lookup 1.7 ms of planning across the
    partitions (PostgreSQL's default keeps choosing one); the start connection keeps one
    generic plan per statement, and it still finds the thread."""
    runner, starts = await recorder_connections(store, synchronous_commit=False)
    recorder = Recorder(runner, Metrics(CollectorRegistry(), process_metrics=False),
                        starts_runner=starts)  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.run)
        parent = await _calling_tool(recorder, "call_planned")
        # Another replica's recorder (no memory of the call) on the same start session.
        fresh = Recorder(runner, Metrics(CollectorRegistry(), process_metrics=False),
                         starts_runner=starts)  # fmt: skip
        nursery.start_soon(fresh.run)
        for index in range(8):
            await fresh.start(_start())
            await fresh.start(_start(correlating_call_id=f"call_unknown_{index}"))
        child = await fresh.start(_start(correlating_call_id="call_planned"))
        recorder.close()
        fresh.close()
    assert (child.thread_parent_id, child.thread_root_id) == (parent.id, parent.id)
    plans = await starts.query(
        "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements ORDER BY name"
    )
    assert plans == [
        ("aibridged_insert_starts", 9, 0),
        ("aibridged_insert_starts_finding_threads", 9, 0),
    ]


async def _native_recorder(store: Store) -> tuple[Recorder, NativePool]:
    runner, starts = await recorder_connections(store, synchronous_commit=False)
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    return Recorder(runner, metrics, starts_runner=starts), starts


async def test_a_lone_start_is_on_its_way_before_submit_returns(store: Store) -> None:
    """The committer is idle: `submit` sends the start itself, no scheduling round first
    (group_commit.py). Starts that arrive while it is in flight share the next commit."""
    recorder, starts = await _native_recorder(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.run)
        await recorder.start(_start())  # the first prepares the statement on the connection
        lone = recorder.submit(_start())
        assert starts.statistics().borrowed == 1  # taken and sent without a checkpoint
        followers = [recorder.submit(_start()) for _ in range(3)]
        assert starts.statistics().borrowed == 1  # they wait for the lone one's answer
        with trio.fail_after(5):
            for pending in (lone, *followers):
                await pending.committed()
        assert recorder.statistics().start_commits == 3
        recorder.close()
    assert starts.statistics().borrowed == 0
    assert await _count(store, "aibridge_interceptions") == 5


async def test_a_lone_start_finds_its_thread_too(store: Store) -> None:
    recorder, _ = await _native_recorder(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.run)
        parent = await _calling_tool(recorder, "call_lone")
        fresh, _ = await _native_recorder(store)  # another replica: no memory of the call
        nursery.start_soon(fresh.run)
        await fresh.start(_start(correlating_call_id="call_none"))  # prepares the lookup
        with trio.fail_after(5):
            child = await fresh.submit(_start(correlating_call_id="call_lone")).committed()
        recorder.close()
        fresh.close()
    assert (child.thread_parent_id, child.thread_root_id) == (parent.id, parent.id)


async def test_a_start_sent_alone_as_the_recorder_stops_fails_and_frees_its_connection(
    store: Store,
) -> None:
    recorder, starts = await _native_recorder(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.run)
        await recorder.start(_start())
        nursery.cancel_scope.cancel()  # the committer is woken with the cancellation ...
        pending = recorder.submit(_start())  # ... before it can take this one up
        assert starts.statistics().borrowed == 1
    assert pending.failed and starts.statistics().borrowed == 0
    with pytest.raises(StoreError, match="failed to record interception: the recorder stopped"):
        await pending.committed()
