"""Deterministic pseudo-prose, pseudo-code and JSON schemas for the bench's request bodies, and
the helpers that size a body to a target (``fit``) and encode it as clients do (``compact``)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

_WORDS_TEXT = (
    "the file function module request response stream token model tool call result error value "
    "config path user session cache buffer handler client server provider gateway record test "
    "import return async await yield class method field type schema object array string number "
    "boolean null default option flag build deploy commit branch merge diff patch line column "
    "check ensure verify update create delete read write edit search match pattern glob grep when "
    "if unless always never only before after while until each every some none all any"
)
_TOOL_NAMES_TEXT = (
    "Task Bash Glob Grep ExitPlanMode Read Edit MultiEdit Write NotebookEdit WebFetch TodoWrite "
    "WebSearch BashOutput KillShell SlashCommand ListMcpResources ReadMcpResource "
    "mcp__github__create_issue mcp__github__get_pull_request mcp__github__search_code "
    "mcp__linear__list_issues mcp__linear__update_issue mcp__sentry__get_event "
    "mcp__postgres__query Skill"
)
_WORDS = tuple(_WORDS_TEXT.split())
TOOL_NAMES = tuple(_TOOL_NAMES_TEXT.split())
_PROPERTY_TYPES = ("string", "string", "string", "integer", "boolean", "array")


class Text:
    """Deterministic pseudo-prose and pseudo-code."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def sentence(self, words: int = 14) -> str:
        picked = [self._rng.choice(_WORDS) for _ in range(words)]
        return " ".join(picked).capitalize() + "."

    def prose(self, chars: int) -> str:
        out: list[str] = []
        size = 0
        while size < chars:
            sentence = self.sentence(self._rng.randint(8, 20))
            out.append(sentence)
            size += len(sentence) + 1
        return " ".join(out)[:chars]

    def code(self, lines: int, *, numbered: bool) -> str:
        out: list[str] = []
        for number in range(1, lines + 1):
            indent = "    " * self._rng.randint(0, 3)
            a, b, c = (self._rng.choice(_WORDS) for _ in range(3))
            line = self._rng.choice(
                (
                    f"{indent}def {a}_{b}(self, {c}: str) -> None:",
                    f"{indent}{a} = await self.{b}({c!r})",
                    f"{indent}if {a} is not None and {b} > {number}:",
                    f"{indent}return {{{a!r}: {b}, {c!r}: {number}}}",
                    f"{indent}# {a} the {b} before {c}",
                    f'{indent}raise ValueError(f"{a} {b}: {{{c}}}")',
                )
            )
            out.append(f"{number:6d}\t{line}" if numbered else line)
        return "\n".join(out)

    def schema(self, properties: int) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for _ in range(properties):
            name = f"{self._rng.choice(_WORDS)}_{self._rng.choice(_WORDS)}"
            kind = self._rng.choice(_PROPERTY_TYPES)
            prop: dict[str, Any] = {"type": kind, "description": self.sentence(12)}
            if kind == "array":
                prop["items"] = {"type": "string"}
            props[name] = prop
        required = list(props)[: max(1, properties // 2)]
        return {
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        }


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def fit(build: Callable[[str], dict[str, Any]], filler: str, target: int) -> dict[str, Any]:
    """``build(filler[:k])`` for the largest k whose encoding is at most ``target`` bytes."""
    low, high = 0, len(filler)
    if len(compact(build(""))) > target:
        raise ValueError("the payload skeleton is already larger than the target")
    while low < high:
        mid = (low + high + 1) // 2
        if len(compact(build(filler[:mid]))) <= target:
            low = mid
        else:
            high = mid - 1
    return build(filler[:low])
