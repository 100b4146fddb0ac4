"""The usage report at scale: `aibridged.store.usage.usage_report` over the listing bench's data
set (a million interceptions over 60 days, ``bench.listing_fill``), and the plan of its statement.

    python -m bench.usage_scale [--interceptions 1000000] [--runs 5] [--data-dir DIR --reuse]

For the ranges the dashboard offers (24 hours, 7 and 30 days, ending at the newest data), grouped
by user and by model, for everyone and for the heaviest user, it times the report as the API
calls it (through a Store, rows decoded and assembled), then prints ``EXPLAIN (ANALYZE,
BUFFERS)`` of the 30-day statement for everyone and for one user. ``--data-dir DIR --reuse``
shares the filled server with ``bench.listing_scale``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from aibridged.store import Store, open_store
from aibridged.store.db import Connection
from aibridged.store.listing import Selection
from aibridged.store.usage import GroupBy, bucket_for, usage_report, usage_statement
from bench.database import Database, running_database
from bench.listing_fill import Shape
from bench.listing_scale import DATABASE, _fresh_database, prepare

RANGES = {"24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7), "30d": dt.timedelta(days=30)}


async def _heaviest(conn: Connection) -> Any:
    return await conn.fetchval(
        "SELECT initiator_id FROM aibridge_interceptions GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    )


async def _explain(conn: Connection, selection: Selection, start: Any, end: Any) -> str:
    statement = usage_statement(selection, start, end, bucket_for(start, end), "user")
    rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {statement.sql}", *statement.params)
    return "\n".join(row[0] for row in rows)


async def _time(store: Store, selection: Selection, start: Any, end: Any, group_by: GroupBy,
                runs: int) -> list[float]:  # fmt: skip
    spent = []
    for _ in range(runs):
        began = time.perf_counter()
        await usage_report(store, selection, start=start, end=end, group_by=group_by, top=8)
        spent.append(time.perf_counter() - began)
    return spent


async def measure(db: Database, args: argparse.Namespace) -> None:
    fresh = await _fresh_database(db, args.reuse)
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    shape = Shape(interceptions=args.interceptions, days=60, users=500, end=end)
    async with open_store(db.dsn(DATABASE), pool_size=4, connect_timeout_s=30) as store:
        facts = await prepare(store, shape, fresh=fresh, fill_at=None)
        newest = facts["fill"]["end_at"]
        one = Selection(initiator_id=await store.run(_heaviest))
        print("| range | group by | who | median ms | max ms |\n|---|---|---|---|---|")
        for name, span in RANGES.items():
            for group_by in ("user", "model"):
                for who, selection in (("everyone", Selection()), ("heaviest user", one)):
                    spent = await _time(store, selection, newest - span, newest, group_by,
                                        args.runs)  # fmt: skip
                    print(f"| {name} | {group_by} | {who} | {statistics.median(spent) * 1000:.0f}"
                          f" | {max(spent) * 1000:.0f} |", flush=True)  # fmt: skip
        for who, selection in (("everyone", Selection()), ("heaviest user", one)):
            plan = await store.run(_explain, selection, newest - RANGES["30d"], newest)
            print(f"\nEXPLAIN (ANALYZE, BUFFERS), 30 days, {who}:\n{plan}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.usage_scale")
    parser.add_argument("--interceptions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args(argv)
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="aibridged-usage-"))
    try:
        with running_database(root / "postgres", cpu=None) as db:
            trio.run(measure, db, args)
    finally:
        if args.data_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
