"""What recording takes from requests and answers, per API surface, beside the relay.

`request_facts` reads the parsed request body (parsed once, by the data plane) for the last user
prompt and the tool call id a tool result answers (threads). `extractor_for` gives an object the
relay feeds (`on_event` for each whole SSE event, `on_body` for a blocking body); it emits the
records it finds through `emit` as soon as each is complete, and `finish()` emits what was still
held when the answer ended, however it ended (usage seen so far included). An extractor never
raises: a malformed event is skipped, and counted by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aibridged.intercept.routes import Api
from aibridged.intercept.sse import SSEEvent
from aibridged.records import Extracted

Emit = Callable[[Extracted], None]


@dataclass(frozen=True, slots=True)
class RequestFacts:
    prompt: str | None  # the last user prompt, None when the last message is not the user's
    correlating_call_id: str | None  # the tool call the request answers (last message)


class Extractor(Protocol):
    def on_event(self, event: SSEEvent) -> None: ...

    def on_body(self, body: bytes) -> None: ...

    def finish(self) -> None: ...


def request_facts(api: Api, parsed: Mapping[str, Any]) -> RequestFacts:
    raise NotImplementedError  # written by the extraction modules (chat, responses, messages)


def extractor_for(api: Api, *, stream: bool, emit: Emit) -> Extractor:
    raise NotImplementedError
