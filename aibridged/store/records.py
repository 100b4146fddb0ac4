"""Recording's SQL: starts, ends and child rows, each kind written many rows per statement.

Every statement takes whole columns as arrays (`unnest`), so a batch of any size is one round
trip and one statement plan, whatever the batch holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from aibridged.records import (
    InterceptionEnd,
    InterceptionStart,
    ModelThought,
    PromptUsage,
    TokenUsage,
    ToolUsage,
)
from aibridged.store.db import Connection, Runner
from aibridged.store.native import NativePool, Sent, Statement


@dataclass(frozen=True, slots=True)
class Stamped:
    """A child record with the interception it belongs to and when it was made."""

    interception_id: uuid.UUID
    started_at: datetime  # the interception's (the partition key)
    created_at: datetime
    record: TokenUsage | PromptUsage | ToolUsage | ModelThought
    thread_root_id: uuid.UUID | None = None  # the interception's thread's (None: itself)


def _json(value: Any) -> str:
    try:
        text = orjson.dumps(value)
    except TypeError:  # a lone surrogate, an integer past 64 bits: cleaned, not refused
        return orjson.dumps(_clean(value)).decode()
    if b"\\u0000" in text:  # jsonb refuses NUL (also seen in a literal "\\u0000": harmless)
        return orjson.dumps(_clean(value)).decode()
    return text.decode()


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _bigint(value)
    if isinstance(value, dict):
        return {_text(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


_BIGINT = 2**63 - 1


def _bigint(value: int) -> int:
    """A count from an upstream, kept within PostgreSQL's bigint."""
    return max(-_BIGINT - 1, min(value, _BIGINT))


Threads = dict[uuid.UUID, tuple[uuid.UUID | None, uuid.UUID | None]]


async def insert_starts(
    runner: Runner | NativePool,
    starts: Sequence[InterceptionStart],
    sent: Callable[[], None] = lambda: None,
) -> None:
    """Insert starts whose thread is known (or that answer no tool call), as they are.
    `sent()`: called once the statement is on its way (through asyncpg: just before)."""
    if isinstance(runner, NativePool):
        await runner.fetch(INSERT_STARTS, _start_arrays(starts), sent)
    else:
        sent()
        await runner.run(_insert_starts, starts)


async def insert_starts_finding_threads(
    runner: Runner | NativePool,
    starts: Sequence[InterceptionStart],
    sent: Callable[[], None] = lambda: None,
) -> Threads:
    """Insert starts that answer a tool call their caller did not know the thread of
    (`correlating_call_id`, no parent): the thread comes from the tool usages, in the same
    statement. Returns each start's (parent, root).

    Kept apart from `insert_starts`: the lookup (one probe of the call index, migration 0007)
    and the rows it returns cost ~0.07 ms a commit, which most starts need not pay."""
    if isinstance(runner, NativePool):
        rows: Any = await runner.fetch(INSERT_STARTS_FINDING_THREADS, _lookup_arrays(starts), sent)
    else:
        sent()
        rows = await runner.run(_insert_starts_finding_threads, starts)
    return _threads(rows)


def send_starts_now(
    pool: NativePool, starts: Sequence[InterceptionStart], *, lookup: bool
) -> Sent | None:
    """The statement `insert_starts` (`lookup`: `insert_starts_finding_threads`) would send,
    sent before this returns; None if no connection could take it at once. Its answer:
    `sent_starts_committed` (or `Sent.abandon`)."""
    if lookup:
        return pool.send_now(INSERT_STARTS_FINDING_THREADS, _lookup_arrays(starts))
    return pool.send_now(INSERT_STARTS, _start_arrays(starts))


async def sent_starts_committed(sent: Sent) -> Threads:
    """Once what `send_starts_now` sent is committed: each start's (parent, root), if it was
    sent with the lookup."""
    return _threads(await sent.answer())


def _threads(rows: Any) -> Threads:
    return {row[0]: (row[1], row[2]) for row in rows}


