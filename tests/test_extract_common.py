"""The extraction helpers every surface shares, the dispatch, and the harness the per-API tests
use: fixture streams are fed through the real SSE parser cut at every byte boundary, and the
records must be the same for every cut."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aibridged.intercept.extract import RequestFacts, extractor_for, request_facts
from aibridged.intercept.extract.common import dumps, extras, has_value, last_user_text, loads
from aibridged.intercept.routes import Api
from aibridged.intercept.sse import SSEEvent, SSEParser, encode_event
from aibridged.records import Extracted, TokenUsage

FIXTURES = Path(__file__).parent / "fixtures" / "extract"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def extract_stream(api: Api, pieces: list[bytes]) -> list[Extracted]:
    """Records from a stream arriving in `pieces`, events handed over as the parser completes
    them (as the relay does), then `finish()`."""
    records: list[Extracted] = []
    extractor = extractor_for(api, stream=True, emit=records.append)
    parser = SSEParser()
    for piece in pieces:
        for event in parser.feed(piece):
            extractor.on_event(event)
    for event in parser.close():
        extractor.on_event(event)
    extractor.finish()
    return records


def cuts(raw: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """The whole stream, then the stream cut in two at every byte boundary."""
    yield 0, [raw]
    for i in range(1, len(raw)):
        yield i, [raw[:i], raw[i:]]


def assert_every_cut(api: Api, raw: bytes, expected: list[Extracted]) -> None:
    for i, pieces in cuts(raw):
        assert extract_stream(api, pieces) == expected, f"cut at byte {i}"


def extract_body(api: Api, body: bytes) -> list[Extracted]:
    records: list[Extracted] = []
    extractor = extractor_for(api, stream=False, emit=records.append)
    extractor.on_body(body)
    extractor.finish()
    return records


def events_of(raw: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    return parser.feed(raw) + parser.close()


def without_event_names(raw: bytes) -> bytes:
    """The same stream with the types only in the data, as some compatible servers send it."""
    return b"".join(encode_event(None, event.data) for event in events_of(raw))


# -- the harness itself ----------------------------------------------------------------------------


def test_cuts_cover_every_byte_boundary_once() -> None:
    assert [i for i, _ in cuts(b"abcd")] == [0, 1, 2, 3]
    assert all(b"".join(pieces) == b"abcd" for _, pieces in cuts(b"abcd"))


# -- common helpers --------------------------------------------------------------------------------


def test_loads_keeps_an_escaped_lone_surrogate_that_orjson_refuses() -> None:
    assert loads('{"text": "a\\ud800b"}') == {"text": "a\ud800b"}
    assert loads(b'{"text": "\\udfff"}') == {"text": "\udfff"}


def test_loads_gives_none_for_what_is_not_json() -> None:
    assert loads("{not json") is None
    assert loads(b"\xff\xfe{}") is None
    assert loads("[" * 100_000) is None  # too deep for both parsers: refused, not a crash


def test_dumps_is_compact_and_keeps_key_order() -> None:
    assert dumps({"b": 1, "a": [True, None, "東"]}) == '{"b":1,"a":[true,null,"東"]}'


def test_dumps_writes_what_orjson_cannot() -> None:
    assert dumps({"n": 2**70, "s": "\ud800"}) == '{"n":1180591620717411303424,"s":"\ud800"}'


def test_extras_keep_only_non_zero_counters() -> None:
    assert extras((("a", 0), ("b", 3), ("c", 0))) == {"b": 3}


@pytest.mark.parametrize(
    ("data", "found"),
    [
        ('{"usage":null}', False),
        ('{"usage":null,"x":{"usage":{"n":1}}}', True),  # the key twice: the second counts
        ('{"usage":null,"x":{"usage":null}}', False),
        ('{"usage" : null, "x": 1}', False),
        ('{"usage":{"prompt_tokens":1}}', True),
        ('{"usage": {}}', True),
        ('{"content":"\\"usage\\": {}"}', False),  # quoted inside a string: escaped
        ('{"content":"usage","usage":null}', False),
        ('{"content":"usage","usage":1}', True),
        ('{"a":"usage"}', False),  # a value, not a key
        ('{"usage"' + " " * 40 + ":null}", True),  # undecidable in the window: parse it
        ("{}", False),
    ],
)
def test_has_value_finds_a_key_with_a_non_null_value(data: str, found: bool) -> None:
    assert has_value(data, '"usage"') is found


def test_last_user_text_takes_the_string_or_the_last_part_of_the_type() -> None:
    parts = [
        {"type": "text", "text": "context"},
        {"type": "text", "text": "the prompt"},
        {"type": "image", "source": {}},
        {"type": "text", "text": 12},
    ]
    assert last_user_text("plain", "text") == "plain"
    assert last_user_text(parts, "text") == "the prompt"
    assert last_user_text(parts, "input_text") is None
    assert last_user_text({"text": "x"}, "text") is None


# -- dispatch --------------------------------------------------------------------------------------


def test_request_facts_of_passthrough_are_empty() -> None:
    assert request_facts(Api.PASSTHROUGH, {"messages": [{"role": "user", "content": "hi"}]}) == (
        RequestFacts(prompt=None, correlating_call_id=None)
    )


def test_passthrough_extractor_records_nothing() -> None:
    records: list[Extracted] = []
    extractor = extractor_for(Api.PASSTHROUGH, stream=True, emit=records.append)
    extractor.on_event(SSEEvent("message_start", '{"message":{"id":"m","usage":{}}}'))
    extractor.on_body(b'{"usage":{"prompt_tokens":1}}')
    extractor.finish()
    assert records == []


def test_a_streaming_requests_extractor_reads_a_blocking_body_too() -> None:
    """The relay goes by the answer's content type: a `stream: true` request can get JSON."""
    records: list[Extracted] = []
    extractor = extractor_for(Api.CHAT_COMPLETIONS, stream=True, emit=records.append)
    extractor.on_body(b'{"id":"chatcmpl-1","usage":{"prompt_tokens":5,"completion_tokens":2}}')
    assert records == [TokenUsage("chatcmpl-1", input=5, output=2)]
