"""Reading recorded interceptions back: filtered, newest first, cursor-paged, with their records.

Pages are ordered by (started_at, id) descending. A cursor is the last row's id; its start time
is looked up, so the next page continues exactly after it even while new interceptions arrive
(they sort before the cursor, never into a later page). The count and the page are read in one
repeatable-read, read-only transaction, so they agree.

The count is exact up to COUNT_CAP; past it, the listing says "at least COUNT_CAP" (`count_capped`)
instead of counting on. An exact count(*) reads every matching index entry: ~110-130 ms for a
million interceptions on the bench's VM, more than the whole page's budget, and it grows with
the table while the page does not. A page needs "10,000+", not the exact total of a big
selection; that total is what the metrics or an export are for (docs/management-api.md).

A page is two statements: its interceptions, then the child records of those (token usages,
prompts, tool calls, thoughts), read only from the day partitions the page spans. Measured at a
million interceptions over 68 day partitions (bench/listing_scale.py): a correlated subquery per
child table instead made PostgreSQL plan every partition of four tables, ~16 ms a page (more
than reading the rows), and that grows with every day kept.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from aibridged.errors import InvalidInput
from aibridged.store.db import Connection, Runner


@dataclass(frozen=True, slots=True)
class Selection:
    """What to list: every condition is optional; values are bound, never spliced."""

    initiator_id: uuid.UUID | None = None
    provider: str | None = None
    provider_name: str | None = None
    model: str | None = None
    client: str | None = None
    session_id: str | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None


_CONDITIONS = (
    ("initiator_id", "i.initiator_id = ${}"),
    ("provider", "i.provider = ${}"),
    ("provider_name", "i.provider_name = ${}"),
    ("model", "i.model = ${}"),
    ("client", "i.client = ${}"),
    ("session_id", "i.session_id = ${}"),
    ("started_after", "i.started_at > ${}"),
    ("started_before", "i.started_at < ${}"),
)


def where_clauses(selection: Selection, params: list[Any]) -> list[str]:
    """The selection as SQL conditions on `i`, its values appended to `params` (bound)."""
    clauses = []
    for field, template in _CONDITIONS:
        value = getattr(selection, field)
        if value is not None:
            params.append(value)
            clauses.append(template.format(len(params)))
    return clauses


_TOKEN_FIELDS = (
    "'id', c.id, 'interception_id', c.interception_id, 'provider_response_id',"
    " c.provider_response_id, 'input_tokens', c.input_tokens, 'output_tokens', c.output_tokens,"
    " 'cache_read_input_tokens', c.cache_read_input_tokens, 'cache_write_input_tokens',"
    " c.cache_write_input_tokens, 'metadata', c.metadata, 'created_at', c.created_at"
)
_PROMPT_FIELDS = (
    "'id', c.id, 'interception_id', c.interception_id, 'provider_response_id',"
    " c.provider_response_id, 'prompt', c.prompt, 'metadata', c.metadata,"
    " 'created_at', c.created_at"
)
_TOOL_FIELDS = (
    "'id', c.id, 'interception_id', c.interception_id, 'provider_response_id',"
    " c.provider_response_id, 'provider_tool_call_id', c.provider_tool_call_id,"
    " 'server_url', c.server_url, 'tool', c.tool, 'input', c.input, 'injected', c.injected,"
    " 'invocation_error', c.invocation_error, 'metadata', c.metadata, 'created_at', c.created_at"
)
_THOUGHT_FIELDS = "'text', c.content, 'metadata', c.metadata, 'created_at', c.created_at"

_ROW = (
    "i.id, i.api_key_id, i.initiator_id, u.username, u.name, i.provider, i.provider_name,"
    " i.model, i.client, i.client_session_id, i.session_id, i.thread_parent_id,"
    " i.thread_root_id, i.credential_kind, i.credential_hint, i.metadata, i.started_at,"
    " i.ended_at"
)

# (the key in an interception's JSON, the table, its fields); a record's `kind` is its index here.
_CHILDREN = (
    ("token_usages", "aibridge_token_usages", _TOKEN_FIELDS),
    ("user_prompts", "aibridge_user_prompts", _PROMPT_FIELDS),
    ("tool_usages", "aibridge_tool_usages", _TOOL_FIELDS),
    ("model_thoughts", "aibridge_model_thoughts", _THOUGHT_FIELDS),
)


COUNT_CAP = 10_000


@dataclass(frozen=True, slots=True)
class Listing:
    """One page and how many interceptions match in all."""

    count: int  # exact when count_capped is false, else the cap: at least this many match
    count_capped: bool
    results: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a listing and its bound values (the bench EXPLAINs exactly these)."""

    sql: str
    params: tuple[Any, ...]


def count_statement(selection: Selection, cap: int) -> Statement:
    """How many match, counted no further than cap + 1 (more than `cap`: the count is capped)."""
    params: list[Any] = []
    where = " AND ".join(where_clauses(selection, params)) or "true"
    params.append(cap + 1)
    return Statement(
        "SELECT count(*) FROM (SELECT 1 FROM aibridge_interceptions i"
        f" WHERE {where} LIMIT ${len(params)}) AS matching",
        tuple(params),
    )


def cursor_statement(after: uuid.UUID) -> Statement:
    """The cursor row's start time: where the next page begins."""
    return Statement("SELECT started_at FROM aibridge_interceptions WHERE id = $1", (after,))


