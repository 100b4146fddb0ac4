"""The Sessions pages: `/sessions` (filtered, paged) and `/sessions/<id>` (its threads, each
interception's prompt, tool calls, thinking and token usage).

They read what the sessions API reads, through the same code: the filter form becomes the API's
`q` (dashboard/filters.py), visibility is the API's `visible_selection` (members see their own
sessions only; owners, admins and auditors everyone's), and the store's `list_sessions` and
`get_session` answer both.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote, urlencode

from quart import Blueprint, Response, request

from aibridged.api.listing_query import parse_integer, parse_thread_page
from aibridged.api.record_routes import SEE_EVERYONE, visible_selection
from aibridged.auth import Principal
from aibridged.dashboard.filters import read_filters
from aibridged.dashboard.guard import dashboard, signed_in
from aibridged.dashboard.pages import page
from aibridged.errors import InvalidInput, NotFound
from aibridged.store.listing import Selection, distinct_values
from aibridged.store.sessions import get_session, list_sessions

PAGE_SIZE = 25
MAX_PAGE = 10_000
CHOICES = 200  # the models and clients offered in the filter's lists


def add_sessions_pages(bp: Blueprint) -> None:
    bp.add_url_rule("/sessions", "sessions", _sessions_page)
    bp.add_url_rule("/sessions/<session_id>", "session", _session_page)


@signed_in
async def _sessions_page(user: Principal) -> Response:
    sees_everyone = user.role in SEE_EVERYONE
    filters = read_filters(request.args, may_pick_user=sees_everyone)
    problems: list[tuple[str, str]] = []
    number = parse_integer(request.args, "page", 1, 1, MAX_PAGE, problems)
    management = dashboard().management
    errors = {**filters.errors, **dict(problems)}
    count, sessions = 0, list[dict[str, Any]]()
    if not errors:
        selection = await visible_selection(management, user, filters.initiator, filters.selection)
        if selection is not None:
            count, sessions = await list_sessions(
                management.store,
                selection,
                limit=PAGE_SIZE,
                offset=(number - 1) * PAGE_SIZE,
                after=None,
            )
    mine = None if sees_everyone else user.user_id
    return await page(
        "dashboard/sessions.html",
        status=400 if errors else 200,
        filters=filters,
        errors=errors,
        sees_everyone=sees_everyone,
        models=await distinct_values(management.store, "model", mine, CHOICES),
        clients=await distinct_values(management.store, "client", mine, CHOICES),
        count=count,
        sessions=sessions,
        page_number=number,
        pages=max(1, math.ceil(count / PAGE_SIZE)),
        page_link=lambda n: _page_link(filters.values, n),
    )


def _page_link(values: dict[str, str], number: int) -> str:
    kept = {k: v for k, v in values.items() if v}
    return "/sessions?" + urlencode({**kept, "page": number})


@signed_in
async def _session_page(user: Principal, session_id: str) -> Response:
    management = dashboard().management
    try:
        limit, after, before = parse_thread_page(request.args)
    except InvalidInput:
        limit, after, before = parse_thread_page({})
    selection = await visible_selection(management, user, None, Selection(session_id=session_id))
    if selection is None:
        raise NotFound(f"no session {session_id!r}")
    try:
        found = await get_session(
            management.store, selection, limit=limit, after=after, before=before
        )
    except InvalidInput:  # a cursor of another session: its first page instead
        found = await get_session(management.store, selection, limit=limit, after=None, before=None)
    return await page(
        "dashboard/session.html",
        session=found,
        limit=limit,
        sees_everyone=user.role in SEE_EVERYONE,
        links=_thread_links(found, limit),
    )


def _thread_links(found: dict[str, Any], limit: int) -> dict[str, str | None]:
    """Links to the earlier threads (when this page is not the first) and the later ones (when
    this page is full)."""
    threads = found["threads"]
    here = "/sessions/" + quote(found["id"], safe="")
    paged = bool(request.args.get("after_id") or request.args.get("before_id"))
    return {
        "earlier": f"{here}?before_id={threads[0]['id']}" if threads and paged else None,
        "later": f"{here}?after_id={threads[-1]['id']}" if len(threads) >= limit else None,
    }
