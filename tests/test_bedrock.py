"""Bedrock end to end: the official `anthropic` SDK through a whole gateway to a fake Bedrock that
checks every SigV4 signature with botocore's own signer and every translated body.

Expected values come from what the SDK parsed of the answer (the fake's demo model makes them),
never from the code under test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
import trio
from prometheus_client import generate_latest

from aibridged.demo import serve_demo_upstream
from aibridged.providers.bedrock.settings import external_id_for
from aibridged.store import Store, open_store
from tests.fakes_bedrock import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    FakeBedrock,
    FakeSts,
    isolate_aws,
)
from tests.gateway import Gateway, ended_interceptions, start_gateway
from tests.logs import LogWatch, watch_logs

SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
TOOLS = [{"name": "read_file", "input_schema": SCHEMA}]
MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
FAST = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
HI: Any = [{"role": "user", "content": "hi"}]
ROLE = "arn:aws:iam::123456789012:role/bedrock"
ASK = {
    "max_tokens": 4096,
    "messages": [{"role": "user", "content": "Read the config #demo-tool"}],
    "tools": TOOLS,
    "thinking": {"type": "enabled", "budget_tokens": 2048},
}


@pytest.fixture
async def logs() -> AsyncIterator[LogWatch]:
    with watch_logs() as watch:
        yield watch


@pytest.fixture
async def gateway(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> Gateway:
    return await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)


@pytest.fixture
async def bedrock(nursery: trio.Nursery) -> tuple[FakeBedrock, str]:
    fake = FakeBedrock()
    return fake, await nursery.start(serve_demo_upstream, fake)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Store]:
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        yield store


async def _provider(
    api: httpx2.AsyncClient, url: str, name: str = "bedrock", **settings: str
) -> Any:
    settings = {"region": REGION, "model": MODEL, "small_fast_model": FAST, **settings}
    body = {"type": "bedrock", "name": name, "base_url": url, "settings": settings}
    made = await api.post("/api/v2/ai/providers", json=body)
    assert made.status_code == 201, made.text
    return made.json()


def _static(secret: str = SECRET_KEY) -> dict[str, str]:
    return {"access_key": ACCESS_KEY, "access_key_secret": secret}


def _claude(gateway: Gateway, name: str = "bedrock") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=gateway.base(name), api_key=gateway.token, max_retries=0
    )


async def _children(db: Store, table: str, interception_id: Any) -> list[dict[str, Any]]:
    sql = f"SELECT * FROM {table} WHERE interception_id = $1 ORDER BY created_at"
    return [dict(r) for r in await db.run(lambda conn: conn.fetch(sql, interception_id))]


@pytest.mark.parametrize("stream", [False, True])
async def test_the_sdk_gets_messages_with_tool_use_and_thinking_and_the_interception_is_recorded(
    gateway: Gateway,
    api: httpx2.AsyncClient,
    bedrock: tuple[FakeBedrock, str],
    db: Store,
    stream: bool,
) -> None:
    fake, url = bedrock
    await _provider(api, url, **_static())
    async with _claude(gateway) as claude:
        if stream:
            async with claude.messages.stream(model="claude-sonnet-4-5", **ASK) as events:
                message = await events.get_final_message()
        else:
            message = await claude.messages.create(model="claude-sonnet-4-5", **ASK)
    kinds = [block.type for block in message.content]
    assert kinds == ["thinking", "text", "tool_use"] and message.stop_reason == "tool_use"
    tool = message.content[2]
    assert tool.type == "tool_use" and tool.name == "read_file" and tool.input == {"path": "demo"}
    (call,) = fake.invocations
    assert call.api == ("invoke-with-response-stream" if stream else "invoke")
    assert call.model_id == MODEL and call.body["anthropic_version"] == "bedrock-2023-05-31"
    assert "model" not in call.body and "stream" not in call.body and fake.refusals == []
    (row,) = await ended_interceptions(db, 1)
    # Recorded under the model Bedrock was asked for, as Coder's gateway records it.
    assert (row["provider"], row["provider_name"], row["model"]) == ("anthropic", "bedrock", MODEL)
    assert row["credential_kind"] == "centralized" and row["credential_hint"] == "AKIA...0001"
    tokens = await _children(db, "aibridge_token_usages", row["id"])
    assert sum(t["input_tokens"] for t in tokens) == message.usage.input_tokens
    assert sum(t["output_tokens"] for t in tokens) == message.usage.output_tokens > 1
    (used,) = await _children(db, "aibridge_tool_usages", row["id"])
    assert (used["tool"], used["provider_tool_call_id"]) == ("read_file", tool.id)
    (thought,) = await _children(db, "aibridge_model_thoughts", row["id"])
    assert message.content[0].type == "thinking"
    assert thought["content"] == message.content[0].thinking
    (prompt,) = await _children(db, "aibridge_user_prompts", row["id"])
    assert prompt["prompt"] == "Read the config #demo-tool"


async def test_a_stream_cut_at_every_few_bytes_reaches_the_sdk_whole(
    gateway: Gateway, api: httpx2.AsyncClient, bedrock: tuple[FakeBedrock, str]
) -> None:
    fake, url = bedrock
    await _provider(api, url, **_static())
    async with _claude(gateway) as claude:
        whole = await claude.messages.create(model="claude-sonnet-4-5", stream=True, **ASK)
        expected = [event.to_dict() async for event in whole]
        for size in (1, 7, 64):
            fake.fragment_next(size)
            cut = await claude.messages.create(model="claude-sonnet-4-5", stream=True, **ASK)
            got = [event.to_dict() async for event in cut]
            assert _without_ids(got) == _without_ids(expected), size


def _without_ids(events: list[dict[str, Any]]) -> list[Any]:
    """The events with the per-answer ids (message, tool call) blanked."""
    out = []
    for event in events:
        text = repr(event)
        for key in ("msg_demo", "toolu_demo"):
            while key in text:
                at = text.index(key)
                text = text[:at] + "ID" + text[at + len(key) + 6 :]
        out.append(text)
    return out


async def test_haiku_goes_to_the_small_fast_model_and_betas_are_filtered(
    gateway: Gateway, api: httpx2.AsyncClient, bedrock: tuple[FakeBedrock, str]
) -> None:
    fake, url = bedrock
    await _provider(api, url, **_static())
    betas = "interleaved-thinking-2025-05-14,files-api-2025-04-14, context-management-2025-06-27"
    async with _claude(gateway) as claude:
        await claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
            metadata={"user_id": "u1"},
            extra_headers={"anthropic-beta": betas},
            extra_body={"context_management": {"edits": []}, "output_config": {"effort": "low"}},
        )
    (call,) = fake.invocations
    assert call.model_id == FAST
    assert call.body["anthropic_beta"] == [
        "interleaved-thinking-2025-05-14",
        "context-management-2025-06-27",
    ]
    assert call.body["context_management"] == {"edits": []} and "metadata" not in call.body
    assert "output_config" not in call.body  # its beta (effort) is Opus 4.5's only
    assert not any(name.startswith("anthropic-") for name, _ in call.headers)


async def test_an_inference_profile_arn_is_one_signed_path_segment(
    gateway: Gateway, api: httpx2.AsyncClient, bedrock: tuple[FakeBedrock, str]
) -> None:
    fake, url = bedrock
    profile = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3"
    await _provider(api, url, **_static(), model=profile)
    async with _claude(gateway) as claude:
        await claude.messages.create(model="claude-opus-4-1", max_tokens=64, messages=HI)
    (call,) = fake.invocations
    assert call.model_id == profile and fake.refusals == []
    ready = (await api.get("/readyz")).json()["aws_credentials"]
    assert ready == {"providers": 1, "resolved": 1, "failures": 0}
    assert fake.requests[-1].raw_path == (
        "/model/arn:aws:bedrock:us-east-1:123456789012:application-inference-profile%2Fa1b2c3/invoke"
    )


async def test_a_wrong_secret_gets_bedrocks_403_as_an_anthropic_permission_error(
    gateway: Gateway, api: httpx2.AsyncClient, bedrock: tuple[FakeBedrock, str]
) -> None:
    fake, url = bedrock
    await _provider(api, url, **_static(secret="not-the-secret"))
    async with _claude(gateway) as claude:
        with pytest.raises(anthropic.PermissionDeniedError, match="signature we calculated"):
            await claude.messages.create(model="claude-sonnet-4-5", **ASK)
    assert fake.refusals == ["InvalidSignatureException"] and fake.invocations == []


@pytest.mark.parametrize(
    ("status", "name", "raised"),
    [
        (429, "ThrottlingException", anthropic.RateLimitError),
        (400, "ValidationException", anthropic.BadRequestError),
        (503, "ServiceUnavailableException", anthropic.InternalServerError),
        (424, "ModelErrorException", anthropic.InternalServerError),
    ],
)
async def test_bedrock_errors_reach_the_sdk_as_its_own(
    gateway: Gateway,
    api: httpx2.AsyncClient,
    bedrock: tuple[FakeBedrock, str],
    status: int,
    name: str,
    raised: type[Exception],
) -> None:
    fake, url = bedrock
    await _provider(api, url, **_static())
    headers = [("content-type", "application/json"), ("x-amzn-errortype", f"{name}:http://x/")]
    fake.fail_next(status, b'{"message":"Bedrock says no"}', headers)
    async with _claude(gateway) as claude:
        with pytest.raises(raised, match="Bedrock says no") as caught:
            await claude.messages.create(model="claude-sonnet-4-5", **ASK)
    body: Any = caught.value.body  # type: ignore[attr-defined]
    assert body["type"] == "error" and body["error"]["message"] == "Bedrock says no"


async def test_an_exception_mid_stream_becomes_an_anthropic_error_event(
    gateway: Gateway, api: httpx2.AsyncClient, bedrock: tuple[FakeBedrock, str]
) -> None:
    fake, url = bedrock
    await _provider(api, url, **_static())
    fake.exception_next(3, "throttlingException", "Too many tokens, please wait")
    async with _claude(gateway) as claude:
        stream = await claude.messages.create(model="claude-sonnet-4-5", stream=True, **ASK)
        seen = []
        with pytest.raises(anthropic.APIStatusError, match="Too many tokens") as caught:
            async for event in stream:
                seen.append(event.type)
    assert seen == ["message_start", "content_block_start", "content_block_delta"]
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


async def test_mantle_forwards_the_native_body_and_relays_its_sse(
    gateway: Gateway, api: httpx2.AsyncClient, bedrock: tuple[FakeBedrock, str], db: Store
) -> None:
    fake, url = bedrock
    await _provider(api, url + "/anthropic", protocol="mantle", **_static())
    async with _claude(gateway) as claude:
        async with claude.messages.stream(model="claude-sonnet-4-5", **ASK) as events:
            message = await events.get_final_message()
        counted = await claude.messages.count_tokens(model="claude-sonnet-4-5", messages=HI)
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert message.model == "claude-sonnet-4-5" and counted.input_tokens > 0
    (call,) = fake.invocations
    assert call.api == "mantle" and call.body["model"] == "claude-sonnet-4-5"
    assert call.body["stream"] is True and fake.refusals == []
    assert dict(call.headers)["anthropic-version"]  # native: the client's headers go along
    (row,) = await ended_interceptions(db, 1)  # count_tokens is passed through, not recorded
    assert row["model"] == "claude-sonnet-4-5"
    tokens = await _children(db, "aibridge_token_usages", row["id"])
    assert sum(t["output_tokens"] for t in tokens) == message.usage.output_tokens


async def test_invoke_model_has_no_count_tokens(
    gateway: Gateway, api: httpx2.AsyncClient, bedrock: tuple[FakeBedrock, str]
) -> None:
    _, url = bedrock
    await _provider(api, url, **_static())
    async with _claude(gateway) as claude:
        with pytest.raises(anthropic.NotFoundError, match="mantle"):
            await claude.messages.count_tokens(model="claude-sonnet-4-5", messages=HI)


async def test_the_default_chain_reads_the_environment(
    gateway: Gateway,
    api: httpx2.AsyncClient,
    bedrock: tuple[FakeBedrock, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    isolate_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    fake, url = bedrock
    await _provider(api, url)
    async with _claude(gateway) as claude:
        message = await claude.messages.create(model="claude-sonnet-4-5", **ASK)
    assert message.stop_reason == "tool_use" and len(fake.invocations) == 1


async def test_no_credentials_anywhere_answers_503_without_calling_bedrock(
    gateway: Gateway,
    api: httpx2.AsyncClient,
    bedrock: tuple[FakeBedrock, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    isolate_aws(monkeypatch, tmp_path)
    fake, url = bedrock
    await _provider(api, url)
    async with _claude(gateway) as claude:
        with pytest.raises(anthropic.InternalServerError, match="not available") as caught:
            await claude.messages.create(model="claude-sonnet-4-5", **ASK)
    assert caught.value.status_code == 503 and len(fake.requests) == 0
    ready = (await api.get("/readyz")).json()["aws_credentials"]
    assert ready["providers"] == 1 and ready["resolved"] == 0 and ready["failures"] >= 1


async def test_a_role_is_assumed_with_the_providers_external_id(
    logs: LogWatch,
    nursery: trio.Nursery,
    gateway: Gateway,
    api: httpx2.AsyncClient,
    bedrock: tuple[FakeBedrock, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    isolate_aws(monkeypatch, tmp_path)
    fake, url = bedrock
    sts = FakeSts(fake.keys)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", await nursery.start(serve_demo_upstream, sts))
    created = await _provider(api, url, name="assumed", role_arn=ROLE, **_static())
    async with _claude(gateway, "assumed") as claude:
        message = await claude.messages.create(model="claude-sonnet-4-5", **ASK)
    assert message.stop_reason == "tool_use"
    (first,) = sts.calls
    assert (first.role_arn, first.session_name) == (ROLE, "aibridged-assumed")
    assert (
        first.external_id
        == external_id_for(uuid.UUID(created["id"]))
        == (f"aibridged-{created['id']}")
    )
    assert first.base_access_key == ACCESS_KEY
    (call,) = fake.invocations
    signed_with = dict(call.headers)["authorization"].split("Credential=")[1][:4]
    assert signed_with == "ASIA" and "x-amz-security-token" in dict(call.headers)
    shown = [
        repr(logs.entries),
        generate_latest(gateway.registry).decode(),
        repr(created),
        (await api.get("/api/v2/ai/providers/assumed")).text,
    ]
    secrets = list(fake.keys.known)  # access key ids, the static one and those STS issued
    for secret, token in fake.keys.known.values():
        secrets += [secret] + ([token] if token else [])
    assert len(secrets) == 5
    for secret in secrets:
        assert secret not in "\n".join(shown)
    assert logs.matching("bedrock.credentials_resolved", provider="assumed")


async def test_a_role_the_gateway_may_not_assume_answers_503(
    nursery: trio.Nursery,
    gateway: Gateway,
    api: httpx2.AsyncClient,
    bedrock: tuple[FakeBedrock, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    isolate_aws(monkeypatch, tmp_path)
    fake, url = bedrock
    sts = FakeSts(fake.keys, external_id="aibridged-some-other-provider")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", await nursery.start(serve_demo_upstream, sts))
    await _provider(api, url, name="assumed", role_arn=ROLE, **_static())
    async with _claude(gateway, "assumed") as claude:
        with pytest.raises(anthropic.InternalServerError, match="not available"):
            await claude.messages.create(model="claude-sonnet-4-5", **ASK)
    assert len(sts.calls) == 1 and len(fake.requests) == 0
