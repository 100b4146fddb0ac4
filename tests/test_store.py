from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
import trio.testing
import trio_asyncio

from aibridged.errors import MigrationError, StoreUnavailable
from aibridged.recorder import ensure_partitions
from aibridged.records import InterceptionStart
from aibridged.store import Store, apply_migrations, open_store
from aibridged.store import db as store_db
from aibridged.store.migrate import _apply, load_migrations
from aibridged.store.records import insert_starts


async def _versions(store: Store) -> list[int]:
    async def fetch(conn: Any) -> list[int]:
        return [
            r["version"]
            for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
        ]

    return await store.run(fetch)


async def test_migrations_apply_to_an_empty_database_then_are_a_no_op(
    empty_database_url: str,
) -> None:
    every = [m.version for m in load_migrations()]
    async with open_store(empty_database_url, pool_size=2, connect_timeout_s=10) as store:
        assert await apply_migrations(store) == every
        assert await apply_migrations(store) == []
        assert await _versions(store) == every


async def test_two_daemons_migrating_one_database_at_once_apply_each_version_once(
    empty_database_url: str,
) -> None:
    applied: list[list[int]] = []

    async def daemon() -> None:
        async with open_store(empty_database_url, pool_size=2, connect_timeout_s=10) as store:
            applied.append(await apply_migrations(store))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(daemon)
        nursery.start_soon(daemon)
    every = [m.version for m in load_migrations()]
    assert sorted(applied, key=len) == [[], every]


async def test_a_database_newer_than_the_code_is_refused(store: Store) -> None:
    async def bump(conn: Any) -> None:
        await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')")

    await store.run(bump)
    with pytest.raises(MigrationError, match="newer than this aibridged"):
        await apply_migrations(store)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_database_fails_fast_with_a_redacted_message() -> None:
    dsn = f"postgresql://app:hunter2@127.0.0.1:{_closed_port()}/db"
    start = trio.current_time()
    with pytest.raises(StoreUnavailable) as info:
        async with open_store(dsn, pool_size=2, connect_timeout_s=5):
            pass
    assert trio.current_time() - start < 3
    assert "connection refused" in str(info.value)
    assert "hunter2" not in str(info.value)
    assert "app:***@127.0.0.1" in str(info.value)


async def test_silent_database_times_out_with_a_clear_message() -> None:
    with socket.socket() as listener:  # accepts TCP but never speaks PostgreSQL
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(StoreUnavailable, match=r"no answer within 0.5s"):
            async with open_store(
                f"postgresql://x@127.0.0.1:{port}/db", pool_size=1, connect_timeout_s=0.5
            ):
                pass


def _live_timers(loop: Any) -> int:
    return len(loop._timers)


async def _select_1(conn: Any) -> None:
    await conn.fetchval("SELECT 1")


