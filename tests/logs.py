"""Waiting for a log line instead of sleeping and hoping it was written."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog
import trio

from aibridged.log import merge_request_fields


class LogWatch:
    """A structlog processor that keeps every event and wakes whoever waits for one."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self._changed = trio.Event()

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> Any:
        entry = dict(event_dict)
        entry.setdefault("log_level", method_name)
        self.entries.append(entry)
        self._changed.set()
        self._changed = trio.Event()
        raise structlog.DropEvent

    def matching(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.entries
            if e["event"] == event and all(e.get(k) == v for k, v in fields.items())
        ]

    async def wait_for(self, event: str, *, count: int = 1, **fields: Any) -> list[dict[str, Any]]:
        """The first `count` entries named `event` (with `fields`), once they have been logged."""
        while len(found := self.matching(event, **fields)) < count:
            await self._changed.wait()
        return found[:count]


@contextmanager
def watch_logs() -> Iterator[LogWatch]:
    """Like structlog.testing.capture_logs, with `await watch.wait_for(...)`."""
    watch = LogWatch()
    previous = structlog.get_config()["processors"]
    structlog.configure(processors=[merge_request_fields, watch])
    try:
        yield watch
    finally:
        structlog.configure(processors=previous)
