"""Deterministic request bodies shaped like real coding-agent traffic (SPEC.md §14).

- ``anthropic_messages``: a Claude-Code-like Messages request of ~75 KB with 25 tool definitions,
  a long system prompt with ``cache_control`` and a conversation of tool_use / tool_result turns.
- ``openai_chat``: a Codex/Cursor-like Chat Completions request of ~40 KB with 10 function tools and
  a conversation of assistant tool_calls / tool messages.

Both conversations end on a tool result, the usual shape inside an agent loop. The bodies are
compact JSON (as Node's ``JSON.stringify`` sends them) and differ between ``stream`` on and off only
in that flag. The same seed always gives the same bytes; the filler in the last tool result is
sized so the body lands just under the target size.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from bench.payload_text import TOOL_NAMES, Text, compact, fit

ANTHROPIC_TARGET_BYTES = 75_000
ANTHROPIC_TOOLS = 25
OPENAI_TARGET_BYTES = 40_000
OPENAI_TOOLS = 10
SEED = 20_251_123

ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
OPENAI_MODEL = "gpt-4.1-2025-04-14"

# What the clients send besides auth, content-type, host and content-length.
ANTHROPIC_HEADERS: tuple[tuple[str, str], ...] = (
    ("user-agent", "claude-cli/2.0.14 (external, cli)"),
    ("anthropic-version", "2023-06-01"),
    ("anthropic-beta", "claude-code-20250219,interleaved-thinking-2025-05-14"),
    ("anthropic-dangerous-direct-browser-access", "true"),
    ("x-app", "cli"),
    ("x-stainless-lang", "js"),
    ("x-stainless-package-version", "0.60.0"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "node"),
    ("x-stainless-runtime-version", "v22.19.0"),
    ("x-stainless-retry-count", "0"),
    ("x-stainless-timeout", "600"),
    ("accept", "application/json"),
    ("accept-encoding", "gzip, deflate, br"),
)
OPENAI_HEADERS: tuple[tuple[str, str], ...] = (
    ("user-agent", "OpenAI/Python 2.8.1"),
    ("x-stainless-lang", "python"),
    ("x-stainless-package-version", "2.8.1"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "CPython"),
    ("x-stainless-runtime-version", "3.12.3"),
    ("x-stainless-retry-count", "0"),
    ("x-stainless-read-timeout", "600"),
    ("accept", "application/json"),
    ("accept-encoding", "gzip, deflate"),
)


@cache
def _anthropic_request() -> dict[str, Any]:
    text = Text(SEED)
    tools = [
        {
            "name": name,
            "description": text.prose(900 if index % 5 else 2200),
            "input_schema": text.schema(2 + index % 5),
        }
        for index, name in enumerate(TOOL_NAMES[:ANTHROPIC_TOOLS])
    ]
    system = [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        {"type": "text", "text": text.prose(11_000), "cache_control": {"type": "ephemeral"}},
    ]
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": "<system-reminder>\n" + text.prose(1500) + "\n</system-reminder>",
                },
                {
                    "type": "text",
                    "text": "Fix the failing test in tests/test_relay.py and explain the cause.",
                },
            ],
        }
    ]
    for turn in range(3):
        tool = tools[(turn * 7) % len(tools)]
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": text.sentence(20)},
                    {
                        "type": "tool_use",
                        "id": f"toolu_01Bench{turn:018d}",
                        "name": tool["name"],
                        "input": {"file_path": f"/work/src/module_{turn}.py"},
                    },
                ],
            }
        )
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": f"toolu_01Bench{turn:018d}",
                        "content": text.code(60, numbered=True),
                    }
                ],
            }
        )
    last_id = "toolu_01Bench" + "9" * 18
    messages.append(
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": text.sentence(16)},
                {
                    "type": "tool_use",
                    "id": last_id,
                    "name": "Read",
                    "input": {"file_path": "/work/src/relay.py"},
                },
            ],
        }
    )
    filler = text.code(2000, numbered=True)

    def build(content: str) -> dict[str, Any]:
        last = {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": last_id,
                    "content": content,
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        }
        return {
            "model": ANTHROPIC_MODEL,
            "max_tokens": 32_000,
            "stream": False,
            "system": system,
            "messages": [*messages, last],
            "tools": tools,
            "temperature": 1,
            "metadata": {
                "user_id": "user_5e1f0c2d9a7b4e3f8c6d1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d"
                "_account__session_7b0c1d2e-3f4a-4b5c-8d6e-7f8091a2b3c4"
            },
        }

    return fit(build, filler, ANTHROPIC_TARGET_BYTES)


@cache
def _openai_request() -> dict[str, Any]:
    text = Text(SEED + 1)
    tools: list[dict[str, Any]] = [
        {
            "type": "function",
            "function": {
                "name": name.lower(),
                "description": text.prose(1400),
                "parameters": text.schema(3 + index % 4),
                "strict": False,
            },
        }
        for index, name in enumerate(TOOL_NAMES[:OPENAI_TOOLS])
    ]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": text.prose(6000)},
        {
            "role": "user",
            "content": "Add a retry with backoff to the upstream client and a test for it.",
        },
    ]
    for turn in range(3):
        call_id = f"call_bench{turn:014d}"
        name = tools[(turn * 3) % len(tools)]["function"]["name"]
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": name,
                            "arguments": json.dumps({"path": f"src/mod_{turn}.py"}),
                        },
                    }
                ],
            }
        )
        messages.append(
            {"role": "tool", "tool_call_id": call_id, "content": text.code(40, numbered=False)}
        )
    last_id = "call_bench" + "9" * 14
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": last_id,
                    "type": "function",
                    "function": {"name": "read", "arguments": '{"path":"src/upstream.py"}'},
                }
            ],
        }
    )
    filler = text.code(1000, numbered=False)

    def build(content: str) -> dict[str, Any]:
        return {
            "model": OPENAI_MODEL,
            "messages": [*messages, {"role": "tool", "tool_call_id": last_id, "content": content}],
            "tools": tools,
            "tool_choice": "auto",
            "parallel_tool_calls": True,
            "temperature": 0.2,
            "stream": False,
        }

    return fit(build, filler, OPENAI_TARGET_BYTES)


@cache
def anthropic_messages(*, stream: bool) -> bytes:
    """The Messages request body (~75 KB, 25 tools)."""
    return compact({**_anthropic_request(), "stream": stream})


@cache
def openai_chat(*, stream: bool) -> bytes:
    """The Chat Completions request body (~40 KB, 10 tools)."""
    return compact({**_openai_request(), "stream": stream})


def describe() -> dict[str, Any]:
    """Sizes and shapes, for the results file."""
    anthropic = _anthropic_request()
    openai = _openai_request()
    return {
        "anthropic_messages": {
            "bytes_blocking": len(anthropic_messages(stream=False)),
            "bytes_streaming": len(anthropic_messages(stream=True)),
            "tools": len(anthropic["tools"]),
            "messages": len(anthropic["messages"]),
            "model": ANTHROPIC_MODEL,
            "extra_headers": len(ANTHROPIC_HEADERS),
        },
        "openai_chat": {
            "bytes_blocking": len(openai_chat(stream=False)),
            "bytes_streaming": len(openai_chat(stream=True)),
            "tools": len(openai["tools"]),
            "messages": len(openai["messages"]),
            "model": OPENAI_MODEL,
            "extra_headers": len(OPENAI_HEADERS),
        },
        "seed": SEED,
    }
