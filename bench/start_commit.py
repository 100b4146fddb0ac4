"""What one interception start costs the request, by driver: asyncpg through trio-asyncio (what the
recorder used before) against the trio-native libpq connection (``aibridged.store.native``, what
it uses now), in one process against one PostgreSQL, sample by sample interleaved.

Each sample is one start, one at a time (a gateway at concurrency 1), timed two ways:
``insert`` (the statement alone: ``insert_starts`` on the driver) and ``recorder`` (what a request
waits for: ``Recorder.start``, the group commit's task included). Both run back to back, then
with ``--gap-ms`` of idle before each sample (the bench's interleaved requests leave such gaps,
and the round trip after idling costs more on the shared VM). The two drivers alternate which
goes first. Both sessions have ``synchronous_commit = off``, as the recorder's do.

    python -m bench.start_commit [--server-uri URI] [--samples 2000] [--gap-ms 5]

Without ``--server-uri`` an embedded PostgreSQL is started in a temporary directory. Prints one
JSON object on stdout (milliseconds).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from aibridged.metrics import Metrics
from aibridged.recorder import Recorder, ensure_partitions
from aibridged.records import InterceptionStart
from aibridged.store import apply_migrations, open_store
from aibridged.store.records import insert_starts
from bench.database import running_database
from bench.latency import summary_ms
from bench.recorder_rate import create_database, database_dsn

DATABASE = "bench_start_commit"
SETTINGS = {"synchronous_commit": "off"}
WARMUP = 200


def _start(initiator: uuid.UUID) -> InterceptionStart:
    return InterceptionStart(
        id=uuid.uuid4(),
        initiator_id=initiator,
        api_key_id="benchkey01",
        provider="anthropic",
        provider_name="anthropic",
        model="claude-sonnet-4-5",
        client="Claude Code",
        client_session_id="session-1",
        user_agent="claude-cli/2.0.0 (external, cli)",
        credential_kind="centralized",
        credential_hint="sk-a...0000",
        thread_parent_id=None,
        thread_root_id=None,
        started_at=datetime.now(UTC),
    )


Commit = Callable[[InterceptionStart], Awaitable[Any]]


async def _sample(commits: dict[str, Commit], samples: int, gap_s: float) -> dict[str, Any]:
    """`samples` timed starts per driver, alternating which goes first."""
    initiator = uuid.uuid4()
    times: dict[str, list[float]] = {name: [] for name in commits}
    order = list(commits)
    gc.disable()  # a collection lands on one driver's sample or the other's: noise
    try:
        for index in range(samples):
            for name in order if index % 2 else reversed(order):
                if gap_s:
                    await trio.sleep(gap_s)
                start = _start(initiator)
                before = time.perf_counter()
                await commits[name](start)
                times[name].append(time.perf_counter() - before)
            if index % 100 == 99:
                gc.collect()
    finally:
        gc.enable()
    return {name: summary_ms(values) for name, values in times.items()}


async def measure(server_uri: str, *, samples: int, gap_ms: float) -> dict[str, Any]:
    await create_database(server_uri, DATABASE)
    async with open_store(
        database_dsn(server_uri, DATABASE), pool_size=4, connect_timeout_s=10
    ) as store:
        await apply_migrations(store)
        await ensure_partitions(store)
        asyncpg_side = await store.side_pool(1, SETTINGS)
        native = await store.native_pool(1, SETTINGS, application_name="bench-start-commit")
        metrics = Metrics(CollectorRegistry(), process_metrics=False)
        # No rows or ends are queued here: each recorder's `runner` only matters for its starts.
        by_asyncpg = Recorder(asyncpg_side, metrics)  # starts on the runner, as before
        by_native = Recorder(await store.side_pool(1, SETTINGS), metrics, starts_runner=native)
        inserts: dict[str, Commit] = {
            "asyncpg": lambda start: insert_starts(asyncpg_side, [start]),
            "native": lambda start: insert_starts(native, [start]),
        }
        recorders: dict[str, Commit] = {"asyncpg": by_asyncpg.start, "native": by_native.start}
        out: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            await nursery.start(by_asyncpg.run)
            await nursery.start(by_native.run)
            await _sample(inserts, WARMUP, 0)
            for gap in (0.0, gap_ms / 1000):
                label = f"gap_{gap * 1000:g}ms"
                out[f"insert_{label}"] = await _sample(inserts, samples, gap)
                out[f"recorder_{label}"] = await _sample(recorders, samples, gap)
            by_asyncpg.close()
            by_native.close()
    return {"samples": samples, "gap_ms": gap_ms, "settings": SETTINGS, **out}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.start_commit", description=__doc__)
    parser.add_argument("--server-uri", help="the server's postgres database (default: embedded)")
    parser.add_argument("--samples", type=int, default=2000, help="timed starts per driver, each")
    parser.add_argument("--gap-ms", type=float, default=5.0, help="idle before each, second part")
    args = parser.parse_args(argv)

    def run(uri: str) -> dict[str, Any]:
        return trio.run(lambda: measure(uri, samples=args.samples, gap_ms=args.gap_ms))

    if args.server_uri:
        result = run(args.server_uri)
    else:
        with (
            tempfile.TemporaryDirectory(prefix="bench-start-commit-") as tmp,
            running_database(Path(tmp) / "postgres", cpu=None) as database,
        ):
            result = run(database.uri)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
