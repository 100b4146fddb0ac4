"""The retention bench's data: old interceptions to sweep, a few newer ones to keep, and the
counts that say whether the sweep removed exactly what it should.

The old ones are ``bench.listing_fill``'s (generated inside PostgreSQL, every interception with a
token usage and a prompt, 60 % a tool usage, 10 % a thought), spread over ``days`` days that end
just before the cutoff. The cutoff (now - retention at the sweep) is put at noon of the last of
those days, so that day is the boundary partition: half a day of rows deleted in batches, the
days before it dropped whole. The kept ones start 3 hours after the cutoff, on the same day.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from aibridged.store import open_store
from aibridged.store.db import Connection
from aibridged.store.records import create_partitions
from bench.listing_fill import RECORDING_TABLES, Shape, fill

DAY = dt.timedelta(days=1)
KEPT_AFTER_CUTOFF = dt.timedelta(hours=3)
KEPT_MODEL = "bench-kept"


@dataclass(frozen=True, slots=True)
class Plan:
    """When the sweep is expected, and the retention that puts its cutoff at noon."""

    sweep_at: dt.datetime  # the first sweep that can come after the fill and the baseline
    retention_s: int
    cutoff: dt.datetime  # at `sweep_at`; a later sweep moves it later by as much
    shape: Shape

    @property
    def retention(self) -> str:
        return f"{self.retention_s}s"


def plan(sweep_at: dt.datetime, *, rows: int, days: int, base_retention: dt.timedelta) -> Plan:
    noon = dt.datetime.combine((sweep_at - base_retention).date(), dt.time(12), dt.UTC)
    retention_s = round((sweep_at - noon).total_seconds())
    cutoff = sweep_at - dt.timedelta(seconds=retention_s)
    # listing_fill keeps its newest row 80 minutes before `end`.
    shape = Shape(interceptions=rows, days=days, users=500, end=cutoff - dt.timedelta(minutes=1))
    return Plan(sweep_at, retention_s, cutoff, shape)


async def prepare(dsn: str, plan: Plan, kept: int) -> dict[str, Any]:
    """Day partitions for the old days, the fill, the kept interceptions; seconds per step."""
    async with open_store(dsn, pool_size=2, connect_timeout_s=30) as store:
        await create_partitions(store, plan.shape.first_day, plan.shape.days)
        print(f"filling {plan.shape.interceptions:,} interceptions over {plan.shape.days} days"
              f" from {plan.shape.first_day}", flush=True)  # fmt: skip
        started = time.perf_counter()
        steps = await store.run(fill, plan.shape)
        steps["total"] = round(time.perf_counter() - started, 2)
        await store.run(_insert_kept, plan.cutoff + KEPT_AFTER_CUTOFF, kept)
    return steps


async def _insert_kept(conn: Connection, first_at: dt.datetime, count: int) -> None:
    await conn.execute(
        "WITH made AS (INSERT INTO aibridge_interceptions (id, initiator_id, provider,"
        " provider_name, model, started_at, ended_at)"
        " SELECT gen_random_uuid(), gen_random_uuid(), 'openai', 'openai', $3, at,"
        " at + interval '1 second'"
        " FROM generate_series(1, $2) AS n,"
        " LATERAL (SELECT $1::timestamptz + make_interval(secs => n) AS at) AS t"
        " RETURNING id, started_at)"
        " INSERT INTO aibridge_token_usages (id, interception_id, created_at, started_at)"
        " SELECT gen_random_uuid(), id, started_at, started_at FROM made",
        first_at,
        count,
        KEPT_MODEL,
    )


async def counts(dsn: str, cutoff: dt.datetime) -> dict[str, Any]:
    """Rows older than `cutoff` in every table, the kept interceptions and their usages, and
    the day partitions left."""
    async with open_store(dsn, pool_size=2, connect_timeout_s=30) as store:
        return await store.run(_counts, cutoff)


async def _counts(conn: Connection, cutoff: dt.datetime) -> dict[str, Any]:
    older = {}
    for table in RECORDING_TABLES:
        older[table] = await conn.fetchval(
            f"SELECT count(*) FROM {table} WHERE started_at < $1", cutoff
        )
    kept = await conn.fetchval(
        "SELECT count(*) FROM aibridge_interceptions WHERE model = $1", KEPT_MODEL
    )
    kept_usages = await conn.fetchval(
        "SELECT count(*) FROM aibridge_token_usages u JOIN aibridge_interceptions i"
        " ON i.id = u.interception_id AND i.started_at = u.started_at WHERE i.model = $1",
        KEPT_MODEL,
    )
    partitions = await conn.fetchval(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'aibridge_interceptions'::regclass"
    )
    return {
        "older_than_cutoff": older,
        "kept": kept,
        "kept_token_usages": kept_usages,
        "interception_partitions": partitions,
    }
