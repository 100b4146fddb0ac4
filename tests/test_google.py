"""The Gemini thought-signature patch: what it adds, what it leaves byte for byte, and that a
`google` provider applies it on the way upstream (the SDK as the client, a fake upstream)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
import pytest
import trio

from aibridged.providers.google import PLACEHOLDER_SIGNATURE, add_thought_signatures
from tests.gateway import start_gateway

CALL = {"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}


def _signed(signature: str) -> dict[str, Any]:
    return {**CALL, "extra_content": {"google": {"thought_signature": signature}}}


def _conversation(*assistant_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "list the files"}]
    for calls in assistant_calls:
        messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        messages.extend({"role": "tool", "tool_call_id": c["id"], "content": "a b"} for c in calls)
    return messages


def _signatures(raw: bytes) -> list[list[str | None]]:
    found = []
    for message in orjson.loads(raw)["messages"]:
        if message.get("tool_calls"):
            found.append([
                call.get("extra_content", {}).get("google", {}).get("thought_signature")
                for call in message["tool_calls"]
            ])  # fmt: skip
    return found


def test_the_first_call_of_each_unsigned_step_gets_the_placeholder() -> None:
    second = {**CALL, "id": "c2"}
    body = {"model": "gemini-3-pro", "messages": _conversation([CALL, second], [CALL])}
    patched = add_thought_signatures(json.dumps(body).encode())
    assert _signatures(patched) == [[PLACEHOLDER_SIGNATURE, None], [PLACEHOLDER_SIGNATURE]]


def test_signatures_the_client_kept_are_left_alone() -> None:
    body = {"model": "g", "messages": _conversation([{**CALL, "id": "c0"}, _signed("real")])}
    raw = json.dumps(body).encode()
    assert add_thought_signatures(raw) is raw


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "hi"}],
        [{"role": "assistant", "content": "no tools"}],
        [{"role": "assistant", "tool_calls": []}],
        [{"role": "assistant", "tool_calls": ["odd"]}],
        [{"role": "assistant", "tool_calls": [{**CALL, "extra_content": "odd"}]}],
        "not a list",
    ],
)
def test_requests_without_unsigned_tool_calls_go_byte_for_byte(messages: Any) -> None:
    raw = json.dumps({"model": "g", "messages": messages}).encode()
    assert add_thought_signatures(raw) is raw


def test_only_the_messages_value_is_re_encoded() -> None:
    messages = json.dumps(_conversation([CALL]))
    raw = (
        '{ "model" : "g",\n  "temperature": 1.50, "messages": ' + messages + ', "x": 1e2 }'
    ).encode()
    patched = add_thought_signatures(raw)
    assert patched.startswith(b'{ "model" : "g",\n  "temperature": 1.50, "messages": ')
    assert patched.endswith(b', "x": 1e2 }')
    assert _signatures(patched) == [[PLACEHOLDER_SIGNATURE]]


async def test_a_google_provider_patches_what_goes_upstream(
    nursery: trio.Nursery, database_url: str, tmp_path: Path
) -> None:
    gateway = await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)
    headers = {"authorization": f"Bearer {gateway.token}"}
    async with httpx2.AsyncClient(base_url=gateway.url, headers=headers, timeout=10) as api:
        body = {
            "type": "google",
            "name": "gemini",
            "base_url": gateway.upstream_url + "/v1",
            "api_keys": ["AIza-test-key-0123456789"],
        }
        assert (await api.post("/api/v2/ai/providers", json=body)).status_code == 201
        for _ in range(250):  # served within a second of the change
            if (await api.get("/api/v2/aibridge/gemini/v1/models")).status_code != 404:
                break
            await trio.sleep(0.02)
    async with openai.AsyncOpenAI(
        base_url=gateway.base("gemini") + "/v1", api_key=gateway.token, max_retries=0
    ) as client:
        await client.chat.completions.create(
            model="gemini-3-pro",
            messages=_conversation([CALL]),  # type: ignore[arg-type]
        )
        await client.chat.completions.create(
            model="gemini-3-pro",
            messages=_conversation([_signed("kept")]),  # type: ignore[arg-type]
        )
    first, second = (r for r in gateway.upstream.requests if r.path.endswith("/completions"))
    assert _signatures(first.body) == [[PLACEHOLDER_SIGNATURE]]
    assert _signatures(second.body) == [["kept"]]