# Both drivers run the same statements with the same parameters: asyncpg (`Runner`, for a
# Recorder given no `starts_runner`: tests and bench.start_commit) and the native connection the
# daemon commits starts on (store/native.py; prepared once per connection under these names).
_START_COLUMNS = (
    "id, initiator_id, api_key_id, provider, provider_name, model, client, client_session_id,"
    " user_agent, credential_kind, credential_hint, thread_parent_id, thread_root_id, metadata,"
    " started_at"
)
_START_ARRAYS = (
    "$1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
    " $8::text[], $9::text[], $10::text[], $11::text[], $12::uuid[], $13::uuid[], $14::jsonb[],"
    " $15::timestamptz[]"
)
INSERT_STARTS = Statement(
    "aibridged_insert_starts",
    f"INSERT INTO aibridge_interceptions ({_START_COLUMNS}) SELECT * FROM unnest({_START_ARRAYS})",
)
INSERT_STARTS_FINDING_THREADS = Statement(
    "aibridged_insert_starts_finding_threads",
    f"INSERT INTO aibridge_interceptions ({_START_COLUMNS})"
    " SELECT u.id, u.initiator_id, u.api_key_id, u.provider, u.provider_name, u.model,"
    " u.client, u.client_session_id, u.user_agent, u.credential_kind, u.credential_hint,"
    " coalesce(u.parent, t.interception_id), coalesce(u.root, t.thread_root_id), u.metadata,"
    " u.started_at"
    f" FROM unnest({_START_ARRAYS}, $16::text[])"
    f" AS u({_START_COLUMNS.replace('thread_parent_id, thread_root_id', 'parent, root')},"
    " call_id)"
    # One probe of the call index (migration 0007), however many day partitions are kept.
    " LEFT JOIN aibridge_tool_calls t"
    " ON u.parent IS NULL AND u.call_id <> '' AND t.call_id = u.call_id"
    " RETURNING id, thread_parent_id, thread_root_id",
)


async def _insert_starts(conn: Connection, starts: Sequence[InterceptionStart]) -> None:
    await conn.execute(INSERT_STARTS.sql, *_start_arrays(starts))


async def _insert_starts_finding_threads(
    conn: Connection, starts: Sequence[InterceptionStart]
) -> Any:
    return await conn.fetch(INSERT_STARTS_FINDING_THREADS.sql, *_lookup_arrays(starts))


def _lookup_arrays(starts: Sequence[InterceptionStart]) -> list[list[Any]]:
    calls = [_text(s.correlating_call_id) if s.correlating_call_id else None for s in starts]
    return [*_start_arrays(starts), calls]


def _start_arrays(starts: Sequence[InterceptionStart]) -> list[list[Any]]:
    return [
        [s.id for s in starts],
        [s.initiator_id for s in starts],
        [s.api_key_id for s in starts],
        [s.provider for s in starts],
        [s.provider_name for s in starts],
        [_text(s.model) for s in starts],
        [_text(s.client[:64]) for s in starts],
        [_text(s.client_session_id[:256]) if s.client_session_id else None for s in starts],
        [_text(s.user_agent) for s in starts],
        [s.credential_kind for s in starts],
        [s.credential_hint[:15] for s in starts],
        [s.thread_parent_id for s in starts],
        [s.thread_root_id for s in starts],
        [_json(dict(s.metadata)) for s in starts],
        [s.started_at for s in starts],
    ]


async def write_batch(
    runner: Runner, rows: Sequence[Stamped], ends: Sequence[InterceptionEnd]
) -> None:
    """Child rows and ends in one statement: one round trip, written whole or not at all.

    Through asyncpg, not the native connection: its binary encoding is done in C, where the
    native connection's text form is built in Python. With 64 interceptions in flight native
    batches wrote 2,861-3,290 interceptions/s against 3,556-3,618 (measured in one run,
    alternating), though at one request at a time they saved ~0.2 ms of CPU per interception
    on the slow VM (trio-asyncio's scheduling rounds)."""
    await runner.run(_write_batch, rows, ends)


