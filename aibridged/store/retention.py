"""Retention's SQL: the sweep lock, the day partitions, dropping them, and batch deletes.

The sweeper works on one connection of its own, outside the pool (`open_sweep_connection`): the
advisory lock that makes one replica sweep at a time is a session lock, held from the first
step of a sweep to the last, and a session lock belongs to the connection that took it. Each
step is a transaction of its own, so no step holds anything long.

Recording must never wait for the sweeper:
- a partition is dropped (or created) with `lock_timeout` at `FAST_LOCK_TIMEOUT_MS`: DROP takes
  an exclusive lock on the parent table, and while it waits for one, every insert queues behind
  it. A lock not granted at once leaves that partition for the next sweep (`drop_partition`
  returns False);
- batch deletes lock only their own rows, and skip rows someone else holds (an end being
  written to an old interception): `FOR UPDATE SKIP LOCKED`.

Table and partition names are never taken from outside: they are the recording tables, and
partitions whose names the listing matched against `_PARTITION` (letters, digits, `_`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from typing import Concatenate, ParamSpec, TypeVar

import asyncpg
import trio

from aibridged.errors import StoreError
from aibridged.store.db import Connection, Store

P = ParamSpec("P")
T = TypeVar("T")

SWEEP_LOCK = int.from_bytes(b"AIBrswep", "big")  # pg_try_advisory_lock key
FAST_LOCK_TIMEOUT_MS = 50  # a DROP or CREATE that waits longer holds recording up: give up
ROW_LOCK_TIMEOUT_S = 1  # other waits of a batch statement (none expected: rows are skipped)
STATEMENT_TIMEOUT_S = 300

PARENT = "aibridge_interceptions"
CHILDREN = (
    "aibridge_token_usages",
    "aibridge_user_prompts",
    "aibridge_tool_usages",
    "aibridge_model_thoughts",
)
TABLES = (PARENT, *CHILDREN)
# The record kinds, as the recorder's metrics name them.
KINDS = {
    PARENT: "interception",
    "aibridge_token_usages": "token_usage",
    "aibridge_user_prompts": "prompt_usage",
    "aibridge_tool_usages": "tool_usage",
    "aibridge_model_thoughts": "model_thought",
}
_PARTITION = re.compile(r"^(aibridge_[a-z_]+)_(\d{8}|default)$")


@dataclass(frozen=True, slots=True)
class Partition:
    table: str  # the recording table it belongs to
    name: str
    day: date | None  # the UTC day it holds; None: the DEFAULT partition


class SweepConnection:
    """A `Runner` on one held connection: every call runs on the same session."""

    def __init__(self, store: Store, conn: Connection) -> None:
        self._store, self._conn = store, conn

    async def run(
        self,
        fn: Callable[Concatenate[Connection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        if kwargs:  # Store.call passes positional arguments only
            return await self._store.call(partial(fn, self._conn, *args, **kwargs))
        return await self._store.call(fn, self._conn, *args)


@asynccontextmanager
async def open_sweep_connection(store: Store) -> AsyncIterator[SweepConnection]:
    """A connection of the sweeper's own for one sweep, closed after it (with its locks)."""
    conn = await store.connect()
    try:
        session = SweepConnection(store, conn)
        await session.run(_configure)
        yield session
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5), suppress(StoreError):
            await store.call(conn.close)


async def _configure(conn: Connection) -> None:
    # A delete lost in a crash of PostgreSQL is redone by the next sweep: no need to wait for
    # the disk at each commit (transactions that drop tables flush regardless).
    await conn.execute(
        "SET application_name = 'aibridged retention sweeper';"
        " SET synchronous_commit = off;"
        f" SET lock_timeout = '{ROW_LOCK_TIMEOUT_S}s';"
        f" SET statement_timeout = '{STATEMENT_TIMEOUT_S}s'"
    )


