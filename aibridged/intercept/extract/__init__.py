"""What recording takes from requests and answers, per API surface, beside the relay.

`request_facts` reads the parsed request body (parsed once, by the data plane) for the last user
prompt and the tool call id a tool result answers (threads). `extractor_for` gives an object the
relay feeds (`on_event` for each whole SSE event, `on_body` for a blocking body); it emits the
records it finds through `emit` as soon as each is complete, and `finish()` emits what was still
held when the answer ended, however it ended (usage seen so far included). An extractor never
raises: a malformed event is skipped, and counted by the caller.

The rules are Coder's AI Gateway's, per surface: `chat` (Chat Completions), `responses`
(Responses), `messages` (Anthropic Messages, also what Bedrock's transcoded streams become).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aibridged.intercept.extract import chat, messages, responses
from aibridged.intercept.extract.base import NO_FACTS, Emit, Extractor, RequestFacts
from aibridged.intercept.routes import Api
from aibridged.intercept.sse import SSEEvent

__all__ = ["Emit", "Extractor", "RequestFacts", "extractor_for", "request_facts"]

_FACTS: dict[Api, Callable[[Mapping[str, Any]], RequestFacts]] = {
    Api.CHAT_COMPLETIONS: chat.request_facts,
    Api.RESPONSES: responses.request_facts,
    Api.MESSAGES: messages.request_facts,
}

_EXTRACTORS: dict[Api, Callable[[Emit], Extractor]] = {
    Api.CHAT_COMPLETIONS: chat.ChatExtractor,
    Api.RESPONSES: responses.ResponsesExtractor,
    Api.MESSAGES: messages.MessagesExtractor,
}


class _Nothing:
    """Passthrough answers hold nothing recorded."""

    __slots__ = ()

    def on_event(self, event: SSEEvent) -> None:
        pass

    def on_body(self, body: bytes) -> None:
        pass

    def finish(self) -> None:
        pass


def request_facts(api: Api, parsed: Mapping[str, Any]) -> RequestFacts:
    facts = _FACTS.get(api)
    return facts(parsed) if facts is not None else NO_FACTS


def extractor_for(api: Api, *, stream: bool, emit: Emit) -> Extractor:
    """`stream` is the request's flag; each extractor reads both a stream and a body anyway,
    since the relay goes by what the upstream answered (its content type), not by the flag."""
    make = _EXTRACTORS.get(api)
    return make(emit) if make is not None else _Nothing()
