"""Sessions read back: interceptions grouped by `session_id`, and one session's threads.

A session is every interception sharing a `session_id` (the client's session id, else the thread
root, else the interception itself); a thread is every interception sharing a root
(`coalesce(thread_root_id, id)`). Only the interceptions the selection admits are grouped, so a
member's sessions hold only their own requests, and a filter narrows what is summed as well.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson

from aibridged.errors import InvalidInput, NotFound
from aibridged.store.db import Connection, Runner
from aibridged.store.listing import Selection, where_clauses


def where(selection: Selection, params: list[Any]) -> str:
    """The selection as one SQL condition on `i`, its values appended to `params`."""
    return " AND ".join(where_clauses(selection, params)) or "true"


_SESSIONS = (
    "SELECT i.session_id AS id, min(i.started_at) AS started_at,"
    " CASE WHEN bool_or(i.ended_at IS NULL) THEN NULL ELSE max(i.ended_at) END AS ended_at,"
    " max(coalesce(i.ended_at, i.started_at)) AS last_active_at,"
    " count(DISTINCT coalesce(i.thread_root_id, i.id)) AS threads,"
    " array_agg(DISTINCT i.provider_name ORDER BY i.provider_name) AS providers,"
    " array_agg(DISTINCT i.model ORDER BY i.model) AS models,"
    " (array_agg(i.client ORDER BY i.started_at))[1] AS client,"
    " (array_agg(i.initiator_id ORDER BY i.started_at))[1] AS initiator_id"
    " FROM aibridge_interceptions i WHERE {where} GROUP BY i.session_id"
)

_SUMMARY = (
    "SELECT i.session_id AS id, coalesce(sum(t.input_tokens), 0) AS input_tokens,"
    " coalesce(sum(t.output_tokens), 0) AS output_tokens,"
    " coalesce(sum(t.cache_read_input_tokens), 0) AS cache_read_input_tokens,"
    " coalesce(sum(t.cache_write_input_tokens), 0) AS cache_write_input_tokens"
    " FROM aibridge_interceptions i JOIN aibridge_token_usages t"
    " ON t.interception_id = i.id AND t.started_at = i.started_at"
    " WHERE i.session_id = ANY(${n}) AND {where} GROUP BY i.session_id"
)

_LAST_PROMPT = (
    "SELECT DISTINCT ON (i.session_id) i.session_id AS id, p.prompt"
    " FROM aibridge_interceptions i JOIN aibridge_user_prompts p"
    " ON p.interception_id = i.id AND p.started_at = i.started_at"
    " WHERE i.session_id = ANY(${n}) AND {where} ORDER BY i.session_id, p.created_at DESC"
)

TOKEN_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_write_input_tokens",
)


async def list_sessions(
    runner: Runner, selection: Selection, *, limit: int, offset: int, after: str | None
) -> tuple[int, list[dict[str, Any]]]:
    """(how many sessions match, one page of them, newest first); InvalidInput for a cursor
    naming no session of this selection."""
    return await runner.run(_list_sessions, selection, limit, offset, after)


async def _list_sessions(
    conn: Connection, selection: Selection, limit: int, offset: int, after: str | None
) -> tuple[int, list[dict[str, Any]]]:
    params: list[Any] = []
    condition = where(selection, params)
    grouped = _SESSIONS.format(where=condition)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        count = await conn.fetchval(
            f"SELECT count(DISTINCT i.session_id) FROM aibridge_interceptions i WHERE {condition}",
            *params,
        )
        page_params = list(params)
        page_where = "true"
        if after is not None:
            cursor = await conn.fetchval(
                f"SELECT min(i.started_at) FROM aibridge_interceptions i"
                f" WHERE {condition} AND i.session_id = ${len(params) + 1}",
                *params,
                after,
            )
            if cursor is None:
                raise InvalidInput(
                    "invalid query", [("after_session_id", "no session has this id")]
                )
            page_params += [cursor, after]
            n = len(page_params)
            page_where = f"(s.started_at, s.id) < (${n - 1}, ${n})"
        page_params += [limit, offset]
        n = len(page_params)
        rows = await conn.fetch(
            f"SELECT s.*, u.username, u.name FROM ({grouped}) s LEFT JOIN users u"
            f" ON u.id = s.initiator_id WHERE {page_where}"
            f" ORDER BY s.started_at DESC, s.id DESC LIMIT ${n - 1} OFFSET ${n}",
            *page_params,
        )
        ids = [row["id"] for row in rows]
        extra = [*params, ids]
        n = len(extra)
        summaries = {r["id"]: r for r in await conn.fetch(
            _SUMMARY.format(n=n, where=condition), *extra)}  # fmt: skip
        prompts = {r["id"]: r["prompt"] for r in await conn.fetch(
            _LAST_PROMPT.format(n=n, where=condition), *extra)}  # fmt: skip
    return int(count), [_session(row, summaries.get(row["id"]), prompts.get(row["id"]))
                        for row in rows]  # fmt: skip


def _session(row: Any, summary: Any, last_prompt: str | None) -> dict[str, Any]:
    return {
        "id": row["id"],
        "initiator": {
            "id": str(row["initiator_id"]),
            "username": row["username"] or "",
            "name": row["name"] or "",
            "avatar_url": "",
        },
        "providers": list(row["providers"]),
        "models": list(row["models"]),
        "client": row["client"],
        "metadata": {},
        "started_at": iso(row["started_at"]),
        "ended_at": iso(row["ended_at"]),
        "threads": row["threads"],
        "token_usage_summary": {key: int(summary[key]) if summary else 0 for key in TOKEN_KEYS},
        "last_prompt": last_prompt,
        "last_active_at": iso(row["last_active_at"]),
    }


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


_THREADS = (
    "SELECT coalesce(i.thread_root_id, i.id) AS id, min(i.started_at) AS started_at"
    " FROM aibridge_interceptions i WHERE {where} GROUP BY 1"
)

_ACTIONS = (
    "SELECT coalesce(i.thread_root_id, i.id) AS thread, i.id, i.model, i.client, i.provider,"
    " i.provider_name, i.credential_kind, i.credential_hint, i.started_at, i.ended_at,"
    " (SELECT coalesce(json_agg(json_build_object('input_tokens', c.input_tokens,"
    " 'output_tokens', c.output_tokens, 'cache_read_input_tokens', c.cache_read_input_tokens,"
    " 'cache_write_input_tokens', c.cache_write_input_tokens)), '[]') FROM aibridge_token_usages c"
    " WHERE c.interception_id = i.id AND c.started_at = i.started_at) AS usages,"
    " (SELECT coalesce(json_agg(c.prompt ORDER BY c.created_at), '[]') FROM aibridge_user_prompts c"
    " WHERE c.interception_id = i.id AND c.started_at = i.started_at) AS prompts,"
    " (SELECT coalesce(json_agg(json_build_object('text', c.content) ORDER BY c.created_at),"
    " '[]') FROM aibridge_model_thoughts c"
    " WHERE c.interception_id = i.id AND c.started_at = i.started_at) AS thinking,"
    " (SELECT coalesce(json_agg(json_build_object('id', c.id, 'interception_id',"
    " c.interception_id, 'provider_response_id', c.provider_response_id, 'server_url',"
    " c.server_url, 'tool', c.tool, 'injected', c.injected, 'input', c.input, 'metadata',"
    " c.metadata, 'created_at', c.created_at) ORDER BY c.created_at), '[]')"
    " FROM aibridge_tool_usages c"
    " WHERE c.interception_id = i.id AND c.started_at = i.started_at) AS tool_calls"
    " FROM aibridge_interceptions i"
    " WHERE {where} AND coalesce(i.thread_root_id, i.id) = ANY(${n})"
    " ORDER BY i.started_at, i.id"
)


async def get_session(
    runner: Runner,
    selection: Selection,
    *,
    limit: int,
    after: str | None,
    before: str | None,
) -> dict[str, Any]:
    """One session (the selection names it) with a page of its threads, oldest first; NotFound
    when the caller sees none of it."""
    return await runner.run(_get_session, selection, limit, after, before)


async def _get_session(
    conn: Connection,
    selection: Selection,
    limit: int,
    after: str | None,
    before: str | None,
) -> dict[str, Any]:
    params: list[Any] = []
    condition = where(selection, params)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        header = await conn.fetchrow(
            f"SELECT s.*, u.username, u.name FROM ({_SESSIONS.format(where=condition)}) s"
            " LEFT JOIN users u ON u.id = s.initiator_id",
            *params,
        )
        if header is None:
            raise NotFound(f"no session {selection.session_id!r}")
        threads = await _thread_page(conn, condition, params, limit, after, before)
        roots = [row["id"] for row in threads]
        actions = await conn.fetch(
            _ACTIONS.format(where=condition, n=len(params) + 1), *params, roots
        )
        n = len(params) + 1
        summary = await conn.fetchrow(
            _SUMMARY.format(n=n, where=condition), *params, [header["id"]]
        )
        last = await conn.fetchrow(
            _LAST_PROMPT.format(n=n, where=condition), *params, [header["id"]]
        )
    session = _session(header, summary, last["prompt"] if last else None)
    built = _threads(roots, actions)
    session["page_started_at"] = built[0]["started_at"] if built else None
    session["page_ended_at"] = _page_end(built)
    session["threads"] = built
    return session


async def _thread_page(
    conn: Connection,
    condition: str,
    params: list[Any],
    limit: int,
    after: str | None,
    before: str | None,
) -> list[Any]:
    """The threads after `after` (or just before `before`, or the first ones), oldest first."""
    grouped = _THREADS.format(where=condition)
    cursor_id = after or before
    page_params: list[Any] = list(params)
    bound = "true"
    if cursor_id is not None:
        field = "after_id" if after else "before_id"
        started = await conn.fetchval(
            f"SELECT t.started_at FROM ({grouped}) t WHERE t.id = ${len(params) + 1}",
            *params,
            uuid.UUID(cursor_id),
        )
        if started is None:
            raise InvalidInput("invalid query", [(field, "no thread of this session has this id")])
        page_params += [started, uuid.UUID(cursor_id)]
        n = len(page_params)
        bound = f"(t.started_at, t.id) {'>' if after else '<'} (${n - 1}, ${n})"
    page_params.append(limit)
    order = "DESC" if before else "ASC"
    rows = await conn.fetch(
        f"SELECT t.* FROM ({grouped}) t WHERE {bound}"
        f" ORDER BY t.started_at {order}, t.id {order} LIMIT ${len(page_params)}",
        *page_params,
    )
    return list(reversed(rows)) if before else list(rows)


def _threads(roots: list[uuid.UUID], actions: list[Any]) -> list[dict[str, Any]]:
    by_thread: dict[uuid.UUID, list[Any]] = {root: [] for root in roots}
    for action in actions:
        by_thread[action["thread"]].append(action)
    return [_thread(root, by_thread[root]) for root in roots if by_thread[root]]


def _thread(root: uuid.UUID, actions: list[Any]) -> dict[str, Any]:
    first = actions[0]
    prompts = [p for a in actions for p in orjson.loads(a["prompts"])]
    built = [_action(a) for a in actions]
    open_ = any(a["ended_at"] is None for a in actions)
    return {
        "id": str(root),
        "prompt": prompts[0] if prompts else None,
        "model": first["model"],
        "provider": first["provider"],
        "provider_name": first["provider_name"],
        "credential_kind": first["credential_kind"],
        "credential_hint": first["credential_hint"],
        "started_at": iso(first["started_at"]),
        "ended_at": None if open_ else iso(max(a["ended_at"] for a in actions)),
        "token_usage": _sum([b["token_usage"] for b in built]),
        "agentic_actions": built,
    }


def _action(row: Any) -> dict[str, Any]:
    prompts = orjson.loads(row["prompts"])
    return {
        "interception_id": str(row["id"]),
        "model": row["model"],
        "client": row["client"],
        "started_at": iso(row["started_at"]),
        "ended_at": iso(row["ended_at"]),
        "prompt": prompts[0] if prompts else None,
        "token_usage": _sum(orjson.loads(row["usages"])),
        "thinking": orjson.loads(row["thinking"]),
        "tool_calls": orjson.loads(row["tool_calls"]),
    }


def _sum(usages: list[dict[str, Any]]) -> dict[str, int]:
    return {key: sum(int(u.get(key) or 0) for u in usages) for key in TOKEN_KEYS}


def _page_end(threads: list[dict[str, Any]]) -> str | None:
    if not threads or any(t["ended_at"] is None for t in threads):
        return None
    return str(max(t["ended_at"] for t in threads))
