"""Deterministic request bodies shaped like real coding-agent traffic (docs/performance.md).

- ``anthropic_messages``: a Claude-Code-like Messages request of ~75 KB with 25 tool definitions,
  a long system prompt with ``cache_control`` and a conversation of tool_use / tool_result turns.
- ``openai_chat``: a Codex/Cursor-like Chat Completions request of ~40 KB with 10 function tools and
  a conversation of assistant tool_calls / tool messages.
- ``openai_responses``: a Codex-CLI-like Responses request of ~40 KB with 10 function tools, long
  ``instructions`` and an ``input`` of function_call / function_call_output items.
- ``slow_stream``: a tiny Messages stream request, for the many-open-streams scenario (answered by
  ``bench.paced_upstream`` with a slowly paced stream).

The conversations end on a tool result, the usual shape inside an agent loop. The bodies are
compact JSON (as Node's ``JSON.stringify`` sends them) and differ between ``stream`` on and off only
in that flag. The same seed always gives the same bytes; the filler in the last tool result is
sized so the body lands just under the target size.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from bench.client_headers import ANTHROPIC_HEADERS, OPENAI_HEADERS, RESPONSES_HEADERS
from bench.payload_text import TOOL_NAMES, Text, compact, fit

ANTHROPIC_TARGET_BYTES = 75_000
ANTHROPIC_TOOLS = 25
OPENAI_TARGET_BYTES = 40_000
OPENAI_TOOLS = 10
RESPONSES_TARGET_BYTES = 40_000
RESPONSES_TOOLS = 10
SEED = 20_251_123

ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
OPENAI_MODEL = "gpt-4.1-2025-04-14"
RESPONSES_MODEL = "gpt-5-codex"


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
def _responses_request() -> dict[str, Any]:
    text = Text(SEED + 2)
    tools: list[dict[str, Any]] = [
        {
            "type": "function",
            "name": name.lower(),
            "description": text.prose(1400),
            "parameters": text.schema(3 + index % 4),
            "strict": False,
        }
        for index, name in enumerate(TOOL_NAMES[:RESPONSES_TOOLS])
    ]
    items: list[dict[str, Any]] = [
        {
            "type": "message",
            "role": "user",
            "content": [
                {
                    "type": "input_text",
                    "text": "<environment_context>\n  <cwd>/work</cwd>"
                    "\n  <sandbox_mode>workspace-write</sandbox_mode>\n"
                    "</environment_context>",
                }
            ],
        },
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Make the relay retry idempotent requests once."}
            ],
        },
    ]
    for turn in range(3):
        call_id = f"call_bench{turn:014d}"
        items.append(
            {
                "type": "function_call",
                "name": tools[(turn * 3) % len(tools)]["name"],
                "arguments": json.dumps({"command": ["cat", f"src/mod_{turn}.py"]}),
                "call_id": call_id,
            }
        )
        items.append(
            {
                "type": "function_call_output",
                "call_id": call_id,
                "output": text.code(40, numbered=False),
            }
        )
    last_id = "call_bench" + "9" * 14
    items.append(
        {
            "type": "function_call",
            "name": "read",
            "arguments": '{"command":["cat","src/upstream.py"]}',
            "call_id": last_id,
        }
    )
    instructions = text.prose(6000)
    filler = text.code(1000, numbered=False)

    def build(output: str) -> dict[str, Any]:
        return {
            "model": RESPONSES_MODEL,
            "instructions": instructions,
            "input": [
                *items,
                {"type": "function_call_output", "call_id": last_id, "output": output},
            ],
            "tools": tools,
            "tool_choice": "auto",
            "parallel_tool_calls": False,
            "reasoning": {"effort": "medium", "summary": "auto"},
            "store": False,
            "stream": False,
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        }

    return fit(build, filler, RESPONSES_TARGET_BYTES)


@cache
def anthropic_messages(*, stream: bool) -> bytes:
    """The Messages request body (~75 KB, 25 tools)."""
    return compact({**_anthropic_request(), "stream": stream})


@cache
def openai_chat(*, stream: bool) -> bytes:
    """The Chat Completions request body (~40 KB, 10 tools)."""
    return compact({**_openai_request(), "stream": stream})


@cache
def openai_responses(*, stream: bool) -> bytes:
    """The Responses request body (~40 KB, 10 tools)."""
    return compact({**_responses_request(), "stream": stream})


def slow_stream() -> bytes:
    """A small streaming Messages request (the paced upstream answers it slowly)."""
    return compact(
        {
            "model": ANTHROPIC_MODEL,
            "max_tokens": 1024,
            "stream": True,
            "messages": [{"role": "user", "content": "Count slowly to thirty."}],
        }
    )


def describe() -> dict[str, Any]:
    """Sizes and shapes, for the results file."""
    anthropic = _anthropic_request()
    openai = _openai_request()
    responses = _responses_request()
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
        "openai_responses": {
            "bytes_blocking": len(openai_responses(stream=False)),
            "bytes_streaming": len(openai_responses(stream=True)),
            "tools": len(responses["tools"]),
            "input_items": len(responses["input"]),
            "model": RESPONSES_MODEL,
            "extra_headers": len(RESPONSES_HEADERS),
        },
        "slow_stream": {"bytes": len(slow_stream()), "model": ANTHROPIC_MODEL},
        "seed": SEED,
    }
