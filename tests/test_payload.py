"""The request-body rules: parsed once, and rewritten (Chat Completions only) as raw-byte edits."""

from __future__ import annotations

import json

import pytest

from aibridged.errors import BodyRejected
from aibridged.intercept.payload import prepare_body
from aibridged.intercept.routes import Api

CHAT = Api.CHAT_COMPLETIONS


def test_messages_body_is_forwarded_untouched() -> None:
    raw = b'{"model": "claude",  "stream": true, "max_tokens": 5, "messages": []}'
    prepared = prepare_body(Api.MESSAGES, raw)
    assert prepared.body is raw
    assert (prepared.model, prepared.stream) == ("claude", True)


def test_streaming_chat_without_stream_options_gets_one_splice_and_nothing_else() -> None:
    raw = b'{"model":"m", "stream": true, "temperature":1e2, "x":1e400, "messages":[]}  \n'
    sent = prepare_body(CHAT, raw).body
    assert sent == (
        b'{"model":"m", "stream": true, "temperature":1e2, "x":1e400, "messages":[]'
        b',"stream_options":{"include_usage":true}}  \n'
    )


def test_chat_that_already_asks_for_usage_or_does_not_stream_is_untouched() -> None:
    already = b'{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}'
    assert prepare_body(CHAT, already).body is already
    blocking = b'{"model":"m","messages":[],"temperature":1e2}'
    assert prepare_body(CHAT, blocking).body is blocking


@pytest.mark.parametrize(
    ("raw", "sent"),
    [
        (  # n forced to 1, blocking: only that value changes
            b'{"model":"m","n": 3 ,"seed":123456789012345678901234567890,"messages":[]}',
            b'{"model":"m","n": 1 ,"seed":123456789012345678901234567890,"messages":[]}',
        ),
        (  # include_usage false inside stream_options: flipped in place
            b'{"stream":true,"stream_options":{"include_usage":false,"x":1e400},"messages":[]}',
            b'{"stream":true,"stream_options":{"include_usage":true,"x":1e400},"messages":[]}',
        ),
        (  # stream_options without include_usage: added at its front
            b'{"stream":true,"stream_options":{"include_obfuscation":false},"n":2}',
            b'{"stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false},"n":1}',
        ),
        (  # an empty stream_options object
            b'{"stream":true,"stream_options":{}}',
            b'{"stream":true,"stream_options":{"include_usage":true}}',
        ),
        (  # stream_options null: replaced by the object we need
            b'{"stream":true,"stream_options":null}',
            b'{"stream":true,"stream_options":{"include_usage":true}}',
        ),
        (  # n given with an escape in its key is still n; the nested "n" is left alone
            b'{"\\u006e":2,"messages":[{"n":5}],"stream":true}',
            b'{"\\u006e":1,"messages":[{"n":5}],"stream":true,"stream_options":{"include_usage":true}}',
        ),
    ],
)
def test_rewrites_edit_only_what_they_must(raw: bytes, sent: bytes) -> None:
    body = prepare_body(CHAT, raw).body
    assert body == sent
    json.loads(body)


def test_a_lone_surrogate_stays_escaped() -> None:
    raw = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"x\\ud800y"}]}'
    body = prepare_body(CHAT, raw).body
    assert b"x\\ud800y" in body and b'"include_usage":true' in body


def test_deeply_nested_streaming_chat_is_forwarded_not_a_crash() -> None:
    nested = b"[" * 1000 + b"]" * 1000
    raw = b'{"model":"m","stream":true,"n":2,"messages":' + nested + b"}"
    body = prepare_body(CHAT, raw).body
    assert body.startswith(b'{"model":"m","stream":true,"n":1,"messages":[[[')
    assert body.endswith(b'],"stream_options":{"include_usage":true}}')


def test_nesting_too_deep_for_any_parser_is_400() -> None:
    raw = b'{"model":"m","stream":true,"messages":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    with pytest.raises(BodyRejected) as info:
        prepare_body(CHAT, raw)
    assert info.value.status == 400 and "too deeply" in info.value.message


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


def test_non_standard_json_the_stdlib_accepts_is_passed_on() -> None:
    raw = b'{"model":"m","temperature":NaN,"messages":[]}'
    assert prepare_body(Api.MESSAGES, raw).body is raw
