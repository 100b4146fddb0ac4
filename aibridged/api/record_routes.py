"""`/api/v2/aibridge/interceptions`, `/models` and `/clients` (also under `/api/v2/ai-gateway/`):
the recorded data, filtered and paged (docs/management-api.md).

Members see their own interceptions only; auditors, admins and owners see everyone's.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from quart import Response, request
from quart_trio import QuartTrio

from aibridged.api.listing_query import parse_filters, parse_page
from aibridged.api.manage import Handler, Management, caller, json_response
from aibridged.auth import Principal
from aibridged.errors import InvalidInput, NotFound
from aibridged.store.listing import Selection, distinct_values, list_interceptions
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
        for column, plural in (("model", "models"), ("client", "clients")):
            app.add_url_rule(
                f"{prefix}/{plural}", f"{name}_{plural}", _distinct(management, column)
            )


def _interceptions(management: Management) -> Handler:
    async def interceptions() -> Response:
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


def _distinct(management: Management, column: str) -> Handler:
    async def distinct() -> Response:
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
