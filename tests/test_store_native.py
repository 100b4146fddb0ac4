"""The trio-native libpq connection (store/native.py) on the real embedded PostgreSQL: connect
settings, prepared round trips of every type the start commit sends, errors translated, and a
connection that broke or was cancelled replaced for the next call."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
from psycopg.conninfo import conninfo_to_dict

from aibridged.errors import Conflict, StoreError, StoreUnavailable
from aibridged.recorder import ensure_partitions
from aibridged.records import InterceptionStart, ToolUsage
from aibridged.store import Store, open_store
from aibridged.store.conninfo import native_conninfo, resolve_host, secret_scrubber
from aibridged.store.db import redact_dsn
from aibridged.store.native import NativePool, Statement
from aibridged.store.records import (
    Stamped,
    insert_starts,
    insert_starts_finding_threads,
    write_batch,
)


@pytest.fixture
async def native(store: Store) -> AsyncIterator[NativePool]:
    await ensure_partitions(store)
    pool = await store.native_pool(1, {"synchronous_commit": "off"}, application_name="t-native")
    yield pool
    pool.close()


def _start(**kw: Any) -> InterceptionStart:
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "initiator_id": uuid.uuid4(),
        "api_key_id": "abcdefghij",
        "provider": "anthropic",
        "provider_name": "anthropic-eu",
        "model": 'claude "quoted" \\ {braced, comma}',
        "client": "Claude Code",
        "client_session_id": None,
        "user_agent": "NULL",  # the word, not a null
        "credential_kind": "byok",
        "credential_hint": "",
        "thread_parent_id": None,
        "thread_root_id": None,
        "started_at": datetime.now(UTC) - timedelta(microseconds=123),
        "metadata": {"reasoning_effort": "high", "nested": {"q": 'a"b\\c'}, "n": None},
    }
    return InterceptionStart(**{**fields, **kw})


async def _backend_pid(pool: NativePool) -> int:
    ((pid,),) = await pool.query("SELECT pg_backend_pid()")
    return int(pid)


async def _wait_for(store: Store, sql: str, *args: Any) -> None:
    """Until `sql` (a count) finds a row: the server's view changes on its own schedule."""
    with trio.fail_after(10):
        while not await store.run(lambda conn: conn.fetchval(sql, *args)):  # noqa: ASYNC110
            await trio.sleep(0.01)  # another process's state: nothing here to wait on


async def test_a_connection_carries_its_name_and_settings(native: NativePool) -> None:
    rows = await native.query(
        "SELECT current_setting('application_name'), current_setting('synchronous_commit'),"
        " current_setting('TimeZone')"
    )
    assert rows == [("t-native", "off", "UTC")]


def test_the_connection_string_keeps_the_urls_own_options_and_escapes_spaces() -> None:
    url = "postgresql://u:pw@db.example/app?options=-c%20work_mem%3D64MB&sslmode=require"
    found = conninfo_to_dict(native_conninfo(url, "aibridged-x", {"search_path": "a, b"}))
    assert found["options"] == "-c work_mem=64MB -c TimeZone=UTC -c search_path=a,\\ b"
    assert (found["application_name"], found["sslmode"], found["password"]) == (
        "aibridged-x", "require", "pw"
    )  # fmt: skip


async def test_a_setting_with_a_space_reaches_the_session(store: Store) -> None:
    pool = await store.native_pool(1, {"search_path": "public, pg_catalog"}, application_name="t")
    assert await pool.query("SHOW search_path") == [("public, pg_catalog",)]
    pool.close()


async def test_starts_round_trip_through_the_prepared_statements(
    native: NativePool, store: Store
) -> None:
    plain = _start()
    child = _start(
        client_session_id="sess-1",
        credential_hint="sk-a...bcde",
        thread_parent_id=plain.id,
        thread_root_id=plain.id,
        metadata={},
    )
    await insert_starts(native, [plain, child])
    await insert_starts(native, [_start()])  # the statement is already prepared: reused
    rows = await store.run(
        lambda conn: conn.fetch(
            "SELECT * FROM aibridge_interceptions WHERE id = any($1::uuid[])"
            " ORDER BY client_session_id NULLS FIRST",
            [plain.id, child.id],
        )
    )
    first, second = (dict(r) for r in rows)
    same = ("id", "initiator_id", "api_key_id", "provider", "provider_name", "model", "client",
            "user_agent", "credential_kind", "credential_hint", "started_at")  # fmt: skip
    for key in same:
        assert first[key] == getattr(plain, key), key
    assert first["client_session_id"] is None and first["thread_parent_id"] is None
    assert first["user_agent"] == "NULL"
    assert second["client_session_id"] == "sess-1" and second["thread_root_id"] == plain.id
    assert json.loads(first["metadata"]) == {"reasoning_effort": "high",
                                             "nested": {"q": 'a"b\\c'}, "n": None}  # fmt: skip