async def _hammer(store: Store, calls: int) -> None:
    """`calls` pooled queries from 20 tasks at once: each one acquires and releases."""

    async def one() -> None:
        for _ in range(calls // 20):
            await store.run(_select_1)

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(one)


async def test_pool_releases_leave_no_timers_behind(store: Store) -> None:
    """Regression: asyncpg arms a timer per release unless the idle lifetime is 0, and
    trio-asyncio keeps cancelled timers, so memory grew without bound under load."""
    await _hammer(store, 200)  # every pooled connection is open now (connects arm timers)
    before = _live_timers(store.loop)
    await _hammer(store, 2000)
    assert _live_timers(store.loop) - before < 5


async def test_timer_count_detects_the_leak_when_the_fix_is_removed(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves the regression test above can fail: with asyncpg's default idle lifetime the
    same load leaves a timer per release on the loop."""
    import asyncpg

    async def leaky_pool(dsn: str, pool_size: int) -> Any:
        return await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size)

    monkeypatch.setattr(store_db, "_create_pool", leaky_pool)
    async with open_store(database_url, pool_size=5, connect_timeout_s=10) as store:
        await _hammer(store, 200)
        before = _live_timers(store.loop)
        await _hammer(store, 400)
        assert _live_timers(store.loop) - before > 100


async def test_fair_gate_bounds_concurrent_pool_use(store: Store) -> None:
    peak = 0

    async def slow(conn: Any) -> None:
        await conn.execute("SELECT pg_sleep(0.01)")

    async def probe() -> None:
        nonlocal peak
        while True:
            peak = max(peak, store.statistics().borrowed)
            await trio.sleep(0.001)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe)
        async with trio.open_nursery() as workers:
            for _ in range(30):
                workers.start_soon(store.run, slow)
        nursery.cancel_scope.cancel()
    assert peak == store.statistics().pool_size == 5
    assert store.statistics().waiting == 0


async def test_ping_does_not_queue_behind_a_busy_pool(store: Store) -> None:
    """Health checks use their own connection: a saturated pool must not look like a dead DB."""

    async def hold(conn: Any) -> None:
        await conn.execute("SELECT pg_sleep(1)")

    async with trio.open_nursery() as nursery:
        for _ in range(store.statistics().pool_size + 3):
            nursery.start_soon(store.run, hold)
        await trio.sleep(0.1)
        assert store.statistics().waiting == 3
        with trio.fail_after(0.5):
            await store.ping()


def test_a_foreign_runtime_dir_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import tempfile
    from pathlib import Path

    from aibridged.errors import StartupError
    from aibridged.store import embedded

    fake_uid = 54321  # a user that does not own the directory below
    monkeypatch.setattr(os, "geteuid", lambda: fake_uid)
    squatted = Path(tempfile.gettempdir()) / f"aibridged-runtime-{fake_uid}"
    squatted.mkdir(mode=0o777, exist_ok=True)
    try:
        with pytest.raises(StartupError, match="not a private directory"):
            embedded._runtime_dir()
    finally:
        squatted.rmdir()


async def test_the_gate_hands_out_connections_in_arrival_order(database_url: str) -> None:
    """FIFO: asyncpg's own acquisition is unfair under trio-asyncio; the gate must not be.
    One connection, so exactly one task holds it at a time and the order is the gate's."""
    release = trio.Event()
    order: list[int] = []

    async def hold(conn: Any) -> None:
        await trio_asyncio.trio_as_aio(release.wait)()

    async def queued(conn: Any, index: int) -> None:
        order.append(index)

    async with (
        open_store(database_url, pool_size=1, connect_timeout_s=10) as store,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(store.run, hold)
        await trio.testing.wait_all_tasks_blocked()
        for index in range(20):
            nursery.start_soon(store.run, queued, index)
            # the next one starts only once this one waits at the gate: arrival order is known
            await trio.testing.wait_all_tasks_blocked()
            assert store.statistics().waiting == index + 1
        release.set()
    assert order == list(range(20))


async def test_a_budget_caps_one_consumer_without_touching_the_others(store: Store) -> None:
    auth = store.budget("auth", 2)
    release = trio.Event()

    async def hold(conn: Any) -> None:
        await trio_asyncio.trio_as_aio(release.wait)()

    async with trio.open_nursery() as nursery:
        for _ in range(10):  # a flood of one consumer's work
            nursery.start_soon(auth.run, hold)
        await trio.testing.wait_all_tasks_blocked()
        stats = auth.statistics()
        assert (stats.borrowed, stats.waiting) == (2, 8)
        assert store.statistics().borrowed == 2  # the rest of the pool is free for others
        with trio.fail_after(2):
            assert await store.run(_select_one) == 1
        release.set()


async def _select_one(conn: Any) -> int:
    value: int = await conn.fetchval("SELECT 1")
    return value


def _interception(**kw: Any) -> InterceptionStart:
    fields: dict[str, Any] = {
        "id": uuid.uuid4(), "initiator_id": uuid.uuid4(), "api_key_id": "abcdefghij",
        "provider": "openai", "provider_name": "openai", "model": "gpt-x", "client": "Unknown",
        "client_session_id": None, "user_agent": "test", "credential_kind": "centralized",
        "credential_hint": "", "thread_parent_id": None, "thread_root_id": None,
        "started_at": datetime.now(UTC),
    }  # fmt: skip
    return InterceptionStart(**{**fields, **kw})


_TOOL_USE = (
    "INSERT INTO aibridge_tool_usages (id, interception_id, provider_tool_call_id, tool,"
    " created_at, started_at) VALUES (gen_random_uuid(), $1, $2, 't', $3, $4)"
)


async def test_the_call_index_is_filled_from_the_tool_calls_recorded_before_it(
    empty_database_url: str,
) -> None:
    """Migration 0007 indexes the tool usages already there: the newest use of each call id,
    with its interception's thread root."""
    migrations = load_migrations()
    assert migrations[6].name == "tool_call_index"
    async with open_store(empty_database_url, pool_size=2, connect_timeout_s=10) as store:
        await store.run(_apply, migrations[:6])
        await ensure_partitions(store)
        parent = _interception()
        child = _interception(thread_parent_id=parent.id, thread_root_id=parent.id)
        await insert_starts(store, [parent, child])
        now = datetime.now(UTC)
        uses = [(parent, "call_a", now), (child, "call_a", now + timedelta(seconds=1)),
                (parent, "call_b", now), (parent, "", now)]  # fmt: skip

        async def record(conn: Any) -> None:
            for start, call_id, at in uses:
                await conn.execute(_TOOL_USE, start.id, call_id, at, start.started_at)

        await store.run(record)
        assert await apply_migrations(store) == [7]
        rows = await store.run(
            lambda conn: conn.fetch(
                "SELECT call_id, interception_id, thread_root_id FROM aibridge_tool_calls"
                " ORDER BY call_id"
            )
        )
    assert [tuple(r) for r in rows] == [("call_a", child.id, parent.id),
                                        ("call_b", parent.id, parent.id)]  # fmt: skip
