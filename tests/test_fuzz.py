"""Random and adversarial input for the pieces that parse what clients and upstreams send: the SSE
parser and relay, the request-body checks and rewrites, the header filters. Nothing may raise but
the documented rejections, and memory stays bounded."""

from __future__ import annotations

import json
from typing import Any

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aibridged.errors import BodyRejected
from aibridged.intercept.client import RelayOutcome
from aibridged.intercept.headers import ALWAYS_DROPPED, CLIENT_AUTH, forwarded_headers
from aibridged.intercept.payload import prepare_body
from aibridged.intercept.relay import RelayPlan, relay_response
from aibridged.intercept.routes import Api
from aibridged.intercept.sse import SSEParser, last_event_end
from aibridged.intercept.wire import WireFormat
from tests.canned import open_canned

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# SSE-looking bytes: field names, separators, every kind of line ending, junk.
_sse_atoms = st.sampled_from(
    [b"data: ", b"data:", b"event: ", b"id: ", b"retry: ", b": ", b"\n", b"\r", b"\r\n", b"\n\n",
     b"\xef\xbb\xbf", b"x", b"{}", b"\x00", b"9" * 40, b"\xff\xfe", b" "]
)  # fmt: skip
_sse_streams = st.lists(_sse_atoms | st.binary(max_size=12), max_size=60).map(b"".join)
_cuts = st.lists(st.integers(min_value=1, max_value=17), min_size=1, max_size=10)


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    out, at, i = [], 0, 0
    while at < len(data):
        size = cuts[i % len(cuts)]
        out.append(data[at : at + size])
        at += size
        i += 1
    return out


@FUZZ
@given(_sse_streams, _cuts)
def test_the_sse_parser_gives_the_same_events_however_the_stream_is_cut(
    data: bytes, cuts: list[int]
) -> None:
    whole = SSEParser().feed(data)
    parser = SSEParser()
    pieces = [event for piece in _pieces(data, cuts) for event in parser.feed(piece)]
    assert pieces == whole


@FUZZ
@given(_sse_streams)
def test_bytes_before_the_last_event_end_hold_only_whole_events(data: bytes) -> None:
    end = last_event_end(data)
    parser = SSEParser()
    events = parser.feed(data[:end])
    assert parser.pending_bytes == 0
    assert events == SSEParser().feed(data)[: len(events)]


@FUZZ
@given(_sse_streams, _cuts)
def test_the_relay_is_byte_faithful_and_bounded_for_any_stream(
    data: bytes, cuts: list[int]
) -> None:
    limit = 64
    sent: list[dict[str, Any]] = []

    async def relay() -> RelayOutcome:
        outcome = RelayOutcome()

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        plan = RelayPlan(WireFormat.ANTHROPIC, intercepted=True, max_event_bytes=limit)
        async with open_canned(_pieces(data, cuts)) as response:
            await relay_response(
                response, plan, send, outcome, observer=None, before_end=lambda: None
            )
        return outcome

    outcome = trio.run(relay)
    assert b"".join(m.get("body", b"") for m in sent[1:]) == data
    assert outcome.complete and not outcome.error
    # Nothing was held back longer than the limit allows: no single write is much bigger.
    assert max((len(m.get("body", b"")) for m in sent[1:]), default=0) <= limit + 17 + 17


_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
)
_json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_are_either_a_body_or_a_documented_rejection(raw: bytes) -> None:
    for api in Api:
        try:
            prepared = prepare_body(api, raw)
        except BodyRejected as exc:
            assert exc.status in (400, 501)
        else:
            assert isinstance(prepared.parsed, dict)


@FUZZ
@given(
    st.dictionaries(st.text(max_size=8), _json_values, max_size=6),
    st.sampled_from([None, 1, 2, "3", 1.5]),
    st.sampled_from([None, {}, {"include_usage": False}, {"x": 1}, "no", 7]),
    st.sampled_from(["", " ", "\n\t"]),
)
def test_a_chat_rewrite_changes_exactly_n_and_include_usage(
    body: dict[str, Any], n: Any, options: Any, space: str
) -> None:
    body = {**body, "stream": True, "model": "m"}
    if n is not None:
        body["n"] = n
    if options is not None:
        body["stream_options"] = options
    raw = json.dumps(body, separators=(space + ",", ":" + space)).encode()
    sent = json.loads(prepare_body(Api.CHAT_COMPLETIONS, raw).body)
    expected = dict(body)
    if body.get("n", 1) != 1:  # whatever it was (2, "3", null), n goes upstream as 1
        expected["n"] = 1
    kept = options if isinstance(options, dict) else {}
    expected["stream_options"] = {**kept, "include_usage": True}
    assert sent == expected


_header_names = st.sampled_from(
    [b"authorization", b"x-api-key", b"cookie", b"connection", b"host", b"transfer-encoding",
     b"x-forwarded-for", b"x-coder-ai-governance-token", b"anthropic-beta", b"x-custom",
     b"keep-alive", b"te", b"upgrade"]
) | st.binary(min_size=1, max_size=10)  # fmt: skip


@FUZZ
@given(
    st.lists(st.tuples(_header_names, st.binary(max_size=40)), max_size=12),
    st.booleans(),
)
def test_header_filters_never_pass_what_must_not_go_upstream(
    headers: list[tuple[bytes, bytes]], byok: bool
) -> None:
    token = b"AbCdEfGhIj-0123456789abcdefghijKL"
    headers = [*headers, (b"x-custom-copy", b"Bearer " + token)]
    out = forwarded_headers(headers, keep_client_auth=byok, gateway_token=token)
    names = {name for name, _ in out}
    assert not names & ALWAYS_DROPPED
    assert byok or not names & CLIENT_AUTH
    assert all(token not in value for _, value in out)
