"""What the demo model says, independent of wire format, and the helpers every format uses.

The demo is deterministic: the reply is derived from the request, so a test can compute what to
expect.

- Text: ``"demo reply to: <last user text, whitespace collapsed, first 60 chars>"`` (after a tool
  result: ``"demo reply to tool result: ..."``), cut into exactly ``stream_chunks`` deltas; when the
  text has fewer characters than that, the remaining deltas are ``" demo"`` each.
- Tool call: only when the last user text contains ``#demo-tool`` (`TOOL_TRIGGER`), the request
  offers a tool the demo may call, and the last message is not a tool result. The demo then calls
  the first offered tool whose name reads (``Read``, ``Glob``, ``get_weather``, ``list_files``)
  and never one that writes or runs anything (``Bash``, ``Write``, ``Edit``, ``run_command``):
  real coding clients pointed at the demo run the tools it calls on the user's machine. The call
  carries an object holding the schema's required properties (string → ``"demo"`` or the first
  enum value, number/integer → 1, boolean → true, array → [], object → {}, null → null). A plain
  prompt gets a plain answer.
- Thinking / reasoning text: ``"demo thinking about: <first 40 chars>"``.
- Tokens: ``count_tokens(s) = max(1, ceil(len(s) / 4))``. The prompt count is taken over every
  string in the request's prompt fields (system, instructions, messages, input, tools). Output
  tokens count the text, the tool arguments and the thinking text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

JsonObject = dict[str, Any]

FILLER_DELTA = " demo"
TOOL_TRIGGER = "#demo-tool"
# Names of tools that only read, and words that mark a tool as writing or running something: the
# demo calls a tool only when its name has the first and none of the second (deny wins).
_READS = re.compile(
    r"read|view|get|list|ls|glob|grep|search|find|lookup|fetch|show|describe|weather|query|look",
    re.IGNORECASE,
)
_ACTS = re.compile(
    r"writ|edit|delet|remov|exec|run|bash|shell|command|terminal|creat|updat|patch|move|kill"
    r"|apply|put|post|send|install|notebook|task|agent|todo|commit|push|save|set|replace|insert"
    r"|upload|spawn|launch|start|stop|open|click|type|eval|script|code",
    re.IGNORECASE,
)
_SUMMARY_CHARS = 60
_THINKING_CHARS = 40
_MAX_SIDE_DELTAS = 4  # thinking, reasoning summary and tool-argument deltas


class BadRequest(Exception):
    """The request body is not what the route needs; rendered in the route's error shape (400)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, exactly as it goes on the wire

    @property
    def argument_deltas(self) -> list[str]:
        return split_text(self.arguments, min(_MAX_SIDE_DELTAS, len(self.arguments)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One answer of the demo model. ``text_deltas`` may be endless (a held-open stream)."""

    seq: int
    model: str
    created: int  # unix seconds
    text_deltas: Iterable[str]
    thinking: str | None
    tool_call: ToolCall | None
    prompt_tokens: int

    @property
    def text(self) -> str:
        """The full text; never call this on an endless reply."""
        return "".join(self.text_deltas)

    @property
    def thinking_deltas(self) -> list[str]:
        if not self.thinking:
            return []
        return split_text(self.thinking, min(_MAX_SIDE_DELTAS, len(self.thinking)))

    @property
    def thinking_tokens(self) -> int:
        return count_tokens(self.thinking) if self.thinking else 0

    def output_tokens(self, text: str) -> int:
        tokens = count_tokens(text) + self.thinking_tokens
        if self.tool_call is not None:
            tokens += count_tokens(self.tool_call.arguments)
        return tokens


def may_call(name: object) -> bool:
    """True for a tool name the demo may call: it reads, and nothing in it writes or runs."""
    return isinstance(name, str) and bool(_READS.search(name)) and not _ACTS.search(name)


def wants_tool(last_text: str) -> bool:
    return TOOL_TRIGGER in last_text


def count_tokens(text: str) -> int:
    return max(1, -(-len(text) // 4))


def summarize(text: str, limit: int = _SUMMARY_CHARS) -> str:
    return " ".join(text.split())[:limit]


def reply_text(last_text: str, *, after_tool_result: bool) -> str:
    label = "demo reply to tool result: " if after_tool_result else "demo reply to: "
    return label + summarize(last_text)


def thinking_text(last_text: str) -> str:
    return "demo thinking about: " + summarize(last_text, _THINKING_CHARS)


def split_text(text: str, parts: int) -> list[str]:
    """Cut ``text`` into ``parts`` pieces of near-equal length (empty only when text is "")."""
    if parts <= 1 or not text:
        return [text]
    size, extra = divmod(len(text), parts)
    pieces: list[str] = []
    start = 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def text_deltas(text: str, count: int) -> tuple[str, ...]:
    """Exactly ``count`` (at least 1) deltas whose concatenation starts with ``text``."""
    count = max(1, count)
    pieces = split_text(text, min(count, len(text)))
    return (*pieces, *([FILLER_DELTA] * (count - len(pieces))))


def collect_text(value: Any) -> Iterator[str]:
    """Every string leaf under ``value`` (dict values, list items), depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from collect_text(item)
    elif isinstance(value, list):
        for item in value:
            yield from collect_text(item)


def prompt_tokens(request: Mapping[str, Any], fields: Iterable[str]) -> int:
    return count_tokens("".join(s for field in fields for s in collect_text(request.get(field))))


def content_text(content: Any, *, part_types: frozenset[str]) -> str:
    """The text of a message's ``content``: a string, or the last text part of a list of parts
    (coding clients put reminders and context in parts before the user's own words)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, Mapping)
            and part.get("type") in part_types
            and isinstance(part.get("text"), str)
        ]
        return texts[-1] if texts else ""
    return ""


def example_arguments(schema: Any) -> JsonObject:
    """A small object satisfying the ``required`` properties of a JSON schema."""
    if not isinstance(schema, Mapping):
        return {}
    properties = schema.get("properties")
    required = schema.get("required")
    if not isinstance(properties, Mapping) or not isinstance(required, list):
        return {}
    return {
        name: _example_value(properties.get(name)) for name in required if isinstance(name, str)
    }


def _example_value(schema: Any) -> Any:
    if not isinstance(schema, Mapping):
        return "demo"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return example_arguments(schema)
    if kind == "null":
        return None
    return "demo"


def signature_for(text: str) -> str:
    """A deterministic stand-in for Anthropic's opaque thinking signature."""
    return base64.b64encode(hashlib.sha256(text.encode()).digest() * 2).decode()


def parse_json_object(body: bytes) -> JsonObject:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BadRequest(f"invalid JSON body: {exc}") from exc
    if not isinstance(value, dict):
        raise BadRequest("the request body must be a JSON object")
    return value


def dump_json(value: Any) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate the client sent ("\ud800"): keep it escaped
        return json.dumps(value, separators=(",", ":")).encode()


def sse_data(value: Any) -> bytes:
    """An OpenAI Chat Completions style event: ``data: <json>``."""
    return b"data: " + dump_json(value) + b"\n\n"


def sse_event(event: str, value: Any) -> bytes:
    """A named event: ``event: <type>`` then ``data: <json>``."""
    return b"event: " + event.encode() + b"\ndata: " + dump_json(value) + b"\n\n"
