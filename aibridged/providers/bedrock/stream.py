"""Bedrock's `application/vnd.amazon.eventstream` answer, as the Anthropic SSE the client expects.

InvokeModelWithResponseStream sends binary event-stream messages (decoded here by botocore's
own parser, `EventStreamBuffer`, never by hand): each `chunk` event's payload is
`{"bytes": "<base64>"}` holding one Anthropic stream event as JSON (`message_start`,
`content_block_delta`, ...), which goes to the client as `event: <type>\\ndata: <json>\\n\\n`
with its JSON exactly as Bedrock sent it. An exception message (throttling, a model error)
becomes Anthropic's `error` event. Events come out as soon as their message is whole, however
the bytes are cut.
"""

from __future__ import annotations

import base64
import binascii
import json

from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from aibridged.errors import UpstreamProtocolError
from aibridged.intercept.sse import SSEEvent
from aibridged.providers.bedrock.errors import stream_exception

EVENT_STREAM_MEDIA_TYPE = "application/vnd.amazon.eventstream"


class EventStreamTranscoder:
    """One stream's decoder (a `StreamTranscoder`); holds at most one unfinished message."""

    media_type = EVENT_STREAM_MEDIA_TYPE

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()
        self._held = 0  # bytes fed and not yet part of a whole message

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        self._buffer.add_data(chunk)
        self._held += len(chunk)
        events: list[SSEEvent] = []
        try:
            for message in self._buffer:
                self._held -= message.prelude.total_length
                event = _event_of(message)
                if event is not None:
                    events.append(event)
        except ParserError as exc:  # a bad checksum or length: nothing after it can be trusted
            raise UpstreamProtocolError(f"Bedrock event stream is malformed: {exc}") from exc
        return events

    def finish(self) -> list[SSEEvent]:
        if self._held:
            raise UpstreamProtocolError(
                f"Bedrock event stream ended inside a message ({self._held} bytes of it)"
            )
        return []


def _event_of(message: EventStreamMessage) -> SSEEvent | None:
    headers = message.headers
    kind = headers.get(":message-type")
    if kind == "exception":
        name = str(headers.get(":exception-type", ""))
        return SSEEvent("error", stream_exception(name, message.payload).decode())
    if kind == "error":  # the event-stream protocol's own error, in headers only
        text = str(headers.get(":error-message") or headers.get(":error-code") or "unknown")
        return SSEEvent(
            "error", stream_exception("", json.dumps({"message": text}).encode()).decode()
        )
    if kind != "event" or headers.get(":event-type") != "chunk":
        return None  # nothing a Messages client knows (Bedrock sends none today)
    return _chunk_event(message.payload)


def _chunk_event(payload: bytes) -> SSEEvent:
    try:
        wrapper = json.loads(payload)
        data = base64.b64decode(wrapper["bytes"], validate=True).decode("utf-8")
        event_type = json.loads(data)["type"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise UpstreamProtocolError(
            f"Bedrock stream chunk is not an Anthropic event: {exc}"
        ) from exc
    if not isinstance(event_type, str) or not event_type or not event_type.isprintable():
        raise UpstreamProtocolError("Bedrock stream chunk has no event type")
    return SSEEvent(event_type, data)
