"""API dumps end to end: the official SDKs through a whole gateway, then the dump files are read.

What a dump must hold is taken from the other side of the wire, never from the code under test:
the request body the fake upstream received, the response bytes the client read.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from functools import partial
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest
import trio

import aibridged.startup
from aibridged.dump import DumpWriter
from tests.fakes import FakeUpstream
from tests.gateway import ANTHROPIC_KEY, OPENAI_KEY, Gateway, start_gateway

MESSAGES = [{"role": "user", "content": "Write a haiku about gateways"}]
USER_KEY = "sk-ant-user-personal-0123456789abcdef"
UNREACHABLE = """
[[providers]]
type = "openai-compat"
name = "nowhere"
base_url = "http://127.0.0.1:1/v1"
key_env = "TEST_OPENAI_KEY"
"""


@pytest.fixture
def dump_dir(tmp_path: Path) -> Path:
    return tmp_path / "dumps"


@pytest.fixture
async def gateway(
    nursery: trio.Nursery, database_url: str, tmp_path: Path, dump_dir: Path
) -> Gateway:
    (tmp_path / "state").mkdir()
    return await start_gateway(
        nursery,
        database_url=database_url,
        state_dir=tmp_path / "state",
        flags={"ai_gateway.api_dump_dir": str(dump_dir)},
        extra_toml=UNREACHABLE,
    )


def _files(root: Path) -> list[Path]:
    """The files under `root` (none when it does not exist)."""
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def _outside(tmp_path: Path, dump_dir: Path) -> set[Path]:
    return {p for p in tmp_path.rglob("*") if not p.is_relative_to(dump_dir)}


def _metric(gw: Gateway, name: str, **labels: str) -> float:
    return gw.registry.get_sample_value(name, labels) or 0.0


async def _dumped(gw: Gateway, root: Path, count: int, limit_s: float = 5.0) -> list[Path]:
    """The dump files once `count` exist and nothing is left in the queue (the writer is behind
    the request by design)."""
    deadline = time.monotonic() + limit_s
    while True:
        files = _files(root)
        if len(files) >= count and _metric(gw, "coder_aibridged_dump_queue_bytes") == 0:
            return files
        assert time.monotonic() < deadline, f"only {files} after {limit_s}s"
        await trio.sleep(0.01)


def _split(path: Path) -> tuple[str, dict[str, str], bytes]:
    """(start line, headers, body) of an HTTP-style dump file."""
    head, _, body = path.read_bytes().partition(b"\r\n\r\n")
    start, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return start, headers, body


def _pair(files: list[Path]) -> tuple[Path, Path]:
    (request,) = [f for f in files if f.name.endswith(".req.txt")]
    (response,) = [f for f in files if f.name.endswith(".resp.txt")]
    return request, response


async def test_a_streamed_chat_completion_is_dumped_as_sent_and_as_it_arrived(
    gateway: Gateway, dump_dir: Path
) -> None:
    async with (
        httpx2.AsyncClient() as http,
        http.stream(
            "POST",
            gateway.base("openai") + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {gateway.token}"},
            json={"model": "gpt-demo", "messages": MESSAGES, "stream": True},
        ) as answer,
    ):
        assert answer.status_code == 200
        received = b"".join([chunk async for chunk in answer.aiter_raw()])
    request, response = _pair(await _dumped(gateway, dump_dir, 2))
    assert request.parent == dump_dir / "openai" / "gpt-demo"
    unix_ms, _, interception_id = request.name.removesuffix(".req.txt").partition("-")
    assert abs(int(unix_ms) / 1000 - time.time()) < 60 and len(interception_id) == 36
    assert response.name == request.name.replace(".req.txt", ".resp.txt")

    start, headers, body = _split(request)
    sent = gateway.upstream.requests[-1]
    assert start == f"POST {sent.raw_path} HTTP/1.1"
    assert headers["Authorization"] == "Bearer sk-u...6789"
    assert headers["Host"] == sent.header("host")
    assert headers["Content-Length"] == str(len(body))
    assert list(headers) == sorted(headers)
    assert json.loads(body) == json.loads(sent.body)  # the body as the upstream got it
    assert body.startswith(b'{\n  "model": "gpt-demo"')  # pretty-printed, key order kept
    text = request.read_text() + response.read_text()
    assert OPENAI_KEY not in text and gateway.token not in text

    start, headers, body = _split(response)
    assert start == "HTTP/1.1 200 OK"
    assert headers["Content-Type"].startswith("text/event-stream")
    assert body == received  # the stream, byte for byte
    assert body.rstrip().endswith(b"data: [DONE]")


async def test_a_blocking_message_through_the_sdk_is_dumped_with_the_key_masked(
    gateway: Gateway, dump_dir: Path, claude: anthropic.AsyncAnthropic
) -> None:
    raw = await claude.messages.with_raw_response.create(
        model="claude-demo", max_tokens=64, messages=MESSAGES
    )
    message = await raw.parse()
    request, response = _pair(await _dumped(gateway, dump_dir, 2))
    assert request.parent == dump_dir / "anthropic" / "claude-demo"
    _, headers, body = _split(request)
    assert headers["X-Api-Key"] == "sk-a...6789"
    assert "Authorization" not in headers  # the gateway token never went upstream
    assert json.loads(body) == json.loads(gateway.upstream.requests[-1].body)
    text = request.read_text() + response.read_text()
    assert ANTHROPIC_KEY not in text and gateway.token not in text

    start, headers, body = _split(response)
    assert start == "HTTP/1.1 200 OK"
    assert body == raw.http_response.content
    assert json.loads(body)["id"] == message.id


async def test_a_streamed_message_through_the_sdk_is_dumped_event_by_event(
    gateway: Gateway, dump_dir: Path, claude: anthropic.AsyncAnthropic
) -> None:
    async with claude.messages.stream(
        model="claude-demo", max_tokens=64, messages=MESSAGES
    ) as stream:
        text = await stream.get_final_text()
    _, response = _pair(await _dumped(gateway, dump_dir, 2))
    _, _, body = _split(response)
    assert b"event: message_start" in body and body.rstrip().endswith(b"}")
    deltas = [
        json.loads(line[len(b"data: ") :])["delta"]
        for line in body.splitlines()
        if line.startswith(b"data: ") and b'"text_delta"' in line
    ]
    assert "".join(d["text"] for d in deltas) == text


async def test_a_users_own_key_is_masked_in_the_dump(gateway: Gateway, dump_dir: Path) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.base("anthropic"),
        api_key=USER_KEY,
        default_headers={"X-Coder-AI-Governance-Token": gateway.token},
        max_retries=0,
    ) as byok:
        await byok.messages.create(model="claude-demo", max_tokens=64, messages=MESSAGES)
    sent = gateway.upstream.requests[-1]
    went_up = f"{sent.header('x-api-key')} {sent.header('authorization')}"
    assert USER_KEY in went_up  # BYOK: the user's own key went upstream
    request, response = _pair(await _dumped(gateway, dump_dir, 2))
    _, headers, _ = _split(request)
    assert headers.get("X-Api-Key", headers.get("Authorization")) in (
        "sk-a...cdef",
        "Bearer sk-a...cdef",
    )
    text = request.read_text() + response.read_text()
    assert USER_KEY not in text and gateway.token not in text


async def test_an_upstream_that_cannot_be_reached_leaves_a_req_error_dump(
    gateway: Gateway, dump_dir: Path
) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway.base("nowhere") + "/v1", api_key=gateway.token, max_retries=0
    ) as client:
        with pytest.raises(openai.APIStatusError) as failed:
            await client.chat.completions.create(model="gpt-demo", messages=MESSAGES)
    assert failed.value.status_code == 502
    files = await _dumped(gateway, dump_dir, 2)
    assert [f.name.split(".", 1)[1] for f in files] == ["req.txt", "req_error.txt"]
    error = files[1].read_text()
    assert error.startswith("upstream connection failed") and "127.0.0.1:1" in error
    assert error.endswith("\n")


async def test_a_passthrough_request_is_dumped_under_passthrough(
    gateway: Gateway, dump_dir: Path, oai: openai.AsyncOpenAI
) -> None:
    models = await oai.models.list()
    request, response = _pair(await _dumped(gateway, dump_dir, 2))
    assert request.parent == dump_dir / "openai" / "passthrough"
    unix_ms, name = request.name.split("-", 1)
    assert unix_ms.isdigit() and name.startswith("v1-models-")
    start, headers, body = _split(request)
    assert start == "GET /v1/models HTTP/1.1" and body == b""
    assert headers["Authorization"] == "Bearer sk-u...6789"
    assert [m["id"] for m in json.loads(_split(response)[2])["data"]] == [m.id for m in models.data]


@pytest.mark.parametrize("model", ["../../etc/x", "a\x00b/../c", "/abs/olute", "..", "." * 300])
async def test_a_model_name_never_takes_a_dump_outside_the_dump_dir(
    gateway: Gateway, dump_dir: Path, tmp_path: Path, model: str
) -> None:
    before = _outside(tmp_path, dump_dir)
    async with httpx2.AsyncClient() as http:
        answer = await http.post(
            gateway.base("openai") + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {gateway.token}"},
            json={"model": model, "messages": MESSAGES},
        )
    assert answer.status_code == 200
    request, _ = _pair(await _dumped(gateway, dump_dir, 2))
    folder = request.parent
    assert folder.parent == dump_dir / "openai"
    assert folder.resolve().parent == (dump_dir / "openai").resolve()
    assert "\x00" not in folder.name and folder.name not in (".", "..")
    assert len(folder.name) <= 120
    assert json.loads(_split(request)[2])["model"] == model  # the body is as sent
    created = _outside(tmp_path, dump_dir) - before
    assert {p for p in created if "state" not in p.parts} == set()


def _private(path: Path) -> int:
    return path.stat().st_mode & 0o777


async def test_dump_files_are_0600_and_their_directories_0700(
    gateway: Gateway, dump_dir: Path, oai: openai.AsyncOpenAI
) -> None:
    await oai.chat.completions.create(model="gpt-demo", messages=MESSAGES)
    request, response = _pair(await _dumped(gateway, dump_dir, 2))
    assert _private(request) == _private(response) == 0o600
    assert _private(dump_dir) == _private(dump_dir / "openai") == _private(request.parent) == 0o700


def _make_writable(root: Path) -> None:
    root.chmod(0o700)


def _make_unwritable(root: Path) -> None:
    """A dump directory nothing can be written to. As root, permissions do not stop writes: a
    file then stands where the provider's directory must go (the writer fails the same way)."""
    if os.geteuid() == 0:
        (root / "openai").write_text("not a directory")
        (root / "anthropic").write_text("not a directory")
    else:
        root.chmod(0o500)


