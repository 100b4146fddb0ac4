"""`trace.logs`: each log line also becomes an event of the span current where it was logged.

Lines reach this hook after `RedactSecrets`. Content never goes into a span, whatever is logged:
the structured-logging record lines (`interception log`, which carry prompts, tool inputs and
thoughts) are skipped, and so is any field named like content.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from aibridged.safe import bounded_text

SKIPPED_EVENTS = frozenset({"interception log"})
CONTENT_FIELDS = frozenset({"prompt", "input", "content", "output", "messages", "body", "text"})
_NOT_ATTRIBUTES = frozenset({"event", "timestamp"})  # the event's name and its own time
MAX_VALUE_CHARS = 2048


def add_span_event(method_name: str, event_dict: MutableMapping[str, Any]) -> None:
    """The log hook (`aibridged.log.set_log_hook`)."""
    span = trace.get_current_span()
    if not span.is_recording():
        return  # outside any request (or in a thread): no span to add to
    name = event_dict.get("event")
    if not isinstance(name, str) or name in SKIPPED_EVENTS:
        return
    attributes: dict[str, AttributeValue] = {}
    for key, value in event_dict.items():
        if key in _NOT_ATTRIBUTES or key in CONTENT_FIELDS or value is None:
            continue
        attributes[key] = _attribute(value)
    span.add_event(name, attributes)


def _attribute(value: object) -> AttributeValue:
    if isinstance(value, (bool, int, float)):
        return value
    return bounded_text(value if isinstance(value, str) else str(value), MAX_VALUE_CHARS)
