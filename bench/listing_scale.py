"""The interceptions listing at scale: filtered pages of a million interceptions, through the API's
code.

Starts its own embedded PostgreSQL (``bench.database``), makes a database, applies the migrations,
creates day partitions for 60 days (and the week ahead, as the daemon does) and fills it
(``bench.listing_fill``). Then, for each query (every filter alone, a few combined, none), it times
``aibridged.store.listing.list_interceptions`` through a ``Store``, as the API calls it (the count
and the page in one transaction, the rows decoded): the first page (limit 100) and a deep page
(``after`` = the id of the 5,000th row of that query's order, or as deep as the query allows),
``--runs`` times each, every query once per round so the VM's changes of speed spread over all
of them. Then it runs ``EXPLAIN (ANALYZE, BUFFERS)`` of each statement (count, cursor lookup, page)
in its custom and its generic plan, and checks for sequential scans of the interceptions
(``bench.listing_explain``).

    python -m bench.listing_scale [--interceptions 1000000] [--runs 20] [--out bench/results]

writes ``<date>-listing-scale.json`` and ``.md`` (``bench.listing_report``). ``--data-dir DIR
--reuse`` keeps the server's data between runs and fills only once; ``--fill-at-version N`` fills
under the schema of migration N and times the later migrations on the filled tables (what an
upgrade costs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import trio
import trio_asyncio

from aibridged.recorder import ensure_partitions
from aibridged.store import Store, apply_migrations, open_store
from aibridged.store.db import Connection
from aibridged.store.listing import (
    COUNT_CAP,
    Selection,
    Statement,
    children_statement,
    count_statement,
    cursor_statement,
    distinct_values,
    list_interceptions,
    page_statement,
)
from aibridged.store.migrate import _apply, load_migrations
from aibridged.store.records import create_partitions
from bench.database import Database, running_database
from bench.facts import machine_facts, source_state
from bench.latency import percentile
from bench.listing_explain import explain
from bench.listing_fill import RECORDING_TABLES, Shape, fill
from bench.listing_report import render_markdown
from bench.procs import calibrate

REPO = Path(__file__).resolve().parent.parent
DATABASE = "bench_listing_scale"
LIMIT = 100  # the API's default page
TARGET_MS = 100.0  # count + page, p95 (docs/performance.md)
SETTINGS = ("shared_buffers", "work_mem", "effective_cache_size", "random_page_cost",
            "max_parallel_workers_per_gather", "jit", "plan_cache_mode")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    selection: Selection
    values: str  # what the filter values are, for the report


@dataclass(slots=True)
class Case:
    query: Query
    count: int = 0
    count_capped: bool = False
    depth: int = 0  # the deep page starts after this many rows
    cursor: str | None = None
    first_s: list[float] | None = None
    deep_s: list[float] | None = None


# --- the database ------------------------------------------------------------------------------


async def _on_server(uri: str, sql: str) -> Any:
    """One statement on the server's own database (CREATE DATABASE cannot run in the store)."""

    async def run() -> Any:
        conn = await asyncpg.connect(uri)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    async with trio_asyncio.open_loop() as loop:
        return await trio_asyncio.aio_as_trio(run, loop=loop)()


async def _fresh_database(db: Database, reuse: bool) -> bool:
    """True when the database must be filled (it is new, or not reused)."""
    exists = await _on_server(
        db.uri, f"SELECT count(*) FROM pg_database WHERE datname = '{DATABASE}'"
    )
    if exists and reuse:
        return False
    await _on_server(db.uri, f"DROP DATABASE IF EXISTS {DATABASE}")
    await _on_server(db.uri, f"CREATE DATABASE {DATABASE}")
    return True


async def _filled_shape(store: Store) -> dict[str, Any] | None:
    async def read(conn: Connection) -> Any:
        if await conn.fetchval("SELECT to_regclass('bench_listing_fill')") is None:
            return None
        return await conn.fetchrow("SELECT * FROM bench_listing_fill")

    row = await store.run(read)
    if row is None:
        return None
    return {**dict(row), "steps": json.loads(row["steps"])}  # asyncpg hands jsonb over as text


async def _record_fill(store: Store, shape: Shape, steps: dict[str, float]) -> None:
    async def write(conn: Connection) -> None:
        await conn.execute(
            "CREATE TABLE bench_listing_fill (interceptions integer, days integer,"
            " users integer, end_at timestamptz, steps jsonb, schema_version integer)"
        )
        await conn.execute(
            "INSERT INTO bench_listing_fill VALUES ($1, $2, $3, $4, $5,"
            " (SELECT max(version) FROM schema_migrations))",
            shape.interceptions, shape.days, shape.users, shape.end, json.dumps(steps),
        )  # fmt: skip

    await store.run(write)