async def test_a_start_answering_a_tool_call_finds_its_thread_in_the_same_statement(
    native: NativePool, store: Store
) -> None:
    parent = _start()
    await insert_starts(native, [parent])
    used = ToolUsage("r1", "read_file", "call_7", "{}")  # written as the recorder writes it
    await write_batch(store, [Stamped(parent.id, parent.started_at, datetime.now(UTC), used)], [])
    child, orphan = _start(correlating_call_id="call_7"), _start(correlating_call_id="call_x")
    threads = await insert_starts_finding_threads(native, [child, orphan])
    assert threads == {child.id: (parent.id, parent.id), orphan.id: (None, None)}


async def test_values_come_back_as_their_python_types(native: NativePool) -> None:
    ids = [uuid.uuid4(), None]
    texts = ['a"b', "back\\slash", "", "NULL", "{,}", None, "ünï ☃"]
    when = datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC)
    statement = Statement("t_types", "SELECT $1::uuid[], $2::text[], $3::timestamptz, $4::jsonb,"
                          " $5::bigint, $6::boolean, $7::text")  # fmt: skip
    rows = await native.fetch(statement, [ids, texts, when, '{"a": [1, "x"]}', 2**40, True, None])
    assert rows == [(ids, texts, when, {"a": [1, "x"]}, 2**40, True, None)]


async def test_a_duplicate_start_is_a_conflict_and_the_connection_stays(
    native: NativePool,
) -> None:
    start = _start()
    await insert_starts(native, [start])
    pid = await _backend_pid(native)
    with pytest.raises(Conflict, match="already exists"):
        await insert_starts(native, [start])
    assert await _backend_pid(native) == pid  # an error answer leaves the session usable
    assert native.statistics().connects == 1


async def test_a_session_killed_while_idle_is_replaced_before_the_next_statement(
    native: NativePool, store: Store
) -> None:
    pid = await _backend_pid(native)
    assert await store.run(lambda conn: conn.fetchval("SELECT pg_terminate_backend($1)", pid))
    await _wait_for(store, "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1", pid)
    await insert_starts(native, [_start()])  # nothing was sent on the dead one: no failure
    assert await _backend_pid(native) != pid
    assert native.statistics().connects == 2


async def test_a_session_killed_mid_statement_fails_it_and_the_next_call_reconnects(
    native: NativePool, store: Store
) -> None:
    pid = await _backend_pid(native)
    failed: list[BaseException] = []

    async def sleep_on_it() -> None:
        try:
            await native.query("SELECT pg_sleep(30)")
        except StoreError as exc:
            failed.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleep_on_it)
        busy = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'"
        await _wait_for(store, busy, pid)
        await store.run(lambda conn: conn.fetchval("SELECT pg_terminate_backend($1)", pid))
    assert len(failed) == 1 and isinstance(failed[0], StoreUnavailable)
    assert "terminating connection" in str(failed[0])
    assert await _backend_pid(native) != pid


async def test_a_cancelled_call_closes_its_connection_and_the_next_one_works(
    native: NativePool, store: Store
) -> None:
    pid = await _backend_pid(native)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(native.query, "SELECT pg_sleep(30)")
            busy = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'"
            await _wait_for(store, busy, pid)
            scope.cancel()
    assert await _backend_pid(native) != pid  # the half-read session was not reused
    stats = native.statistics()
    assert (stats.borrowed, stats.waiting, stats.connects) == (0, 0, 2)
    await store.run(lambda conn: conn.fetchval("SELECT pg_terminate_backend($1)", pid))


