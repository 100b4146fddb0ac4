"""The Sessions page's filter form, turned into the sessions API's `q` filter language.

The form's fields become `key:"value"` terms and go through the same parser as the API's `q`
(aibridged.api.listing_query.parse_filters), so the page and the API accept, refuse and select
exactly alike; the parser's problems come back named by the form's fields. Times are the form's
`datetime-local` values, read as UTC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from aibridged.api.listing_query import parse_filters
from aibridged.errors import InvalidInput
from aibridged.store.listing import Selection

# (the form's field, the filter key it becomes)
FIELDS = (
    ("user", "initiator"),
    ("client", "client"),
    ("model", "model"),
    ("provider", "provider_name"),
    ("from", "started_after"),
    ("to", "started_before"),
)
_FIELD_OF = {key: name for name, key in FIELDS}
_HAS_ZONE = re.compile(r"(Z|[+-]\d\d:?\d\d)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Filters:
    values: dict[str, str]  # the form as given (to fill it in again)
    query: str  # the same selection in the API's `q` language
    initiator: str | None
    selection: Selection
    errors: dict[str, str]  # form field -> problem; the selection is empty when any


def read_filters(args: Mapping[str, str], *, may_pick_user: bool) -> Filters:
    """The form's filters; `user` only for those who see everyone's sessions."""
    values = {name: (args.get(name) or "").strip() for name, _ in FIELDS}
    if not may_pick_user:
        values["user"] = ""
    query = " ".join(
        f"{key}:{_quoted(_as_time(key, values[name]))}" for name, key in FIELDS if values[name]
    )
    try:
        initiator, selection = parse_filters(query)
    except InvalidInput as exc:
        errors = {_FIELD_OF.get(field, ""): detail for field, detail in exc.validations}
        return Filters(values, query, None, Selection(), errors)
    return Filters(values, query, initiator, selection, {})


def _quoted(value: str) -> str:
    """A value as one term: double-quoted, its quotes and backslashes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _as_time(key: str, value: str) -> str:
    return as_utc(value) if key.startswith("started_") else value


def as_utc(value: str) -> str:
    """A `datetime-local` value ("2026-12-02T10:30") is UTC; a value with a zone stays."""
    return value if _HAS_ZONE.search(value) else value + "Z"