async def test_an_unwritable_dump_dir_never_fails_a_request_and_is_counted(
    gateway: Gateway, dump_dir: Path, oai: openai.AsyncOpenAI
) -> None:
    _make_unwritable(dump_dir)
    try:
        for _ in range(3):
            reply = await oai.chat.completions.create(model="gpt-demo", messages=MESSAGES)
            assert reply.choices[0].message.content
        stream = await oai.chat.completions.create(model="gpt-demo", messages=MESSAGES, stream=True)
        assert [chunk async for chunk in stream]
        deadline = time.monotonic() + 5
        while _metric(gateway, "coder_aibridged_dump_write_errors_total") < 4:
            assert time.monotonic() < deadline
            await trio.sleep(0.01)
    finally:
        _make_writable(dump_dir)
    assert _files(dump_dir) in ([], [dump_dir / "anthropic", dump_dir / "openai"])


async def test_a_full_dump_queue_never_fails_a_request_and_counts_the_drops(
    nursery: trio.Nursery,
    database_url: str,
    tmp_path: Path,
    dump_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A queue that holds nothing: every piece meets a full queue (as behind a stalled disk).
    monkeypatch.setattr(aibridged.startup, "DumpWriter", partial(DumpWriter, queue_bytes=0))
    (tmp_path / "state").mkdir()
    gw = await start_gateway(
        nursery,
        database_url=database_url,
        state_dir=tmp_path / "state",
        flags={"ai_gateway.api_dump_dir": str(dump_dir)},
    )
    async with openai.AsyncOpenAI(
        base_url=gw.base("openai") + "/v1", api_key=gw.token, max_retries=0
    ) as client:
        reply = await client.chat.completions.create(model="gpt-demo", messages=MESSAGES)
        stream = await client.chat.completions.create(
            model="gpt-demo", messages=MESSAGES, stream=True
        )
        chunks = [chunk async for chunk in stream]
    assert reply.choices[0].message.content and chunks
    # Each file lost its first piece, and took nothing after it: 2 files for each of 2 requests.
    assert _metric(gw, "coder_aibridged_dumps_dropped_total", reason="queue_full") == 4
    assert _files(dump_dir) == []


async def test_a_stream_open_at_sigterm_is_dumped_to_its_last_chunk_before_the_exit(
    nursery: trio.Nursery, database_url: str, tmp_path: Path, dump_dir: Path
) -> None:
    upstream = FakeUpstream()
    upstream.hold_stream_open(interval_s=0.05)
    (tmp_path / "state").mkdir()
    gw = await start_gateway(
        nursery,
        database_url=database_url,
        state_dir=tmp_path / "state",
        upstream=upstream,
        handle_signals=True,
        flags={"ai_gateway.api_dump_dir": str(dump_dir), "server.shutdown_grace": "1s"},
    )
    received = bytearray()

    async def read_until_cut(task_status: trio.TaskStatus[None]) -> None:
        async with (
            httpx2.AsyncClient(timeout=10) as http,
            http.stream(
                "POST",
                gw.base("anthropic") + "/v1/messages",
                json={
                    "model": "claude-demo",
                    "max_tokens": 64,
                    "messages": MESSAGES,
                    "stream": True,
                },
                headers={"x-api-key": gw.token},
            ) as answer,
        ):
            task_status.started()
            with contextlib.suppress(httpx2.TransportError):
                async for chunk in answer.aiter_raw():
                    received.extend(chunk)

    await nursery.start(read_until_cut)
    os.kill(os.getpid(), signal.SIGTERM)
    with trio.fail_after(10):
        await gw.stopped.wait()  # the dump writer drained before the daemon returned
    _, response = _pair(_files(dump_dir))
    body = _split(response)[2]
    assert received.count(b"event: content_block_delta") >= 5
    # Every byte the client got, to the cut; at most the one event read from the upstream just
    # as the cut came can be in the dump and not at the client.
    assert body.startswith(bytes(received))
    assert body.count(b"\n\n") - received.count(b"\n\n") <= 1


async def test_each_attempt_of_a_key_failover_has_its_own_dump(
    gateway: Gateway, dump_dir: Path
) -> None:
    keys = ["sk-first-key-of-the-pool-0123456789", "sk-second-key-of-the-pool-9876543210"]
    headers = {"authorization": f"Bearer {gateway.token}"}
    async with httpx2.AsyncClient(base_url=gateway.url, headers=headers, timeout=10) as api:
        created = await api.post(
            "/api/v2/ai/providers",
            json={
                "type": "openai-compat",
                "name": "pool",
                "base_url": gateway.upstream_url + "/v1",
                "api_keys": keys,
            },
        )
        assert created.status_code == 201
        for _ in range(250):  # served within a second (NOTIFY, then a reload)
            if (await api.get("/api/v2/aibridge/pool/v1/models")).status_code != 404:
                break
            await trio.sleep(0.02)
        gateway.upstream.fail_next(429, headers=[("retry-after", "30")])
        answer = await api.post(
            "/api/v2/aibridge/pool/v1/chat/completions",
            json={"model": "gpt-demo", "messages": MESSAGES},
        )
    assert answer.status_code == 200
    files = await _dumped(gateway, dump_dir / "pool" / "gpt-demo", 4)
    first, second = sorted(f for f in files if f.name.endswith(".req.txt"))
    assert first.name.split("-", 1)[1] == second.name.split("-", 1)[1]  # one interception
    assert int(first.name.split("-")[0]) < int(second.name.split("-")[0])
    assert _split(first)[1]["Authorization"] == "Bearer sk-f...6789"
    assert _split(second)[1]["Authorization"] == "Bearer sk-s...3210"
    responses = [f.with_name(f.name.replace(".req.", ".resp.")) for f in (first, second)]
    assert [_split(r)[0] for r in responses] == [
        "HTTP/1.1 429 Too Many Requests",
        "HTTP/1.1 200 OK",
    ]
    text = "".join(f.read_text() for f in files)
    assert keys[0] not in text and keys[1] not in text
