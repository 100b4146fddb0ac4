"""Bedrock's translations alone: the InvokeModel body, the settings a provider needs, AWS errors in
Anthropic's shapes, and the event stream decoded into SSE however its bytes are cut."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from aibridged.errors import UpstreamProtocolError
from aibridged.intercept.client import RelayOutcome
from aibridged.intercept.relay import RelayPlan, relay_response
from aibridged.intercept.sse import SSEEvent, SSEParser
from aibridged.intercept.wire import WireFormat
from aibridged.providers.bedrock.body import beta_flags, invoke_model_request
from aibridged.providers.bedrock.errors import shape_error
from aibridged.providers.bedrock.settings import bedrock_settings
from aibridged.providers.bedrock.stream import EventStreamTranscoder
from aibridged.providers.pool import build_provider
from tests.canned import open_canned
from tests.fakes_bedrock import chunk_frame, exception_frame

SONNET = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
OPUS_45 = "us.anthropic.claude-opus-4-5-20251101-v1:0"
OPUS_46 = "us.anthropic.claude-opus-4-6-v1"
HAIKU = "global.anthropic.claude-haiku-4-5-20251001-v1:0"
ID = uuid.UUID(int=7)


def _settings(model: str = SONNET, **more: str) -> Any:
    return bedrock_settings(
        ID, "", {"region": "us-east-1", "model": model, "small_fast_model": HAIKU, **more}, {}
    )


def _translate(body: dict[str, Any], betas: str = "", model: str = SONNET) -> Any:
    flags = beta_flags([betas.encode()] if betas else [])
    translated = invoke_model_request(body, flags, _settings(model))
    return translated.model_id, translated.stream, json.loads(translated.body)


BASE = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 10000,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.mark.parametrize(
    ("requested", "model_id"),
    [
        ("claude-3-5-haiku-latest", HAIKU),
        ("claude-haiku-4-5", HAIKU),
        ("claude-opus-4-1", SONNET),
        ("claude-sonnet-4-5", SONNET),
        ("", SONNET),
    ],
)
def test_a_haiku_model_maps_to_the_small_fast_model_any_other_to_the_model(
    requested: str, model_id: str
) -> None:
    assert _translate({**BASE, "model": requested})[0] == model_id


def test_the_body_loses_model_stream_and_the_fields_bedrock_refuses() -> None:
    body = {
        **BASE,
        "stream": True,
        "metadata": {"user_id": "u"},
        "service_tier": "auto",
        "container": "c",
        "inference_geo": "us",
        "temperature": 0.5,
    }
    model_id, stream, out = _translate(body)
    assert (model_id, stream) == (SONNET, True)
    assert out == {
        "max_tokens": 10000,
        "messages": BASE["messages"],
        "temperature": 0.5,
        "anthropic_version": "bedrock-2023-05-31",
    }


def test_beta_flags_keep_bedrocks_allow_list_in_the_clients_order() -> None:
    betas = (
        "oauth-2025-04-20, interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
    )
    flags = beta_flags(
        [betas.encode(), b"context-1m-2025-08-07", b"interleaved-thinking-2025-05-14"]
    )
    out = invoke_model_request(BASE, flags, _settings()).body
    assert json.loads(out)["anthropic_beta"] == [
        "interleaved-thinking-2025-05-14",
        "context-1m-2025-08-07",
    ]
    assert "anthropic_beta" not in _translate(BASE, "oauth-2025-04-20")[2]


@pytest.mark.parametrize(
    ("model", "keeps_effort", "keeps_context_management"),
    [(OPUS_45, True, False), (SONNET, False, True), (HAIKU, False, True), (OPUS_46, False, False)],
)
def test_model_gated_betas_and_the_fields_they_enable(
    model: str, keeps_effort: bool, keeps_context_management: bool
) -> None:
    body = {**BASE, "output_config": {"effort": "high"}, "context_management": {"edits": []}}
    betas = "effort-2025-11-24,context-management-2025-06-27"
    _, _, out = _translate(body, betas, model)
    assert ("output_config" in out) is keeps_effort
    assert ("context_management" in out) is keeps_context_management
    kept = ["effort-2025-11-24"] * keeps_effort + [
        "context-management-2025-06-27"
    ] * keeps_context_management
    assert out.get("anthropic_beta", []) == kept
    # Without the betas the fields go whatever the model.
    _, _, bare = _translate(body, "", model)
    assert "output_config" not in bare and "context_management" not in bare


@pytest.mark.parametrize(
    ("effort", "budget"),
    [("low", 2000), ("medium", 5000), ("high", 8000), ("max", 9500), (None, 8000), ("odd", 8000)],
)
def test_adaptive_thinking_becomes_enabled_with_a_budget_by_effort(
    effort: str | None, budget: int
) -> None:
    body: dict[str, Any] = {**BASE, "thinking": {"type": "adaptive"}}
    if effort is not None:
        body["output_config"] = {"effort": effort}
    assert _translate(body)[2]["thinking"] == {"type": "enabled", "budget_tokens": budget}


def test_adaptive_thinking_with_too_small_a_budget_is_disabled() -> None:
    body = {
        **BASE,
        "max_tokens": 2000,
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "low"},
    }  # 400 tokens < 1024
    assert _translate(body)[2]["thinking"] == {"type": "disabled"}
    body["max_tokens"] = 5120  # 0.2 * 5120 = 1024: just enough
    assert _translate(body)[2]["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_models_that_think_adaptively_keep_adaptive_thinking() -> None:
    body = {**BASE, "thinking": {"type": "adaptive"}}
    assert _translate(body, model=OPUS_46)[2]["thinking"] == {"type": "adaptive"}
    enabled = {**BASE, "thinking": {"type": "enabled", "budget_tokens": 3000}}
    assert _translate(enabled)[2]["thinking"] == enabled["thinking"]


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "secrets", "reason"),
    [
        ({"region": "us-east-1"}, {"access_key": "AKIA0123456789"}, "need both"),
        ({"region": "us-east-1"}, {"access_key_secret": "s3cr3t-value"}, "need both"),
        ({}, {}, "needs a region"),
        ({"region": "us-east-1", "role_arn": "arn:aws:s3:::bucket"}, {}, "not an IAM role ARN"),
        ({"region": "us-east-1", "model": ".."}, {}, "not a Bedrock model id"),
    ],
)
def test_settings_that_cannot_work_put_the_provider_in_error(
    settings: dict[str, str], secrets: dict[str, str], reason: str
) -> None:
    provider = build_provider(
        name="br", type_name="bedrock", base_url="", keys=(), settings=settings, secrets=secrets
    )
    assert provider.status == "error" and reason in provider.error
    assert "s3cr3t" not in provider.error and "AKIA0123456789" not in provider.error


def test_the_region_comes_from_the_endpoint_when_not_set() -> None:
    provider = build_provider(
        name="br",
        type_name="bedrock",
        keys=(),
        base_url="https://bedrock-runtime.eu-west-3.amazonaws.com",
    )
    assert provider.status == "enabled"
    assert bedrock_settings(ID, provider.base_url, {}, {}).region == "eu-west-3"
    mantle = build_provider(
        name="br",
        type_name="bedrock",
        base_url="",
        keys=(),
        settings={"region": "ap-south-1", "protocol": "mantle"},
    )
    assert mantle.base_url == "https://bedrock-mantle.ap-south-1.api.aws/anthropic"
    runtime = build_provider(
        name="br", type_name="bedrock", base_url="", keys=(), settings={"region": "ap-south-1"}
    )
    assert runtime.base_url == "https://bedrock-runtime.ap-south-1.amazonaws.com"


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "client_status", "error_type"),
    [
        (400, "ValidationException", 400, "invalid_request_error"),
        (403, "AccessDeniedException", 403, "permission_error"),
        (403, "UnrecognizedClientException", 403, "permission_error"),
        (404, "ResourceNotFoundException", 404, "not_found_error"),
        (429, "ThrottlingException", 429, "rate_limit_error"),
        (400, "ServiceQuotaExceededException", 429, "rate_limit_error"),
        (408, "ModelTimeoutException", 504, "timeout_error"),
        (424, "ModelErrorException", 500, "api_error"),
        (500, "InternalServerException", 500, "api_error"),
        (503, "ServiceUnavailableException", 503, "overloaded_error"),
        (502, "SomethingNewException", 502, "api_error"),
    ],
)
def test_bedrock_errors_get_anthropics_status_and_type(
    status: int, name: str, client_status: int, error_type: str
) -> None:
    headers = [(b"x-amzn-errortype", f"{name}:http://internal.amazon.com/coral/".encode())]
    got, body = shape_error(status, b'{"message":"it went wrong"}', headers)
    assert got == client_status
    assert json.loads(body) == {
        "type": "error",
        "error": {"type": error_type, "message": "it went wrong"},
    }


def test_error_bodies_without_the_header_or_json_still_get_the_shape() -> None:
    typed = b'{"__type":"com.amazon.coral#ThrottlingException","Message":"slow down"}'
    assert shape_error(400, typed, []) == (
        429,
        shape_error(
            429, b'{"message":"slow down"}', [(b"x-amzn-errortype", b"ThrottlingException")]
        )[1],
    )
    status, body = shape_error(502, b"<html>bad gateway</html>", [])
    assert status == 502 and json.loads(body)["error"]["message"] == "<html>bad gateway</html>"
    native = b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}'
    assert shape_error(529, native, []) == (529, native)  # Mantle's own: kept


# --- the event stream ---------------------------------------------------------------------------

EVENTS: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "content": [],
            "usage": {"input_tokens": 12, "output_tokens": 1},
        },
    },
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": ""},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "Let me think — 🤔"},
    },
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
    {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 12}},
]
STREAM = b"".join(chunk_frame(event) for event in EVENTS)


def _decoded(pieces: list[bytes]) -> list[Any]:
    transcoder = EventStreamTranscoder()
    events = [e for piece in pieces for e in transcoder.feed(piece)] + transcoder.finish()
    return [(e.event, json.loads(e.data)) for e in events]


def test_the_event_stream_decodes_to_the_same_events_at_every_byte_cut() -> None:
    expected = [(event["type"], event) for event in EVENTS]
    for at in range(len(STREAM) + 1):
        assert _decoded([STREAM[:at], STREAM[at:]]) == expected, at
    assert _decoded([STREAM[i : i + 1] for i in range(len(STREAM))]) == expected


def test_events_come_out_as_soon_as_their_message_is_whole() -> None:
    first = chunk_frame(EVENTS[0])
    transcoder = EventStreamTranscoder()
    assert transcoder.feed(first[:-1]) == []
    assert [e.event for e in transcoder.feed(first[-1:] + STREAM[len(first) : len(first) + 5])] == [
        "message_start"
    ]


def test_an_exception_message_becomes_an_anthropic_error_event() -> None:
    frames = chunk_frame(EVENTS[0]) + exception_frame("throttlingException", "Too many requests")
    assert _decoded([frames])[1] == (
        "error",
        {"type": "error", "error": {"type": "rate_limit_error", "message": "Too many requests"}},
    )


def test_a_corrupt_or_cut_stream_is_a_protocol_error() -> None:
    corrupt = bytearray(STREAM)
    corrupt[30] ^= 0xFF  # inside the first message: its checksum no longer matches
    with pytest.raises(UpstreamProtocolError, match="malformed"):
        EventStreamTranscoder().feed(bytes(corrupt))
    transcoder = EventStreamTranscoder()
    transcoder.feed(STREAM[:-3])
    with pytest.raises(UpstreamProtocolError, match="ended inside a message"):
        transcoder.finish()
    not_anthropic = chunk_frame({"no": "type"})
    with pytest.raises(UpstreamProtocolError, match=r"no event type|not an Anthropic event"):
        EventStreamTranscoder().feed(not_anthropic)


class _Client:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


async def test_the_relay_sends_the_transcoded_stream_as_anthropic_sse() -> None:
    pieces = [STREAM[i : i + 13] for i in range(0, len(STREAM), 13)]
    client, seen = _Client(), []

    class Observer:
        def on_event(self, event: SSEEvent) -> None:
            seen.append(event.event)

        def on_body(self, body: bytes) -> None:
            raise AssertionError("a stream has no body")

    async with open_canned(pieces, "application/vnd.amazon.eventstream") as response:
        plan = RelayPlan(WireFormat.ANTHROPIC, intercepted=True, transcoder=EventStreamTranscoder())
        await relay_response(
            response,
            plan,
            client.send,
            RelayOutcome(),
            observer=Observer(),
            before_end=lambda: None,
        )
    start = client.sent[0]
    assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
    body = b"".join(m.get("body", b"") for m in client.sent[1:])
    parsed = SSEParser().feed(body)
    assert [(e.event, json.loads(e.data)) for e in parsed] == [(e["type"], e) for e in EVENTS]
    assert seen == [e["type"] for e in EVENTS]