async def try_lock(conn: Connection) -> bool:
    """Take the sweep lock if no other session holds it; never waits."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", SWEEP_LOCK))


async def unlock(conn: Connection) -> None:
    await conn.fetchval("SELECT pg_advisory_unlock($1)", SWEEP_LOCK)


async def list_partitions(conn: Connection) -> list[Partition]:
    """The day and DEFAULT partitions of every recording table (others are left alone)."""
    rows = await conn.fetch(
        "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = ANY($1::text[]::regclass[])",
        list(TABLES),
    )
    found = []
    for row in rows:
        match = _PARTITION.match(row["name"])
        if match is None or match[1] not in KINDS:
            continue
        day = None if match[2] == "default" else datetime.strptime(match[2], "%Y%m%d").date()
        found.append(Partition(match[1], row["name"], day))
    return found


async def count_rows(conn: Connection, partition: Partition) -> int:
    return int(await conn.fetchval(f'SELECT count(*) FROM "{partition.name}"'))


async def drop_partitions(conn: Connection, partitions: Sequence[Partition]) -> bool:
    """Drop them in one transaction, if their tables' locks are granted at once; False: left
    for the next sweep."""
    names = ", ".join(f'"{p.name}"' for p in partitions)
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{FAST_LOCK_TIMEOUT_MS}ms'")
            await conn.execute(f"DROP TABLE {names}")
    except asyncpg.LockNotAvailableError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Created:
    partitions: int
    deferred: list[date]  # a table lock was not granted at once: the next sweep tries again
    blocked: list[date]  # rows of the day are in a DEFAULT partition already: see below


async def create_partitions_ahead(conn: Connection, first_day: date, days: int) -> Created:
    """`aibridge_create_partitions` day by day, each with the fast lock timeout.

    A day whose rows already sit in a DEFAULT partition (no partition of its own existed when
    they were written) cannot get one: PostgreSQL refuses a partition that would take rows from
    DEFAULT. Its rows stay there, and the sweeper deletes them from DEFAULT in their turn."""
    created, deferred, blocked = 0, [], []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{FAST_LOCK_TIMEOUT_MS}ms'")
                created += await conn.fetchval("SELECT aibridge_create_partitions($1, 1)", day)
        except asyncpg.LockNotAvailableError:
            deferred.append(day)
        except asyncpg.CheckViolationError:
            blocked.append(day)
    return Created(created, deferred, blocked)


async def delete_batch(
    conn: Connection, target: Mapping[str, str], cutoff: datetime, limit: int
) -> dict[str, int]:
    """Delete up to `limit` interceptions that started before `cutoff` from the partition
    `target[PARENT]`, with their child records from `target[child]`, in one statement (one
    transaction). Returns the rows deleted by record kind."""
    parts = [
        f'doomed AS (SELECT id, started_at FROM "{target[PARENT]}" WHERE started_at < $1'
        " LIMIT $2 FOR UPDATE SKIP LOCKED)"
    ]
    for index, table in enumerate(CHILDREN):
        parts.append(
            f'c{index} AS (DELETE FROM "{target[table]}" c USING doomed d'
            " WHERE c.interception_id = d.id AND c.started_at = d.started_at RETURNING 1)"
        )
    parts.append(
        f'gone AS (DELETE FROM "{target[PARENT]}" i USING doomed d'
        " WHERE i.id = d.id AND i.started_at = d.started_at RETURNING 1)"
    )
    counts = ", ".join(f"(SELECT count(*) FROM c{i})" for i in range(len(CHILDREN)))
    row = await conn.fetchrow(
        f"WITH {', '.join(parts)} SELECT (SELECT count(*) FROM gone), {counts}", cutoff, limit
    )
    return {KINDS[table]: int(value) for table, value in zip(TABLES, row, strict=True)}


async def delete_tool_calls(conn: Connection, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` rows of the call index (migration 0007) whose interception started
    before `cutoff`. Returns how many."""
    status = await conn.execute(
        "DELETE FROM aibridge_tool_calls WHERE ctid = ANY(ARRAY("
        "SELECT ctid FROM aibridge_tool_calls WHERE started_at < $1 LIMIT $2))",
        cutoff,
        limit,
    )
    return int(status.rsplit(" ", 1)[-1])


async def delete_orphans(
    conn: Connection, child: str, parent: str, cutoff: datetime, limit: int
) -> int:
    """Delete up to `limit` rows of the child partition `child` that started before `cutoff`
    and whose interception is not in `parent` (any more). Returns how many."""
    status = await conn.execute(
        f'DELETE FROM "{child}" WHERE ctid = ANY(ARRAY('
        f'SELECT c.ctid FROM "{child}" c WHERE c.started_at < $1 AND NOT EXISTS ('
        f'SELECT 1 FROM "{parent}" i WHERE i.id = c.interception_id'
        " AND i.started_at = c.started_at) LIMIT $2))",
        cutoff,
        limit,
    )
    return int(status.rsplit(" ", 1)[-1])
