"""The interface every extraction module implements (re-exported by the package).

Kept apart from the package's `__init__` so that the per-API modules can import it while the
package imports them for its dispatch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aibridged.intercept.sse import SSEEvent
from aibridged.records import Extracted

Emit = Callable[[Extracted], None]


@dataclass(frozen=True, slots=True)
class RequestFacts:
    prompt: str | None  # the last user prompt, None when the last message is not the user's
    correlating_call_id: str | None  # the tool call the request answers (last message)


NO_FACTS = RequestFacts(prompt=None, correlating_call_id=None)


class Extractor(Protocol):
    def on_event(self, event: SSEEvent) -> None: ...

    def on_body(self, body: bytes) -> None: ...

    def finish(self) -> None: ...
