"""PostgreSQL's text form of the parameters the native connection (store/native.py) sends:
scalars and one-dimensional arrays of them. Every statement it runs casts each parameter
(`$1::uuid[]`), so no type is sent."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from aibridged.errors import StoreError


def dump_all(params: Sequence[Any]) -> list[bytes | None]:
    try:
        return [None if value is None else _dump(value).encode() for value in params]
    except (TypeError, UnicodeEncodeError) as exc:
        raise StoreError(f"database error: a parameter cannot be sent: {exc}") from exc


def _dump(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "{" + ",".join("NULL" if v is None else _quoted(_scalar(v)) for v in value) + "}"
    return _scalar(value)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # before int: a bool is an int
        return "t" if value else "f"
    if isinstance(value, int | float | uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"no text form for {type(value).__name__}")
