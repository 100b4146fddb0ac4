"""Route classification and the request-body rules, without a server."""

from __future__ import annotations

import json

import pytest

from aibridged.intercept.routes import Api, BodyRejected, classify, prepare_body
from aibridged.intercept.wire import WireFormat

OPENAI, ANTHROPIC = WireFormat.OPENAI, WireFormat.ANTHROPIC


@pytest.mark.parametrize(
    ("fmt", "method", "path", "api", "upstream", "pattern"),
    [
        (
            OPENAI,
            "POST",
            "/v1/chat/completions",
            Api.CHAT_COMPLETIONS,
            "/chat/completions",
            "/v1/chat/completions",
        ),
        (OPENAI, "POST", "/v1/responses", Api.RESPONSES, "/responses", "/v1/responses"),
        (
            OPENAI,
            "GET",
            "/v1/responses/resp_1",
            Api.PASSTHROUGH,
            "/responses/resp_1",
            "/v1/responses/",
        ),
        (OPENAI, "GET", "/v1/models", Api.PASSTHROUGH, "/models", "/v1/models"),
        (OPENAI, "GET", "/v1/models/gpt-5", Api.PASSTHROUGH, "/models/gpt-5", "/v1/models/"),
        (
            OPENAI,
            "POST",
            "/v1/conversations",
            Api.PASSTHROUGH,
            "/conversations",
            "/v1/conversations",
        ),
        (ANTHROPIC, "POST", "/v1/messages", Api.MESSAGES, "/v1/messages", "/v1/messages"),
        (
            ANTHROPIC,
            "POST",
            "/v1/messages/count_tokens",
            Api.PASSTHROUGH,
            "/v1/messages/count_tokens",
            "/v1/messages/count_tokens",
        ),
        (
            ANTHROPIC,
            "POST",
            "/api/event_logging/batch",
            Api.PASSTHROUGH,
            "/api/event_logging/batch",
            "/api/event_logging/",
        ),
    ],
)
def test_known_routes(
    fmt: WireFormat, method: str, path: str, api: Api, upstream: str, pattern: str
) -> None:
    route = classify(fmt, method, path)
    assert route is not None
    assert (route.api, route.upstream_path, route.pattern) == (api, upstream, pattern)


@pytest.mark.parametrize(
    ("fmt", "method", "path"),
    [
        (
            OPENAI,
            "POST",
            "/v1/completions",
        ),  # legacy completions are deliberately not passed through
        (OPENAI, "GET", "/v1/chat/completions"),  # intercepted routes are POST only
        (OPENAI, "GET", "/v1/models/"),
        (OPENAI, "GET", "/v1/models/../files"),
        (OPENAI, "GET", "/v1//models"),
        (OPENAI, "POST", "/v1/messages"),  # an Anthropic route on an OpenAI provider
        (ANTHROPIC, "POST", "/v1/chat/completions"),
        (ANTHROPIC, "GET", "/v1/files"),
        (ANTHROPIC, "POST", "/messages"),
    ],
)
def test_everything_else_is_not_supported(fmt: WireFormat, method: str, path: str) -> None:
    assert classify(fmt, method, path) is None


def test_messages_body_is_forwarded_untouched() -> None:
    raw = b'{"model": "claude",  "stream": true, "max_tokens": 5, "messages": []}'
    prepared = prepare_body(Api.MESSAGES, raw)
    assert prepared.body is raw
    assert (prepared.model, prepared.stream) == ("claude", True)


def test_streaming_chat_gets_include_usage_and_n_1_only_when_needed() -> None:
    already = b'{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}'
    assert prepare_body(Api.CHAT_COMPLETIONS, already).body is already
    rewritten = prepare_body(
        Api.CHAT_COMPLETIONS,
        b'{"model":"m","stream":true,"n":2,"messages":[{"content":"caf\xc3\xa9"}]}',
    )
    sent = json.loads(rewritten.body)
    assert sent["stream_options"] == {"include_usage": True} and sent["n"] == 1
    assert sent["messages"][0]["content"] == "café"
    blocking = b'{"model":"m","messages":[]}'
    assert prepare_body(Api.CHAT_COMPLETIONS, blocking).body is blocking


def test_background_responses_are_refused_with_501() -> None:
    with pytest.raises(BodyRejected) as info:
        prepare_body(Api.RESPONSES, b'{"model":"m","input":"x","background":true}')
    assert info.value.status == 501


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'"text"', "JSON object"),
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"a": "\xc3"}', "UTF-8"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_bad_bodies_are_400_with_a_reason(raw: bytes, fragment: str) -> None:
    with pytest.raises(BodyRejected) as info:
        prepare_body(Api.MESSAGES, raw)
    assert info.value.status == 400 and fragment in info.value.message


def test_numbers_survive_exactly_even_when_a_body_is_rewritten() -> None:
    raw = b'{"model":"m","seed":123456789012345678901234567890,"messages":[]}'
    assert prepare_body(Api.MESSAGES, raw).body is raw
    rewritten = prepare_body(Api.CHAT_COMPLETIONS, raw.replace(b'"m",', b'"m","stream":true,'))
    assert b'"seed":123456789012345678901234567890' in rewritten.body


def test_non_standard_json_the_stdlib_accepts_is_passed_on() -> None:
    raw = b'{"model":"m","temperature":NaN,"messages":[]}'
    assert prepare_body(Api.MESSAGES, raw).body is raw