async def _write_batch(
    conn: Connection, rows: Sequence[Stamped], ends: Sequence[InterceptionEnd]
) -> None:
    await conn.execute(_BATCH_SQL, *_batch_arrays(rows, ends))


def _batch_arrays(rows: Sequence[Stamped], ends: Sequence[InterceptionEnd]) -> list[list[Any]]:
    by_kind: dict[type, list[Stamped]] = {kind: [] for kind in _COLUMNS}
    for row in rows:
        by_kind[type(row.record)].append(row)
    arrays = [array for kind, build in _COLUMNS.items() for array in build(by_kind[kind])]
    return [*arrays, *_tool_call_arrays(by_kind[ToolUsage]), *_end_arrays(ends)]


def _token_usage_arrays(rows: list[Stamped]) -> list[list[Any]]:
    usages: list[TokenUsage] = [r.record for r in rows]  # type: ignore[misc]
    return [
        [uuid.uuid4() for _ in rows],
        [r.interception_id for r in rows],
        [_text(u.response_id) for u in usages],
        [_bigint(u.input) for u in usages],
        [_bigint(u.output) for u in usages],
        [_bigint(u.cache_read) for u in usages],
        [_bigint(u.cache_write) for u in usages],
        [_json(dict(u.extra)) for u in usages],
        [r.created_at for r in rows],
        [r.started_at for r in rows],
    ]


def _prompt_arrays(rows: list[Stamped]) -> list[list[Any]]:
    prompts: list[PromptUsage] = [r.record for r in rows]  # type: ignore[misc]
    return [
        [uuid.uuid4() for _ in rows],
        [r.interception_id for r in rows],
        [_text(p.response_id) for p in prompts],
        [_text(p.prompt) for p in prompts],
        [r.created_at for r in rows],
        [r.started_at for r in rows],
    ]


def _tool_arrays(rows: list[Stamped]) -> list[list[Any]]:
    tools: list[ToolUsage] = [r.record for r in rows]  # type: ignore[misc]
    return [
        [uuid.uuid4() for _ in rows],
        [r.interception_id for r in rows],
        [_text(t.response_id) for t in tools],
        [_text(t.call_id) for t in tools],
        [_text(t.item_id) for t in tools],
        [_text(t.tool) for t in tools],
        [_text(t.input) for t in tools],
        [_text(t.server_url) if t.server_url is not None else None for t in tools],
        [t.injected for t in tools],
        [_text(t.invocation_error) if t.invocation_error is not None else None for t in tools],
        [r.created_at for r in rows],
        [r.started_at for r in rows],
    ]


def _thought_arrays(rows: list[Stamped]) -> list[list[Any]]:
    thoughts: list[ModelThought] = [r.record for r in rows]  # type: ignore[misc]
    return [
        [r.interception_id for r in rows],
        [_text(t.content) for t in thoughts],
        [_json({"source": t.source}) for t in thoughts],
        [r.created_at for r in rows],
        [r.started_at for r in rows],
    ]


def _tool_call_arrays(rows: list[Stamped]) -> list[list[Any]]:
    """The call index's rows: the newest tool call per call id (one statement cannot update
    the same row twice, so a batch holding one id twice keeps its newest)."""
    newest: dict[str, Stamped] = {}
    for row in rows:
        call_id = _text(row.record.call_id)  # type: ignore[union-attr]
        if call_id and (call_id not in newest or newest[call_id].created_at <= row.created_at):
            newest[call_id] = row
    kept = list(newest.values())
    return [
        list(newest),
        [r.interception_id for r in kept],
        [r.thread_root_id or r.interception_id for r in kept],
        [r.started_at for r in kept],
        [r.created_at for r in kept],
    ]


def _end_arrays(ends: Sequence[InterceptionEnd]) -> list[list[Any]]:
    return [
        [e.id for e in ends],
        [e.started_at for e in ends],
        [e.ended_at for e in ends],
        [_text(e.credential_hint[:15]) for e in ends],
        [_json({"status": e.status, **({"error": e.error} if e.error else {})}) for e in ends],
    ]


