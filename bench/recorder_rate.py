"""The recorder's sustained write rate: ``aibridged.recorder.Recorder`` driven directly against the
bench's PostgreSQL, without HTTP or a gateway around it.

Each interception is what the gateway records for a blocking answer with one tool call: a start
(committed by group commit; the caller waits, as a request does), then a token usage row, a prompt
row and a tool row (queued), then the end (queued). ``--concurrency`` interceptions are in flight at
once (as many as a saturated gateway has requests open). The clock runs from the first start to
the moment every end and every row has been written (or counted as dropped); the rate is
interceptions per second over that time. Before it, ``ALONE`` starts are committed one at a time
(what a start costs a request at concurrency 1: ``start_alone_ms``).

The recorder is built as ``aibridged.startup.open_recorder`` builds it by default
(``aibridged.startup.recorder_connections``): starts committed on a trio-native libpq connection,
batches on an asyncpg connection of their own, both with ``synchronous_commit = off``; default
queue and batch sizes. ``--starts asyncpg`` commits the starts through asyncpg and trio-asyncio
instead (one more connection of that side pool), as the daemon did before, for comparison.
Runs in a database of its own (created and migrated here), so the gateways' tables are not
touched.

    python -m bench.recorder_rate --server-uri URI [--interceptions 20000] [--concurrency 64]
        [--starts native|asyncpg]

prints one JSON object on stdout. ``bench.run`` runs it pinned to the gateway's CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import trio
import trio_asyncio
from prometheus_client import CollectorRegistry

from aibridged.metrics import Metrics
from aibridged.recorder import Recorder, ensure_partitions
from aibridged.records import InterceptionEnd, InterceptionStart, PromptUsage, TokenUsage, ToolUsage
from aibridged.startup import RECORDER_CONNECTIONS, recorder_connections
from aibridged.store import apply_migrations, open_store
from bench.latency import summary_ms

DATABASE = "bench_recorder_rate"
POOL_SIZE = 10  # database.pool_size's default
ROWS_PER_INTERCEPTION = 3
ALONE = 300  # starts committed one at a time, before the timed run
SETTINGS = ("synchronous_commit", "fsync", "wal_sync_method", "commit_delay", "shared_buffers")
PROMPT = (
    "Refactor the retry loop in the upstream client so that a connection reset while reading the "
    "head of the answer is retried once on a fresh connection, and add a test that fails without "
    "the change. Keep the public interface as it is and explain what you changed. "
) * 2  # ~600 characters, a typical last user prompt
TOOL_INPUT = json.dumps(
    {
        "file_path": "aibridged/intercept/upstream.py",
        "old_string": "        except ConnectionResetError:\n            raise\n",
        "new_string": (
            "        except ConnectionResetError:\n            if retried:\n                raise\n"
        ),
    }
)


def database_dsn(server_uri: str, database: str) -> str:
    head, sep, tail = server_uri.partition("/postgres?")
    return f"{head}/{database}?{tail}" if sep else server_uri.replace("/postgres", f"/{database}")


async def create_database(server_uri: str, database: str = DATABASE) -> None:
    """A new empty `database` on the server (dropped first if it exists)."""

    async def create() -> None:
        conn = await asyncpg.connect(server_uri)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {database}")
            await conn.execute(f"CREATE DATABASE {database}")
        finally:
            await conn.close()

    async with trio_asyncio.open_loop() as loop:
        await trio_asyncio.aio_as_trio(create, loop=loop)()


class _Interceptions:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.start_s: list[float] = []
        self.initiator = uuid.uuid4()

    async def one(self, index: int, *, timed: bool) -> None:
        start = InterceptionStart(
            id=uuid.uuid4(),
            initiator_id=self.initiator,
            api_key_id="benchkey01",
            provider="anthropic",
            provider_name="anthropic",
            model="claude-sonnet-4-5",
            client="Claude Code",
            client_session_id=f"session-{index % 50}",
            user_agent="claude-cli/2.0.0 (external, cli)",
            credential_kind="centralized",
            credential_hint="sk-a...0000",
            thread_parent_id=None,
            thread_root_id=None,
            started_at=datetime.now(UTC),
        )
        before = time.perf_counter()
        await self.recorder.start(start)
        if timed:
            self.start_s.append(time.perf_counter() - before)
        response_id = f"msg_{start.id.hex[:24]}"
        self.recorder.add(start, TokenUsage(response_id, 41_000, 230, cache_read=38_000))
        self.recorder.add(start, PromptUsage(PROMPT, response_id))
        self.recorder.add(
            start, ToolUsage(response_id, "Edit", f"toolu_{start.id.hex}", TOOL_INPUT)
        )
        self.recorder.end(
            InterceptionEnd(
                start.id, start.started_at, datetime.now(UTC), "sk-a...0000", "completed"
            )
        )

    async def run(self, count: int, concurrency: int, *, timed: bool) -> None:
        counter = iter(range(count))

        async def worker() -> None:
            for index in counter:
                await self.one(index, timed=timed)

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)


async def _until_written(recorder: Recorder, ends: int, rows: int) -> dict[str, int]:
    """Poll until `ends` ends and `rows` rows are written or dropped; the deepest queues seen."""
    deepest = {"rows": 0, "ends": 0}
    while True:
        stats = recorder.statistics()
        deepest["rows"] = max(deepest["rows"], stats.queued_rows)
        deepest["ends"] = max(deepest["ends"], stats.queued_ends)
        if stats.ends_written >= ends and stats.rows_written + stats.dropped >= rows:
            return deepest
        await trio.sleep(0.001)


async def measure(
    server_uri: str, *, interceptions: int, concurrency: int, warmup: int, starts: str = "native"
) -> Any:
    await create_database(server_uri)
    async with open_store(
        database_dsn(server_uri, DATABASE), pool_size=POOL_SIZE, connect_timeout_s=10
    ) as store:
        await apply_migrations(store)
        await ensure_partitions(store)
        if starts == "native":
            runner, native = await recorder_connections(store, synchronous_commit=False)
        else:
            runner = await store.side_pool(RECORDER_CONNECTIONS + 1, {"synchronous_commit": "off"})
            native = None
        recorder = Recorder(
            runner, Metrics(CollectorRegistry(), process_metrics=False), starts_runner=native
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(recorder.run)
            load = _Interceptions(recorder)
            await load.run(warmup, concurrency, timed=False)
            await _until_written(recorder, warmup, warmup * ROWS_PER_INTERCEPTION)
            # One start at a time (a gateway at concurrency 1): what each commit costs alone.
            alone = _Interceptions(recorder)
            await alone.run(ALONE, 1, timed=True)
            await _until_written(recorder, warmup + ALONE, (warmup + ALONE) * ROWS_PER_INTERCEPTION)
            written_before = warmup + ALONE
            before = recorder.statistics()
            cpu_before = _cpu_s()
            started = time.perf_counter()
            deepest: dict[str, int] = {}

            async def watch() -> None:
                total = written_before + interceptions
                deepest.update(await _until_written(recorder, total, total * ROWS_PER_INTERCEPTION))

            starts_done = 0.0

            async def drive() -> None:
                nonlocal starts_done
                await load.run(interceptions, concurrency, timed=True)
                starts_done = time.perf_counter() - started

            async with trio.open_nursery() as inner:
                inner.start_soon(drive)
                inner.start_soon(watch)
            elapsed = time.perf_counter() - started
            cpu = _cpu_s() - cpu_before
            after = recorder.statistics()
            recorder.close()
    counts, settings = await _counts(server_uri)
    return {
        "interceptions": interceptions,
        "warmup_interceptions": warmup,
        "alone_interceptions": ALONE,
        "concurrency": concurrency,
        "rows_per_interception": ROWS_PER_INTERCEPTION,
        "seconds": round(elapsed, 3),
        "interceptions_per_s": round(interceptions / elapsed, 1),
        "rows_per_s": round(interceptions * ROWS_PER_INTERCEPTION / elapsed, 1),
        "starts_done_s": round(starts_done, 3),
        "starts_per_s": round(interceptions / starts_done, 1),
        "start_wait_ms": summary_ms(load.start_s),
        "start_alone_ms": summary_ms(alone.start_s),
        "postgres_settings": settings,
        "batches": after.batches - before.batches,
        "rows_written": after.rows_written - before.rows_written,
        "ends_written": after.ends_written - before.ends_written,
        "dropped": after.dropped - before.dropped,
        "deepest_queue": deepest,
        "last_error": after.last_error,
        "recorder_cpu_s": round(cpu, 3),
        "recorder_cpu_ms_per_interception": round(1000 * cpu / interceptions, 4),
        "tables": counts,
        "prompt_chars": len(PROMPT),
        "tool_input_chars": len(TOOL_INPUT),
        "pool_size": POOL_SIZE,
        "recorder_connections": RECORDER_CONNECTIONS + 1,
        "starts": starts,
    }


async def _counts(server_uri: str) -> tuple[dict[str, int], dict[str, str]]:
    tables = ("aibridge_interceptions", "aibridge_token_usages", "aibridge_user_prompts",
              "aibridge_tool_usages")  # fmt: skip

    async def count() -> tuple[dict[str, int], dict[str, str]]:
        conn = await asyncpg.connect(database_dsn(server_uri, DATABASE))
        try:
            out = {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in tables}
            ended = "SELECT count(*) FROM aibridge_interceptions WHERE ended_at IS NOT NULL"
            out["ended"] = int(await conn.fetchval(ended))
            settings = {name: str(await conn.fetchval(f"SHOW {name}")) for name in SETTINGS}
            return out, settings
        finally:
            await conn.close()

    async with trio_asyncio.open_loop() as loop:
        found: tuple[dict[str, int], dict[str, str]] = await trio_asyncio.aio_as_trio(
            count, loop=loop
        )()
        return found


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recorder_rate", description=__doc__)
    parser.add_argument("--server-uri", required=True, help="the server's postgres database")
    parser.add_argument("--interceptions", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1_000, help="untimed interceptions first")
    parser.add_argument("--starts", choices=["native", "asyncpg"], default="native",
                        help="the start commits' driver")  # fmt: skip
    args = parser.parse_args(argv)
    result = trio.run(
        lambda: measure(
            args.server_uri,
            interceptions=args.interceptions,
            concurrency=args.concurrency,
            warmup=args.warmup,
            starts=args.starts,
        )
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