async def test_no_error_message_shows_the_password(database_url: str) -> None:
    secret = "hunter2-not-for-logs"
    with_password = database_url.replace("postgres:@", f"postgres:{secret}@")
    assert secret in with_password
    async with open_store(with_password, pool_size=1, connect_timeout_s=10) as store:
        pool = await store.native_pool(1, {}, application_name="t")  # trust auth: accepted
        with pytest.raises(StoreError) as raised:
            await pool.query(f"SELECT '{secret}'::int")  # the server quotes the value back
        assert secret not in str(raised.value) and "***" in str(raised.value)
        pool.close()
    unreachable = f"postgresql://postgres:{secret}@127.0.0.1:1/db"
    conninfo = native_conninfo(unreachable, "t", {})
    refusing = NativePool(conninfo, 1, secret_scrubber(conninfo), shown=redact_dsn(unreachable))
    with pytest.raises(StoreUnavailable) as refused:
        await refusing.open()
    assert secret not in str(refused.value) and "connection refused" in str(refused.value).lower()
    assert "postgresql://postgres:***@127.0.0.1:1/db" in str(refused.value)


async def test_a_closed_pool_refuses_calls(store: Store) -> None:
    pool = await store.native_pool(1, {}, application_name="t")
    pool.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await pool.query("SELECT 1")


async def test_a_host_name_is_resolved_before_libpq_sees_it() -> None:
    # libpq would look it up inside connect_start, blocking every task until DNS answers.
    conninfo = native_conninfo("postgresql://u@localhost:5999/db", "t", {})
    found = conninfo_to_dict(await resolve_host(conninfo, "shown"))
    addresses = str(found["hostaddr"]).split(",")
    assert {"127.0.0.1", "::1"} & set(addresses)
    assert str(found["host"]).split(",") == ["localhost"] * len(addresses)
    for given in ("postgresql://u@127.0.0.1:5999/db", "postgresql://u@/db?host=/run/pg"):
        unchanged = native_conninfo(given, "t", {})
        assert await resolve_host(unchanged, "shown") == unchanged


async def test_sent_is_called_while_the_answer_is_still_awaited(
    native: NativePool, store: Store
) -> None:
    """The start commit's requests step aside until their statement is out (group_commit.py):
    `sent` must come before the answer, here held back by a lock another session holds."""
    holder = await store.native_pool(1, {}, application_name="t-holder")
    await holder.query("SELECT pg_advisory_lock(4242)")
    events: list[str] = []
    waiting = Statement("t_lock_wait", "SELECT pg_advisory_xact_lock(4242)")

    async def fetch() -> None:
        await native.fetch(waiting, [], lambda: events.append("sent"))
        events.append("answered")

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetch)
            await _wait_for(
                store, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            assert events == ["sent"]
            await holder.query("SELECT pg_advisory_unlock(4242)")
    finally:
        holder.close()
    assert events == ["sent", "answered"]


async def test_send_now_sends_before_it_returns_and_its_answer_is_read_later(
    native: NativePool, store: Store
) -> None:
    """A lone request's start goes out this way (group_commit.py): the statement must be at the
    server before `send_now` returns, here seen waiting for a lock another session holds."""
    waiting = Statement("t_lock_wait_now", "SELECT 7 FROM pg_advisory_xact_lock(4243)")
    assert native.send_now(waiting, []) is None  # not prepared on this connection yet
    assert await native.fetch(waiting, []) == [(7,)]
    holder = await store.native_pool(1, {}, application_name="t-holder")
    await holder.query("SELECT pg_advisory_lock(4243)")
    try:
        sent = native.send_now(waiting, [])
        assert sent is not None and native.statistics().borrowed == 1
        assert native.send_now(waiting, []) is None  # its only connection is taken
        await _wait_for(store, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        await holder.query("SELECT pg_advisory_unlock(4243)")
        assert await sent.answer() == [(7,)]
    finally:
        holder.close()
    assert native.statistics().borrowed == 0
    assert await native.fetch(waiting, []) == [(7,)]  # the connection went back, still usable
    assert native.statistics().connects == 1
    native.close()
    assert native.send_now(waiting, []) is None


async def test_send_now_skips_a_connection_the_server_ended_while_idle(
    native: NativePool, store: Store
) -> None:
    statement = Statement("t_one", "SELECT 1")
    await native.fetch(statement, [])
    pid = await _backend_pid(native)
    await store.run(lambda conn: conn.fetchval("SELECT pg_terminate_backend($1)", pid))
    await _wait_for(store, "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1", pid)
    assert native.send_now(statement, []) is None  # nothing sent on the dead one
    stats = native.statistics()
    assert (stats.borrowed, stats.connects) == (0, 1)
    assert await native.fetch(statement, []) == [(1,)]  # `fetch` opens a new one
    assert native.statistics().connects == 2