_COLUMNS = {
    TokenUsage: _token_usage_arrays,
    PromptUsage: _prompt_arrays,
    ToolUsage: _tool_arrays,
    ModelThought: _thought_arrays,
}

# (table, columns, their types): one INSERT ... SELECT FROM unnest per kind, in _COLUMNS' order.
_INSERTS = (
    ("aibridge_token_usages",
     "id, interception_id, provider_response_id, input_tokens, output_tokens,"
     " cache_read_input_tokens, cache_write_input_tokens, metadata, created_at, started_at",
     ("uuid", "uuid", "text", "bigint", "bigint", "bigint", "bigint", "jsonb", "timestamptz",
      "timestamptz")),
    ("aibridge_user_prompts",
     "id, interception_id, provider_response_id, prompt, created_at, started_at",
     ("uuid", "uuid", "text", "text", "timestamptz", "timestamptz")),
    ("aibridge_tool_usages",
     "id, interception_id, provider_response_id, provider_tool_call_id, provider_item_id, tool,"
     " input, server_url, injected, invocation_error, created_at, started_at",
     ("uuid", "uuid", "text", "text", "text", "text", "text", "text", "boolean", "text",
      "timestamptz", "timestamptz")),
    ("aibridge_model_thoughts",
     "interception_id, content, metadata, created_at, started_at",
     ("uuid", "text", "jsonb", "timestamptz", "timestamptz")),
)  # fmt: skip
_TOOL_CALL_TYPES = ("text", "uuid", "uuid", "timestamptz", "timestamptz")
_END_TYPES = ("uuid", "timestamptz", "timestamptz", "text", "jsonb")


def _batch_sql() -> str:
    """One statement for a whole batch: a data-modifying CTE per table (an empty array inserts
    nothing), then the ends. All parts run in the statement's single transaction."""
    parts, number = [], 1
    for index, (table, columns, types) in enumerate(_INSERTS):
        arrays = ", ".join(f"${number + i}::{t}[]" for i, t in enumerate(types))
        number += len(types)
        insert = f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays})"
        parts.append(f"w{index} AS ({insert})")
    arrays = ", ".join(f"${number + i}::{t}[]" for i, t in enumerate(_TOOL_CALL_TYPES))
    number += len(_TOOL_CALL_TYPES)
    parts.append(
        "calls AS (INSERT INTO aibridge_tool_calls"
        " (call_id, interception_id, thread_root_id, started_at, created_at)"
        f" SELECT * FROM unnest({arrays}) ON CONFLICT (call_id) DO UPDATE SET"
        " interception_id = EXCLUDED.interception_id, thread_root_id = EXCLUDED.thread_root_id,"
        " started_at = EXCLUDED.started_at, created_at = EXCLUDED.created_at"
        " WHERE aibridge_tool_calls.created_at <= EXCLUDED.created_at)"
    )
    arrays = ", ".join(f"${number + i}::{t}[]" for i, t in enumerate(_END_TYPES))
    return (
        f"WITH {', '.join(parts)}"
        " UPDATE aibridge_interceptions AS i SET ended_at = e.ended_at,"
        " credential_hint = CASE WHEN e.hint = '' THEN i.credential_hint ELSE e.hint END,"
        " metadata = i.metadata || e.extra"
        f" FROM unnest({arrays}) AS e(id, started_at, ended_at, hint, extra)"
        " WHERE i.id = e.id AND i.started_at = e.started_at"
    )


_BATCH_SQL = _batch_sql()


def _text(value: str) -> str:
    """PostgreSQL text holds neither NUL nor lone surrogates: both are replaced, not refused."""
    if "\0" in value:
        value = value.replace("\0", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


async def create_partitions(runner: Runner, first_day: date, days: int) -> int:
    return int(await runner.run(_create_partitions, first_day, days))


async def _create_partitions(conn: Connection, first_day: date, days: int) -> Any:
    return await conn.fetchval("SELECT aibridge_create_partitions($1, $2)", first_day, days)
