"""`/api/v2/aibridge/usage` (also under `/api/v2/ai-gateway/`): token usage over time, per user,
model or client, with totals per user and per model (docs/management-api.md).

Visibility is the sessions': members see their own usage only; auditors, admins and owners see
everyone's, or one user's with `user`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from quart import Response, request
from quart_trio import QuartTrio

from aibridged.api import schemas as shape
from aibridged.api.manage import Handler, Management, caller, json_response
from aibridged.api.openapi import documented
from aibridged.api.record_routes import PREFIXES, visible_selection
from aibridged.api.usage_query import parse_usage_query
from aibridged.store.listing import Selection
from aibridged.store.usage import usage_report


def add_usage_routes(app: QuartTrio, management: Management) -> None:
    for prefix in PREFIXES:
        name = prefix.rsplit("/", 1)[1].replace("-", "_")
        app.add_url_rule(f"{prefix}/usage", f"{name}_usage", _usage(management))


def _usage(management: Management) -> Handler:
    @documented(200, shape.Usage, errors=(400,), query=shape.UsageQuery)
    async def usage() -> Response:
        """Token usage per hour or day and per group, with totals per user and per model."""
        principal = await caller(management)
        query = parse_usage_query(request.args, now=datetime.now(UTC))
        selection = await visible_selection(management, principal, query.user, Selection())
        report = await usage_report(
            management.store, selection, start=query.start, end=query.end,
            group_by=query.group_by, top=query.top,
        )  # fmt: skip
        return json_response(report.as_json())

    return usage
