"""`aibridged sessions list|show`: recorded sessions over the management API.

`list` pages through `/api/v2/aibridge/sessions` like `interceptions list` does (same filters
and formats); `show` prints one session with all its threads, reading their pages in turn.
"""

from __future__ import annotations

import argparse
import json
from typing import IO, Any
from urllib.parse import quote, urlencode

from aibridged.remote.client import ApiClient, RemoteError
from aibridged.remote.interceptions import (
    CsvWriter,
    JsonLinesWriter,
    JsonWriter,
    TableWriter,
    add_filter_options,
    export,
    pages,
    query,
)

PATH = "/api/v2/aibridge/sessions"
THREAD_PAGE = 200  # the API's largest page of threads
_TOKENS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens")
CSV_COLUMNS = ("id", "started_at", "ended_at", "last_active_at", "initiator_id",
               "initiator_username", "client", "providers", "models", "threads", *_TOKENS,
               "last_prompt")  # fmt: skip
TABLE_COLUMNS = ("id", "started_at", "initiator_username", "client", "models", "threads",
                 "input_tokens", "output_tokens")  # fmt: skip
THREAD_COLUMNS = ("id", "started_at", "model", "actions", "tool_calls", "input_tokens",
                  "output_tokens", "prompt")  # fmt: skip


def add_sessions_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("sessions", help="export recorded sessions and their threads")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list sessions, newest first")
    add_filter_options(listing, cursor="--after-session-id")
    show = actions.add_parser("show", help="one session with all its threads")
    show.add_argument("session_id", metavar="SESSION_ID")
    show.add_argument("--format", choices=["json", "table"], default="json")


def run_sessions(args: argparse.Namespace, client: ApiClient, out: IO[str]) -> int:
    if args.action == "show":
        return _show(args, client, out)
    rows = pages(client, query(args), args.limit, args.after_session_id, path=PATH,
                 results="sessions", cursor="after_session_id")  # fmt: skip
    writers: dict[str, Any] = {
        "json": JsonWriter,
        "jsonl": JsonLinesWriter,
        "csv": lambda o: CsvWriter(o, CSV_COLUMNS, flat_session),
        "table": lambda o: TableWriter(o, TABLE_COLUMNS, flat_session),
    }
    return export(rows, writers[args.format], out, noun="sessions")


def flat_session(session: dict[str, Any]) -> dict[str, Any]:
    initiator = session.get("initiator") or {}
    summary = session.get("token_usage_summary") or {}
    row = {key: session.get(key) for key in ("id", "started_at", "ended_at", "last_active_at",
                                              "client", "threads", "last_prompt")}  # fmt: skip
    row["initiator_id"] = initiator.get("id")
    row["initiator_username"] = initiator.get("username")
    row["providers"] = ";".join(session.get("providers") or [])
    row["models"] = ";".join(session.get("models") or [])
    for key in _TOKENS:
        row[key] = summary.get(key, 0)
    return row


def _show(args: argparse.Namespace, client: ApiClient, out: IO[str]) -> int:
    path = f"{PATH}/{quote(args.session_id, safe='')}"
    session: dict[str, Any] | None = None
    threads: list[Any] = []
    after: str | None = None
    while True:
        params = {"limit": str(THREAD_PAGE), **({"after_id": after} if after else {})}
        page = client.get(f"{path}?{urlencode(params)}")
        if not isinstance(page, dict) or not isinstance(page.get("threads"), list):
            raise RemoteError(f"{client.credentials.url}{path} answered without threads")
        session = session or page
        threads += page["threads"]
        if len(page["threads"]) < THREAD_PAGE:
            break
        after = str(page["threads"][-1]["id"])
    # All the threads, so the span of one page no longer applies.
    session = {k: v for k, v in session.items() if not k.startswith("page_")}
    session["threads"] = threads
    if args.format == "json":
        out.write(json.dumps(session, ensure_ascii=False, indent=2) + "\n")
        return 0
    summary = flat_session({**session, "threads": len(threads)})
    for key in ("id", "initiator_username", "client", "models", "started_at", "ended_at",
                "threads", "input_tokens", "output_tokens", "last_prompt"):  # fmt: skip
        out.write(f"{key + ':':<20}{summary[key] if summary[key] is not None else ''}\n")
    out.write("\n")
    table = TableWriter(out, THREAD_COLUMNS, _flat_thread)
    table.write(threads)
    table.close()
    return 0


def _flat_thread(thread: dict[str, Any]) -> dict[str, Any]:
    actions = thread.get("agentic_actions") or []
    usage = thread.get("token_usage") or {}
    prompt = (thread.get("prompt") or "").replace("\n", " ")
    return {
        "id": thread.get("id"),
        "started_at": thread.get("started_at"),
        "model": thread.get("model"),
        "actions": len(actions),
        "tool_calls": sum(len(a.get("tool_calls") or []) for a in actions),
        "input_tokens": usage.get("input_tokens", 0),
        "output_tokens": usage.get("output_tokens", 0),
        "prompt": prompt[:60] + ("…" if len(prompt) > 60 else ""),
    }
