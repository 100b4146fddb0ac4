"""`/api/v2/aibridge/sessions`, `/sessions/{id}`, `/interceptions`, `/models` and `/clients` (also
under `/api/v2/ai-gateway/`): the recorded data, filtered and paged (docs/management-api.md).

Members see their own interceptions only; auditors, admins and owners see everyone's.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from quart import Response, request
from quart_trio import QuartTrio

from aibridged.api import schemas as shape
from aibridged.api.listing_query import parse_filters, parse_page, parse_thread_page
from aibridged.api.manage import Handler, Management, caller, json_response
from aibridged.api.openapi import documented
from aibridged.auth import Principal
from aibridged.errors import InvalidInput, NotFound
from aibridged.store.listing import Selection, distinct_values, list_interceptions
from aibridged.store.sessions import get_session, list_sessions
from aibridged.store.users import get_user

PREFIXES = ("/api/v2/aibridge", "/api/v2/ai-gateway")
SEE_EVERYONE = frozenset({"owner", "admin", "auditor"})
DEFAULT_LIMIT = 100


def add_record_routes(app: QuartTrio, management: Management) -> None:
    for prefix in PREFIXES:
        name = prefix.rsplit("/", 1)[1].replace("-", "_")
        app.add_url_rule(
            f"{prefix}/interceptions", f"{name}_interceptions", _interceptions(management)
        )
        app.add_url_rule(f"{prefix}/sessions", f"{name}_sessions", _sessions(management))
        app.add_url_rule(f"{prefix}/sessions/<session_id>", f"{name}_session", _session(management))
        for column, plural in (("model", "models"), ("client", "clients")):
            app.add_url_rule(
                f"{prefix}/{plural}", f"{name}_{plural}", _distinct(management, column)
            )


def _interceptions(management: Management) -> Handler:
    @documented(200, shape.Interceptions, errors=(400,), query=shape.ListingQuery)
    async def interceptions() -> Response:
        """Recorded interceptions, newest first, filtered and paged."""
        principal = await caller(management)
        initiator, filters = parse_filters(request.args.get("q", ""))
        page = parse_page(request.args, cursor="after_id", default_limit=DEFAULT_LIMIT)
        selection = await visible_selection(management, principal, initiator, filters)
        if selection is None:
            return json_response({"count": 0, "count_capped": False, "results": []})
        listing = await list_interceptions(
            management.store, selection, limit=page.limit, offset=page.offset, after=page.after
        )
        return json_response(
            {
                "count": listing.count,
                "count_capped": listing.count_capped,
                "results": listing.results,
            }
        )

    return interceptions


def _sessions(management: Management) -> Handler:
    @documented(200, shape.Sessions, errors=(400,), query=shape.SessionsQuery)
    async def sessions() -> Response:
        """Sessions (interceptions grouped by session id), newest first."""
        principal = await caller(management)
        initiator, filters = parse_filters(request.args.get("q", ""))
        page = parse_page(request.args, cursor="after_session_id", default_limit=DEFAULT_LIMIT,
                          cursor_is_id=False)  # fmt: skip
        selection = await visible_selection(management, principal, initiator, filters)
        if selection is None:
            return json_response({"count": 0, "sessions": []})
        count, rows = await list_sessions(
            management.store, selection, limit=page.limit, offset=page.offset, after=page.after
        )
        return json_response({"count": count, "sessions": rows})

    return sessions


def _session(management: Management) -> Handler:
    @documented(200, shape.SessionDetail, errors=(400, 404), query=shape.ThreadsQuery)
    async def session(session_id: str) -> Response:
        """One session with a page of its threads, oldest first."""
        principal = await caller(management)
        limit, after, before = parse_thread_page(request.args)
        selection = await visible_selection(
            management, principal, None, Selection(session_id=session_id)
        )
        if selection is None:
            raise NotFound(f"no session {session_id!r}")
        found = await get_session(
            management.store, selection, limit=limit, after=after, before=before
        )
        return json_response(found)

    return session


def _distinct(management: Management, column: str) -> Handler:
    @documented(200, shape.Models if column == "model" else shape.Clients, errors=(400,),
                query=shape.ValuesQuery)  # fmt: skip
    async def distinct() -> Response:
        """The distinct values recorded, the most used first."""
        principal = await caller(management)
        page = parse_page(request.args, cursor="_", default_limit=DEFAULT_LIMIT)
        mine = None if principal.role in SEE_EVERYONE else principal.user_id
        values = await distinct_values(management.store, column, mine, page.limit)
        return json_response({f"{column}s": values})

    distinct.__name__ = f"distinct_{column}s"
    return distinct


async def visible_selection(
    management: Management, principal: Principal, initiator: str | None, filters: Selection
) -> Selection | None:
    """The filters as a selection the caller may see; None when nothing can match (a member
    asking for someone else, a username that does not exist)."""
    initiator_id = await _initiator(management, principal, initiator)
    if initiator is not None and initiator_id is None:
        return None
    if principal.role not in SEE_EVERYONE:
        if initiator_id is not None and initiator_id != principal.user_id:
            return None
        initiator_id = principal.user_id
    return replace(filters, initiator_id=initiator_id)


async def _initiator(
    management: Management, principal: Principal, given: str | None
) -> uuid.UUID | None:
    if given is None:
        return None
    if given == "me":
        return principal.user_id
    try:
        return uuid.UUID(given)
    except ValueError:
        pass
    try:
        return (await get_user(management.store, given.lower())).id
    except NotFound:
        return None
    except InvalidInput:
        return None
