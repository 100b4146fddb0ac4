"""The Usage page: tokens over time by user, model or client as a stacked-bar chart, with totals
per user and per model, for a chosen time range.

The form's choices become the usage API's parameters and go through its parser
(aibridged.api.usage_query), its visibility (members: their own usage) and its store query, so
the page shows exactly what `GET /api/v2/aibridge/usage` answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from markupsafe import Markup
from quart import Blueprint, Response, request

from aibridged.api.record_routes import SEE_EVERYONE, visible_selection
from aibridged.api.usage_query import parse_usage_query
from aibridged.auth import Principal
from aibridged.dashboard.charts import ChartSeries, stacked_bars
from aibridged.dashboard.filters import as_utc
from aibridged.dashboard.guard import dashboard, signed_in
from aibridged.dashboard.pages import page
from aibridged.errors import InvalidInput
from aibridged.store.listing import Selection
from aibridged.store.usage import UsageReport, usage_report

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
TOP = 8
_FIELD_OF = {"start_time": "from", "end_time": "to"}


def add_usage_pages(bp: Blueprint) -> None:
    bp.add_url_rule("/usage", "usage", _usage_page)


@signed_in
async def _usage_page(user: Principal) -> Response:
    sees_everyone = user.role in SEE_EVERYONE
    form = _form(request.args, sees_everyone)
    now = datetime.now(UTC)
    errors: dict[str, str] = {}
    try:
        query = parse_usage_query(_api_args(form, now), now=now)
    except InvalidInput as exc:
        errors = {_FIELD_OF.get(field, field): detail for field, detail in exc.validations}
        query = parse_usage_query({"group_by": "model"}, now=now)
    management = dashboard().management
    selection = await visible_selection(management, user, query.user, Selection())
    report = await usage_report(
        management.store,
        selection,
        start=query.start,
        end=query.end,
        group_by=query.group_by,
        top=TOP,
    )
    return await page(
        "dashboard/usage.html",
        status=400 if errors else 200,
        form=form,
        errors=errors,
        sees_everyone=sees_everyone,
        report=report,
        ranges=list(RANGES),
        chart=usage_chart(report),
        user_rows=[(u.username or str(u.id), u.usage) for u in report.by_user],
    )


def _form(args: Mapping[str, str], sees_everyone: bool) -> dict[str, str]:
    form = {
        name: (args.get(name) or "").strip() for name in ("range", "from", "to", "group_by", "user")
    }
    form["range"] = form["range"] or "24h"
    form["group_by"] = form["group_by"] or ("user" if sees_everyone else "model")
    if not sees_everyone:
        form["user"] = ""  # a member's usage is theirs only: nothing to choose
        if form["group_by"] == "user":
            form["group_by"] = "model"
    return form


def _api_args(form: dict[str, str], now: datetime) -> dict[str, str]:
    """The form as the usage API's query string."""
    args = {"group_by": form["group_by"], "user": form["user"]}
    if form["range"] == "custom":
        args["start_time"] = as_utc(form["from"]) if form["from"] else ""
        args["end_time"] = as_utc(form["to"]) if form["to"] else ""
    else:
        span = RANGES.get(form["range"], RANGES["24h"])
        args["start_time"], args["end_time"] = (now - span).isoformat(), now.isoformat()
    return args


def usage_chart(report: UsageReport) -> Markup:
    hourly = report.bucket == "hour"
    labels, titles = [], []
    for n, start in enumerate(report.buckets):
        new_day = n == 0 or start.hour == 0
        if hourly:
            labels.append(start.strftime("%m-%d %H:%M" if new_day else "%H:%M"))
            titles.append(start.strftime("%Y-%m-%d %H:00 UTC"))
        else:
            labels.append(start.strftime("%m-%d"))
            titles.append(start.strftime("%Y-%m-%d (UTC)"))
    series = [
        ChartSeries(s.label, [u.total for u in s.usage], other=s.key is None) for s in report.series
    ]
    group = report.group_by
    others = " (the smallest summed as other)" if any(s.other for s in series) else ""
    span = f"{report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC"
    return stacked_bars(
        chart_id="usage-chart",
        title=f"Tokens per {report.bucket} by {group}",
        description=(
            f"Stacked bars of all tokens (input, output, cache read and cache write) per"
            f" {report.bucket}, {span}, one colour per {group}{others}."
        ),
        x_labels=labels,
        x_titles=titles,
        series=series,
        y_label="tokens",
        x_label=f"{report.bucket} (UTC)",
    )