def page_statement(
    selection: Selection,
    cursor: tuple[datetime, uuid.UUID] | None,
    *,
    limit: int,
    offset: int,
) -> Statement:
    params: list[Any] = []
    clauses = where_clauses(selection, params)
    if cursor is not None:
        params += cursor
        n = len(params)
        # The first is implied by the second, but PostgreSQL prunes partitions on it (on the
        # row comparison it does not): a deep page skips the newer days.
        clauses.append(f"i.started_at <= ${n - 1}")
        clauses.append(f"(i.started_at, i.id) < (${n - 1}, ${n})")
    params += [limit, offset]
    n = len(params)
    where = " AND ".join(clauses) or "true"
    return Statement(
        f"SELECT {_ROW} FROM aibridge_interceptions i LEFT JOIN users u"
        f" ON u.id = i.initiator_id WHERE {where}"
        f" ORDER BY i.started_at DESC, i.id DESC LIMIT ${n - 1} OFFSET ${n}",
        tuple(params),
    )


def children_statement(page: Sequence[Any]) -> Statement:
    """The child records of a page's interceptions: rows of (kind, interception_id, record).

    The start times bound the partitions read: planned with the page's values (a custom plan),
    PostgreSQL reads only the partitions of the days in `started_at = ANY(...)`; a generic plan
    cannot prune on an array parameter, but it does on the range, at executor start. (A join on
    the interception's start time prunes neither way.) With them, `interception_id = ANY(...)`
    matches only the page's own records: ids are unique, and each record carries its
    interception's start time."""
    ids = [row["id"] for row in page]
    started = sorted({row["started_at"] for row in page})
    selects = [
        f"SELECT {kind} AS kind, c.interception_id, c.created_at,"
        f" json_build_object({fields}) AS record FROM {table} c"
        " WHERE c.started_at >= $3 AND c.started_at <= $4"
        " AND c.started_at = ANY($2::timestamptz[]) AND c.interception_id = ANY($1::uuid[])"
        for kind, (_, table, fields) in enumerate(_CHILDREN)
    ]
    return Statement(
        " UNION ALL ".join(selects) + " ORDER BY created_at",
        (ids, started, started[0], started[-1]),
    )


async def list_interceptions(
    runner: Runner,
    selection: Selection,
    *,
    limit: int,
    offset: int,
    after: str | None,
    count_cap: int = COUNT_CAP,
) -> Listing:
    """One page of interceptions as JSON-ready dicts, and how many match (exact up to
    `count_cap`); InvalidInput for an unknown cursor."""
    return await runner.run(_list, selection, limit, offset, after, count_cap)


async def _list(
    conn: Connection,
    selection: Selection,
    limit: int,
    offset: int,
    after: str | None,
    count_cap: int,
) -> Listing:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        counting = count_statement(selection, count_cap)
        count = int(await conn.fetchval(counting.sql, *counting.params))
        cursor = None
        if after is not None:
            after_id = uuid.UUID(after)
            looking_up = cursor_statement(after_id)
            started_at = await conn.fetchval(looking_up.sql, *looking_up.params)
            if started_at is None:
                raise InvalidInput("invalid query", [("after_id", "no interception has this id")])
            cursor = (started_at, after_id)
        paging = page_statement(selection, cursor, limit=limit, offset=offset)
        rows = await conn.fetch(paging.sql, *paging.params)
        children = []
        if rows:
            fetching = children_statement(rows)
            children = await conn.fetch(fetching.sql, *fetching.params)
    capped = count > count_cap
    return Listing(min(count, count_cap), capped, _assemble(rows, children))


def _assemble(rows: Sequence[Any], children: Sequence[Any]) -> list[dict[str, Any]]:
    """Each interception with its child records, in the order they were created."""
    records: dict[uuid.UUID, dict[str, list[Any]]] = {
        row["id"]: {key: [] for key, _, _ in _CHILDREN} for row in rows
    }
    for child in children:
        key = _CHILDREN[child["kind"]][0]
        records[child["interception_id"]][key].append(orjson.loads(child["record"]))
    return [_interception(row, records[row["id"]]) for row in rows]


def _interception(row: Any, records: dict[str, list[Any]]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "api_key_id": row["api_key_id"],
        "initiator": {
            "id": str(row["initiator_id"]),
            "username": row["username"] or "",
            "name": row["name"] or "",
        },
        "provider": row["provider"],
        "provider_name": row["provider_name"],
        "model": row["model"],
        "client": row["client"],
        "client_session_id": row["client_session_id"],
        "session_id": row["session_id"],
        "thread_parent_id": _text(row["thread_parent_id"]),
        "thread_root_id": _text(row["thread_root_id"]),
        "credential_kind": row["credential_kind"],
        "credential_hint": row["credential_hint"],
        "metadata": orjson.loads(row["metadata"]),
        "started_at": _time(row["started_at"]),
        "ended_at": _time(row["ended_at"]),
        **records,
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


async def distinct_values(
    runner: Runner, column: str, initiator_id: uuid.UUID | None, limit: int
) -> list[str]:
    """The distinct models or clients recorded (of one initiator when given), most used first."""
    if column not in ("model", "client"):
        raise ValueError(column)
    return await runner.run(_distinct, column, initiator_id, limit)


async def _distinct(
    conn: Connection, column: str, initiator_id: uuid.UUID | None, limit: int
) -> list[str]:
    params: Sequence[Any] = (limit,) if initiator_id is None else (limit, initiator_id)
    where = "" if initiator_id is None else "WHERE initiator_id = $2"
    rows = await conn.fetch(
        f"SELECT {column} AS value FROM aibridge_interceptions {where}"
        f" GROUP BY {column} ORDER BY count(*) DESC, {column} LIMIT $1",
        *params,
    )
    return [row["value"] for row in rows]