async def prepare(store: Store, shape: Shape, *, fresh: bool, fill_at: int | None) -> Any:
    """Migrate, partition and fill (when fresh), then apply what migrations remain, timed."""
    facts: dict[str, Any] = {}
    if fresh:
        known = load_migrations()
        await store.run(_apply, [m for m in known if fill_at is None or m.version <= fill_at])
        await create_partitions(store, shape.first_day, shape.days)
        await ensure_partitions(store, today=shape.end)
        print(f"filling {shape.interceptions:,} interceptions over {shape.days} days", flush=True)
        started = time.perf_counter()
        steps = await store.run(fill, shape)
        steps["total"] = round(time.perf_counter() - started, 2)
        print(f"fill: {steps['total']:.1f} s in all", flush=True)
        await _record_fill(store, shape, steps)
    filled = await _filled_shape(store)
    if filled is None:
        raise SystemExit(f"{DATABASE} exists but was never filled: run without --reuse")
    if (filled["interceptions"], filled["days"], filled["users"]) != (
        shape.interceptions,
        shape.days,
        shape.users,
    ):
        raise SystemExit(f"{DATABASE} holds another shape ({filled}): run without --reuse")
    facts["fill"] = filled
    started = time.perf_counter()
    applied = await apply_migrations(store)
    facts["migrations_after_fill"] = {
        "versions": applied,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if applied:
        print(f"migrations {applied} on the filled tables: "
              f"{facts['migrations_after_fill']['seconds']:.1f} s", flush=True)  # fmt: skip
    return facts


# --- what to list ------------------------------------------------------------------------------


async def _most(conn: Connection, column: str, where: str = "true", order: str = "DESC") -> Any:
    return await conn.fetchval(
        f"SELECT {column} FROM aibridge_interceptions WHERE {where}"
        f" GROUP BY {column} ORDER BY count(*) {order}, {column} LIMIT 1"
    )


async def _pick(conn: Connection, end: dt.datetime) -> list[Query]:
    """The queries, with values from the data: the most common value of each column (the most
    rows to count), the lightest user too, sessions of both kinds."""
    heavy = await _most(conn, "initiator_id")
    light = await _most(conn, "initiator_id", order="ASC")
    provider = await _most(conn, "provider")
    provider_name = await _most(conn, "provider_name")
    model = await _most(conn, "model")
    client = await _most(conn, "client")
    heavy_model = await _most(conn, "model", f"initiator_id = '{heavy}'")
    session = await _most(conn, "session_id", "client_session_id IS NOT NULL")
    thread = await conn.fetchrow(
        "SELECT client, session_id FROM aibridge_interceptions WHERE thread_root_id IS NOT NULL"
        " GROUP BY client, session_id ORDER BY count(*) DESC, session_id LIMIT 1"
    )
    week, month = end - dt.timedelta(days=7), end - dt.timedelta(days=30)
    day_from, day_to = end - dt.timedelta(days=11), end - dt.timedelta(days=10)
    t = dt.datetime.isoformat
    return [
        Query("no filter", Selection(), ""),
        Query("initiator (heaviest user)", Selection(initiator_id=heavy), "the most rows"),
        Query("initiator (lightest user)", Selection(initiator_id=light), "the fewest rows"),
        Query("provider", Selection(provider=provider), provider),
        Query("provider_name", Selection(provider_name=provider_name), provider_name),
        Query("model", Selection(model=model), model),
        Query("client", Selection(client=client), client),
        Query("session_id (client session)", Selection(session_id=session), "the longest"),
        Query("started_after (last 7 days)", Selection(started_after=week), t(week)),
        Query("started_before (older than 30 days)", Selection(started_before=month), t(month)),
        Query("initiator + model", Selection(initiator_id=heavy, model=heavy_model),
              f"heaviest user, {heavy_model}"),
        Query("initiator + started_after", Selection(initiator_id=heavy, started_after=week),
              "heaviest user, last 7 days"),
        Query("provider_name + started_after + started_before",
              Selection(provider_name=provider_name, started_after=day_from,
                        started_before=day_to), f"{provider_name}, one day 10 days ago"),
        Query("client + session_id (thread)",
              Selection(client=thread["client"], session_id=thread["session_id"]),
              f"{thread['client']}, the longest thread"),
    ]  # fmt: skip


async def _locate(store: Store, case: Case, deep: int) -> None:
    """The query's count, and the id of the row the deep page starts after."""
    listing = await list_interceptions(store, case.query.selection, limit=1, offset=0, after=None)
    case.count, case.count_capped = listing.count, listing.count_capped
    case.depth = max(1, min(deep, listing.count - LIMIT))
    if listing.count == 0:
        return
    listing = await list_interceptions(
        store, case.query.selection, limit=1, offset=case.depth - 1, after=None
    )
    case.cursor = listing.results[0]["id"]


# --- timing ------------------------------------------------------------------------------------


async def _timed(store: Store, selection: Selection, after: str | None) -> tuple[float, int]:
    started = time.perf_counter()
    listing = await list_interceptions(store, selection, limit=LIMIT, offset=0, after=after)
    return time.perf_counter() - started, len(listing.results)


async def time_pages(store: Store, cases: list[Case], runs: int) -> None:
    """``runs`` rounds (after one untimed round), every query's first and deep page per round."""
    for case in cases:
        case.first_s, case.deep_s = [], []
    for round_ in range(runs + 1):
        for case in cases:
            first, _ = await _timed(store, case.query.selection, None)
            deep, _ = await _timed(store, case.query.selection, case.cursor)
            if round_ > 0:
                assert case.first_s is not None and case.deep_s is not None
                case.first_s.append(first)
                case.deep_s.append(deep)
        if round_ == 0:
            print("warm-up round done", flush=True)
    print(f"{runs} timed rounds done", flush=True)


def _summary(values_s: list[float] | None) -> dict[str, float]:
    ordered = sorted(values_s or [])
    return {
        "p50_ms": round(percentile(ordered, 50) * 1000, 2),
        "p95_ms": round(percentile(ordered, 95) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else 0.0,
        "runs": len(ordered),
    }


# --- EXPLAIN -----------------------------------------------------------------------------------


async def _statements(conn: Connection, case: Case) -> dict[str, Statement]:
    """Every statement one listing call runs, first page and deep page, with the values it
    would bind (the children's come from the page's own rows)."""
    selection = case.query.selection
    out = {"count": count_statement(selection, COUNT_CAP)}
    pages = {"first": page_statement(selection, None, limit=LIMIT, offset=0)}
    if case.cursor is not None:
        looking_up = cursor_statement(uuid.UUID(case.cursor))
        started_at = await conn.fetchval(looking_up.sql, *looking_up.params)
        out["cursor_lookup"] = looking_up
        cursor = (started_at, uuid.UUID(case.cursor))
        pages["deep"] = page_statement(selection, cursor, limit=LIMIT, offset=0)
    for name, page in pages.items():
        out[f"page_{name}"] = page
        rows = await conn.fetch(page.sql, *page.params)
        if rows:
            out[f"children_{name}"] = children_statement(rows)
    return out


async def _explain_case(conn: Connection, case: Case, keep_plans: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, statement in (await _statements(conn, case)).items():
        result = await explain(conn, statement)
        for mode, verdict in result.items():
            plan = verdict.pop("plan")
            if keep_plans is not None:
                slug = case.query.name.replace(" ", "_").replace("/", "_")
                path = keep_plans / f"{slug}-{name}-{mode}.json"
                path.write_text(json.dumps(plan, indent=1, default=str))
        out[name] = result
    return out


async def explain_all(store: Store, cases: list[Case], keep_plans: Path | None) -> dict[str, Any]:
    out = {}
    for case in cases:
        out[case.query.name] = await store.run(_explain_case, case, keep_plans)
    print("EXPLAIN done", flush=True)
    return out


# --- the rest of the listing's routes, for the record ------------------------------------------


async def time_distinct(store: Store, runs: int = 5) -> dict[str, Any]:
    """``/models`` and ``/clients`` (everyone's, and the heaviest user's): informational."""
    out = {}
    for column in ("model", "client"):
        samples = []
        for _ in range(runs + 1):
            started = time.perf_counter()
            await distinct_values(store, column, None, 100)
            samples.append(time.perf_counter() - started)
        out[f"{column}s"] = _summary(samples[1:])
    return out


async def _settings_and_sizes(store: Store) -> dict[str, Any]:
    async def read(conn: Connection) -> dict[str, Any]:
        settings = {name: str(await conn.fetchval(f"SHOW {name}")) for name in SETTINGS}
        sizes, rows = {}, {}
        for table in RECORDING_TABLES:
            tree = f"(SELECT relid FROM pg_partition_tree('{table}'))"
            sizes[table] = {
                "table_mib": await _mib(conn, "pg_table_size(oid)", f"oid IN {tree}"),
                "indexes_mib": await _mib(conn, "pg_indexes_size(oid)", f"oid IN {tree}"),
            }
            rows[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
        partitions = await conn.fetchval(
            "SELECT count(*) FROM pg_partition_tree('aibridge_interceptions') WHERE isleaf"
        )
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'aibridge_interceptions'"
            " ORDER BY indexname"
        )
        return {
            "postgres_version": str(await conn.fetchval("SHOW server_version")),
            "settings": settings,
            "rows": rows,
            "sizes": sizes,
            "interceptions_partitions": int(partitions),
            "interceptions_indexes": {r["indexname"]: r["indexdef"] for r in indexes},
        }

    return await store.run(read)


async def _mib(conn: Connection, size: str, where: str) -> float:
    total = await conn.fetchval(f"SELECT sum({size}) FROM pg_class WHERE {where}")
    return round(int(total or 0) / 2**20, 1)


# --- the run -----------------------------------------------------------------------------------


async def measure(db: Database, args: argparse.Namespace) -> dict[str, Any]:
    fresh = await _fresh_database(db, args.reuse)
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    shape = Shape(interceptions=args.interceptions, days=args.days, users=args.users, end=end)
    async with open_store(db.dsn(DATABASE), pool_size=10, connect_timeout_s=30) as store:
        facts = await prepare(store, shape, fresh=fresh, fill_at=args.fill_at_version)
        shape = replace(shape, end=facts["fill"]["end_at"])
        database = await _settings_and_sizes(store)
        queries = await store.run(_pick, shape.end)
        cases = [Case(q) for q in queries]
        for case in cases:
            await _locate(store, case, args.deep)
        print("queries located", flush=True)
        await time_pages(store, cases, args.runs)
        plans = await explain_all(store, cases, args.plans_dir)
        distinct = await time_distinct(store)
    return {
        **facts,
        "database": database,
        "queries": [_case_result(c, plans[c.query.name]) for c in cases],
        "distinct_values": distinct,
    }


def _case_result(case: Case, plans: dict[str, Any]) -> dict[str, Any]:
    first, deep = _summary(case.first_s), _summary(case.deep_s)
    together = [first["p95_ms"], deep["p95_ms"] if case.cursor else 0.0]
    explained_ok = all(mode["ok"] for statement in plans.values() for mode in statement.values())
    return {
        "name": case.query.name,
        "values": case.query.values,
        "count": case.count,
        "count_capped": case.count_capped,
        "count_cap": COUNT_CAP,
        "deep_after_rows": case.depth if case.cursor else None,
        "first_page": first,
        "deep_page": deep if case.cursor else None,
        "target_p95_ms": TARGET_MS,
        "first_pass": first["p95_ms"] <= TARGET_MS,
        "deep_pass": deep["p95_ms"] <= TARGET_MS if case.cursor else None,
        "pass": max(together) <= TARGET_MS,
        "explain": plans,
        "explain_ok": explained_ok,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.listing_scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--interceptions", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--runs", type=int, default=20, help="timed rounds")
    parser.add_argument("--deep", type=int, default=5000, help="rows before the deep page")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--name", help="file name without extension (default: DATE-listing-scale)")
    parser.add_argument("--data-dir", type=Path, help="the server's data (default: a temp dir)")
    parser.add_argument("--reuse", action="store_true", help="keep a filled database in --data-dir")
    parser.add_argument("--fill-at-version", type=int, help="fill under migrations up to N")
    parser.add_argument("--plans-dir", type=Path, help="also write every plan (JSON) there")
    parser.add_argument("--database-cpu", type=int, help="pin PostgreSQL to this CPU")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    arguments = list(argv if argv is not None else sys.argv[1:])
    command = shlex.join([os.path.relpath(sys.executable, REPO), "-m", "bench.listing_scale",
                          *arguments])  # fmt: skip
    now = dt.datetime.now().astimezone()
    name = args.name or f"{now.date().isoformat()}-listing-scale"
    temporary = args.data_dir is None
    root = Path(tempfile.mkdtemp(prefix="aibridged-listing-")) if temporary else args.data_dir
    if args.plans_dir is not None:
        args.plans_dir.mkdir(parents=True, exist_ok=True)
    source = source_state(REPO)
    speed_before = calibrate(None)
    started = time.monotonic()
    try:
        with running_database(root / "postgres", cpu=args.database_cpu) as db:
            print(f"PostgreSQL pid {db.pid} up in {db.startup_s:.1f} s ({root})", flush=True)
            measured = trio.run(measure, db, args)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    results = {
        "date": now.isoformat(timespec="seconds"),
        "command": command,
        "seconds": round(time.monotonic() - started, 1),
        "calibration_ms": {"start": speed_before, "end": calibrate(None)},
        "machine": machine_facts({}),
        "source": source,
        "database_cpu": args.database_cpu,
        "shape": {
            "interceptions": args.interceptions,
            "days": args.days,
            "users": args.users,
            "limit": LIMIT,
            "deep": args.deep,
            "runs": args.runs,
        },
        **measured,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (args.out / f"{name}.md").write_text(render_markdown(results))
    print(f"wrote {args.out / name}.json and .md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
