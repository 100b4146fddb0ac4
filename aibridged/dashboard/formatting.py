"""Template filters for recorded data: times in UTC, tool inputs as indented JSON."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from quart import Blueprint


def add_formatting(bp: Blueprint) -> None:
    bp.add_app_template_filter(when, "when")
    bp.add_app_template_filter(pretty_json, "pretty_json")


def when(value: str | None) -> str:
    """An API time ("2026-12-02T06:41:37.123456Z") as "2026-12-02 06:41:37 UTC"."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty_json(text: str) -> str:
    """A tool call's input, indented when it is JSON (else as recorded: a custom tool's text)."""
    try:
        return orjson.dumps(orjson.loads(text), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return text
