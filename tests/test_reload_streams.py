"""Live provider changes under load: streams in flight finish on the provider they started with.

A gateway serves a provider created through the management API, pointed at a paced fake
upstream. Fifty streams are opened; while every one of them is open the provider gets a new key
and a new upstream, is disabled, then deleted. New requests must see each change within 1 s,
and every stream must still end whole, on the original upstream with the original key.

The fake upstream holds each stream before its last few chunks (on an event, not a sleep) until
the three changes are done, so every stream is open during every change however slow the machine;
on a quick one they are still flowing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import trio

from aibridged.demo import RecordedRequest, serve_demo_upstream
from aibridged.demo.asgi import Receive, Send
from aibridged.demo.reply import reply_text, text_deltas
from tests.fakes import FakeUpstream
from tests.gateway import Gateway, start_gateway

STREAMS = 50
DELTAS = 40  # text deltas per streamed answer
CHUNK_DELAY_S = 0.08  # ~44 events per answer: ~3.5 s per stream
HOLD_AT = 36  # streams wait before this body chunk until the changes are done
WITHIN_S = 1.0  # new requests see each change within this
POLL_S = 0.02
ORIGINAL_KEY = "sk-original-0123456789abcdef"
ROTATED_KEY = "sk-rotated-fedcba9876543210"
PROVIDERS = "/api/v2/ai/providers"


class PacedUpstream(FakeUpstream):
    """A paced fake that keeps every request (no history limit) and holds each stream before
    body chunk `hold_at` until `release` is set."""

    def __init__(self, *, hold_at: int | None = None) -> None:
        super().__init__(chunk_delay_s=CHUNK_DELAY_S, stream_chunks=DELTAS)
        self.hold_at = hold_at
        self.release = trio.Event()
        self.seen: list[RecordedRequest] = []
        self.url = ""  # where it listens, once served

    async def handle(self, request: RecordedRequest, receive: Receive, send: Send) -> None:
        self.seen.append(request)
        streaming = _is_stream(request)
        chunks = 0

        async def held_send(message: dict[str, Any]) -> None:
            nonlocal chunks
            if message["type"] == "http.response.body" and streaming:
                chunks += 1
                if chunks == self.hold_at:
                    await self.release.wait()
            await send(message)

        await super().handle(request, receive, held_send)


def _is_stream(request: RecordedRequest) -> bool:
    try:
        return bool(request.json().get("stream"))
    except ValueError:
        return False


def _prompt(request: RecordedRequest) -> str:
    body = request.json()
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else ""


@dataclass
class StreamLog:
    """What one client stream received, line by line."""

    lines: list[str] = field(default_factory=list)
    status: int = 0
    finished_at: float | None = None


async def _within(what: str, check: Callable[[], Awaitable[bool]]) -> float:
    """Poll `check` every 20 ms until it holds; fail unless it did within 1 s. Returns the time
    it took."""
    start = trio.current_time()
    with trio.move_on_after(WITHIN_S):
        while True:
            if await check():
                return trio.current_time() - start
            await trio.sleep(POLL_S)
    raise AssertionError(f"{what}: not seen within {WITHIN_S} s")


def _auth(gw: Gateway) -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.token}"}


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client


async def _gateway_with_paced_provider(
    nursery: trio.Nursery,
    http: httpx2.AsyncClient,
    database_url: str,
    tmp_path: Path,
    body: dict[str, Any],
) -> tuple[Gateway, PacedUpstream, PacedUpstream, str]:
    """A gateway, two paced upstreams (the original holds its streams), and a provider created
    through the API pointing at the original; returns its id."""
    gw = await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)
    original, replacement = PacedUpstream(hold_at=HOLD_AT), PacedUpstream()
    original.url = await nursery.start(serve_demo_upstream, original)
    replacement.url = await nursery.start(serve_demo_upstream, replacement)
    created = await http.post(
        gw.url + PROVIDERS,
        json={**body, "base_url": original.url + body["base_url"]},
        headers=_auth(gw),
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "enabled"
    return gw, original, replacement, created.json()["id"]


async def _served(probe: Callable[[], Awaitable[httpx2.Response]]) -> float:
    async def answered() -> bool:
        return (await probe()).status_code == 200

    return await _within("the new provider", answered)


async def _change_everything(
    gw: Gateway,
    http: httpx2.AsyncClient,
    provider_id: str,
    replacement: PacedUpstream,
    replacement_base: str,
    probe: Callable[[], Awaitable[httpx2.Response]],
    upstream_key: Callable[[RecordedRequest], str | None],
) -> dict[str, float]:
    """New key and upstream, then disabled, then deleted; each seen by new requests within 1 s.
    Returns how long each took to be seen."""
    took: dict[str, float] = {}
    url = f"{gw.url}{PROVIDERS}/{provider_id}"

    patched = await http.patch(
        url, json={"api_keys": [ROTATED_KEY], "base_url": replacement_base}, headers=_auth(gw)
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["effective_base_url"] == replacement_base

    async def on_replacement() -> bool:
        before = len(replacement.seen)
        answer = await probe()
        arrived = replacement.seen[before:]
        return (
            answer.status_code == 200
            and len(arrived) == 1
            and upstream_key(arrived[0]) == ROTATED_KEY
        )

    took["new key and upstream"] = await _within("the new key and upstream", on_replacement)

    disabled = await http.patch(url, json={"enabled": False}, headers=_auth(gw))
    assert disabled.status_code == 200 and disabled.json()["status"] == "disabled"

    async def refused_as_disabled() -> bool:
        answer = await probe()
        return answer.status_code == 503 and "provider_disabled" in answer.text

    took["disabled"] = await _within("the provider disabled", refused_as_disabled)

    deleted = await http.delete(url, headers=_auth(gw))
    assert deleted.status_code == 204

    async def gone() -> bool:
        return (await probe()).status_code == 404

    took["deleted"] = await _within("the provider deleted", gone)
    return took


async def test_fifty_open_chat_streams_finish_whole_on_the_original_upstream_through_changes(
    nursery: trio.Nursery, http: httpx2.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    gw, original, replacement, provider_id = await _gateway_with_paced_provider(
        nursery,
        http,
        database_url,
        tmp_path,
        {"type": "openai-compat", "name": "paced", "base_url": "/v1", "api_keys": [ORIGINAL_KEY]},
    )
    chat_url = gw.base("paced") + "/v1/chat/completions"

    async def probe() -> httpx2.Response:
        return await http.post(
            chat_url,
            json={"model": "gpt-demo", "messages": [{"role": "user", "content": "probe"}]},
            headers=_auth(gw),
        )

    took = {"created": await _served(probe)}

    def bearer(request: RecordedRequest) -> str | None:
        value = request.header("authorization")
        return value.removeprefix("Bearer ") if value else None

    logs = [StreamLog() for _ in range(STREAMS)]
    all_started = trio.Event()
    started = 0

    async def read_stream(client: openai.AsyncOpenAI, number: int) -> None:
        nonlocal started
        log = logs[number]
        async with client.chat.completions.with_streaming_response.create(
            model="gpt-demo",
            messages=[{"role": "user", "content": f"stream {number}"}],
            stream=True,
        ) as response:
            log.status = response.status_code
            async for line in response.iter_lines():
                if not log.lines:
                    started += 1
                    if started == STREAMS:
                        all_started.set()
                log.lines.append(line)
        log.finished_at = trio.current_time()

    async with (
        openai.AsyncOpenAI(
            base_url=gw.base("paced") + "/v1", api_key=gw.token, max_retries=0
        ) as client,
        trio.open_nursery() as streams,
    ):
        for number in range(STREAMS):
            streams.start_soon(read_stream, client, number)
        with trio.fail_after(10):
            await all_started.wait()
        changes_began = trio.current_time()
        took |= await _change_everything(
            gw, http, provider_id, replacement, replacement.url + "/v1", probe, bearer
        )
        changes_done = trio.current_time()
        assert not any(log.finished_at for log in logs), "a stream ended before the changes"
        original.release.set()

    print(f"seen after: {took}; changes took {changes_done - changes_began:.3f} s")
    for number, log in enumerate(logs):
        _check_chat_stream(number, log)
    streamed = [r for r in original.seen if _is_stream(r)]
    assert sorted(_prompt(r) for r in streamed) == sorted(f"stream {n}" for n in range(STREAMS))
    assert all(bearer(r) == ORIGINAL_KEY for r in streamed)
    assert all(r.path == "/v1/chat/completions" for r in streamed)
    assert not any(_is_stream(r) for r in replacement.seen)
    assert all(bearer(r) == ROTATED_KEY for r in replacement.seen)


def _check_chat_stream(number: int, log: StreamLog) -> None:
    assert log.status == 200
    data = [line.removeprefix("data: ") for line in log.lines if line.startswith("data: ")]
    assert data[-1] == "[DONE]", f"stream {number} did not end with [DONE]"
    assert all(line == "" or line.startswith("data: ") for line in log.lines)
    chunks = [json.loads(item) for item in data[:-1]]
    contents = [
        c["choices"][0]["delta"]["content"]
        for c in chunks
        if c["choices"] and c["choices"][0]["delta"].get("content")
    ]
    expected = list(text_deltas(reply_text(f"stream {number}", after_tool_result=False), DELTAS))
    assert contents == expected, f"stream {number}: deltas differ"
    assert len({c["id"] for c in chunks}) == 1  # one completion, not pieces of several
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] > 0


async def test_fifty_open_messages_streams_finish_whole_on_the_original_upstream_through_changes(
    nursery: trio.Nursery, http: httpx2.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    gw, original, replacement, provider_id = await _gateway_with_paced_provider(
        nursery,
        http,
        database_url,
        tmp_path,
        {"type": "anthropic", "name": "paced-claude", "base_url": "", "api_keys": [ORIGINAL_KEY]},
    )
    messages_url = gw.base("paced-claude") + "/v1/messages"

    async def probe() -> httpx2.Response:
        return await http.post(
            messages_url,
            json={
                "model": "claude-demo",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "probe"}],
            },
            headers={"x-api-key": gw.token, "anthropic-version": "2023-06-01"},
        )

    took = {"created": await _served(probe)}

    def api_key(request: RecordedRequest) -> str | None:
        return request.header("x-api-key")

    received: list[tuple[list[str], list[str], str | None]] = [([], [], None)] * STREAMS
    finished_early = 0
    all_started = trio.Event()
    started = 0

    async def read_stream(client: anthropic.AsyncAnthropic, number: int) -> None:
        nonlocal started, finished_early
        types: list[str] = []
        deltas: list[str] = []
        async with client.messages.stream(
            model="claude-demo",
            max_tokens=256,
            messages=[{"role": "user", "content": f"stream {number}"}],
        ) as stream:
            async for event in stream:
                types.append(event.type)
                if event.type == "message_start":
                    started += 1
                    if started == STREAMS:
                        all_started.set()
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    deltas.append(event.delta.text)
            final = await stream.get_final_message()
        if not original.release.is_set():
            finished_early += 1
        received[number] = (types, deltas, final.stop_reason)

    async with (
        anthropic.AsyncAnthropic(
            base_url=gw.base("paced-claude"), api_key=gw.token, max_retries=0
        ) as client,
        trio.open_nursery() as streams,
    ):
        for number in range(STREAMS):
            streams.start_soon(read_stream, client, number)
        with trio.fail_after(10):
            await all_started.wait()
        took |= await _change_everything(
            gw, http, provider_id, replacement, replacement.url, probe, api_key
        )
        assert finished_early == 0, "a stream ended before the changes"
        original.release.set()

    print(f"seen after: {took}")
    for number, (types, deltas, stop_reason) in enumerate(received):
        expected = list(
            text_deltas(reply_text(f"stream {number}", after_tool_result=False), DELTAS)
        )
        assert deltas == expected, f"stream {number}: deltas differ"
        assert types[0] == "message_start" and types[-1] == "message_stop"
        assert stop_reason == "end_turn"
    streamed = [r for r in original.seen if _is_stream(r)]
    assert sorted(_prompt(r) for r in streamed) == sorted(f"stream {n}" for n in range(STREAMS))
    assert all(api_key(r) == ORIGINAL_KEY for r in streamed)
    assert not any(_is_stream(r) for r in replacement.seen)
    assert all(api_key(r) == ROTATED_KEY for r in replacement.seen)
