"""What recording writes: frozen records, one type per table.

Extraction (aibridged/intercept/extract/) produces the response-side records without knowing the
interception they belong to; the recorder stamps them with the interception id and the time.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """One upstream response's usage. `input` excludes cached input (the per-format rules of
    docs/recording.md); `extra` holds the other counters the provider reported."""

    response_id: str
    input: int
    output: int
    cache_read: int = 0
    cache_write: int = 0
    extra: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PromptUsage:
    """The last user prompt of a request (once per interception)."""

    prompt: str
    response_id: str = ""


@dataclass(frozen=True, slots=True)
class ToolUsage:
    """A tool call the model emitted; `input` is JSON text (or a custom tool's raw input)."""

    response_id: str
    tool: str
    call_id: str
    input: str
    item_id: str = ""
    injected: bool = False
    server_url: str | None = None
    invocation_error: str | None = None


@dataclass(frozen=True, slots=True)
class ModelThought:
    """Model reasoning: `source` is `thinking`, `reasoning_summary` or `commentary`."""

    response_id: str
    content: str
    source: str


Extracted = TokenUsage | ToolUsage | ModelThought


@dataclass(frozen=True, slots=True)
class InterceptionStart:
    id: uuid.UUID
    initiator_id: uuid.UUID
    api_key_id: str
    provider: str  # the wire family recorded, as Coder does: openai or anthropic
    provider_name: str
    model: str
    client: str
    client_session_id: str | None
    user_agent: str
    credential_kind: str  # centralized | byok
    credential_hint: str
    thread_parent_id: uuid.UUID | None
    thread_root_id: uuid.UUID | None
    started_at: datetime
    correlating_call_id: str | None = None  # the tool call this request answers
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class InterceptionEnd:
    id: uuid.UUID
    started_at: datetime  # finds the row's partition
    ended_at: datetime
    credential_hint: str  # of the last attempt (known only at the end with several keys)
    status: str  # completed | failed | cancelled
    error: str = ""


def start_log_fields(record: InterceptionStart) -> dict[str, Any]:
    """The fields of a start's `interception log` line (structured logging)."""
    return {
        "initiator_id": str(record.initiator_id),
        "api_key_id": record.api_key_id,
        "provider": record.provider,
        "provider_name": record.provider_name,
        "model": record.model,
        "client": record.client,
        "client_session_id": record.client_session_id,
        "started_at": record.started_at.isoformat(),
        "thread_parent_id": str(record.thread_parent_id) if record.thread_parent_id else None,
        "thread_root_id": str(record.thread_root_id) if record.thread_root_id else None,
        "metadata": dict(record.metadata),
    }


def child_log_fields(
    record: TokenUsage | PromptUsage | ToolUsage | ModelThought, created_at: datetime
) -> dict[str, Any]:
    """The fields of a child record's `interception log` line."""
    fields: dict[str, Any] = {"created_at": created_at.isoformat()}
    if isinstance(record, TokenUsage):
        fields.update(msg_id=record.response_id, input_tokens=record.input,
                      output_tokens=record.output, cache_read_input_tokens=record.cache_read,
                      cache_write_input_tokens=record.cache_write,
                      metadata=dict(record.extra))  # fmt: skip
    elif isinstance(record, PromptUsage):
        fields.update(msg_id=record.response_id, prompt=record.prompt)
    elif isinstance(record, ToolUsage):
        fields.update(msg_id=record.response_id, tool_call_id=record.call_id, tool=record.tool,
                      input=record.input, server_url=record.server_url, injected=record.injected,
                      invocation_error=record.invocation_error)  # fmt: skip
    else:
        fields.update(content=record.content, metadata={"source": record.source})
    return fields
