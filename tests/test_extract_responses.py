# ruff: noqa: E501  (malformed events are kept as the one-line JSON events upstreams send)
"""OpenAI Responses extraction: request facts, streamed and blocking answers."""

from __future__ import annotations

from typing import Any

import pytest

from aibridged.intercept.extract import RequestFacts, request_facts
from aibridged.intercept.routes import Api
from aibridged.records import Extracted, ModelThought, TokenUsage, ToolUsage
from tests.test_extract_common import (
    assert_every_cut,
    events_of,
    extract_body,
    extract_stream,
    fixture,
    without_event_names,
)

API = Api.RESPONSES
STREAM = fixture("responses_function_call.sse")
RID = "resp_68a1f0c2d9e4819c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4938"

SUMMARY_1 = ModelThought(
    RID,
    "**Inspecting the failing test**\n\nThe assertion compares `东京` with a normalised string.",
    "reasoning_summary",
)
SUMMARY_2 = ModelThought(
    RID, "**Planning the fix**\n\nRun the test, then patch `normalise()`.", "reasoning_summary"
)
COMMENTARY = ModelThought(RID, "I'll run the test first to see the failure.", "commentary")
SHELL = ToolUsage(
    RID,
    "shell",
    "call_Wm3Kx8TqZ1vR5nYb7LpE2sHd",
    '{"command":["pytest","-q","tests/test_normalise.py"],"workdir":"/home/dev/app"}',
    item_id="fc_68a1f0c6c3d4819cbf0a9b8c7d6e5f40",
)
PATCH = ToolUsage(
    RID,
    "apply_patch",
    "call_Pq6Dn2YcX9wT4mKa1RbV8zLf",
    "*** Begin Patch\n*** Update File: app/normalise.py\n@@\n-    return s\n"
    '+    return unicodedata.normalize("NFC", s)\n*** End Patch\n',
    item_id="ctc_68a1f0c7d4e5819cc01b0a9d8e7f6051",
)
USAGE = TokenUsage(
    RID,
    input=1113,
    output=412,
    cache_read=8704,
    extra={"input_cached": 8704, "output_reasoning": 256, "total_tokens": 10229},
)
STREAM_RECORDS: list[Extracted] = [SUMMARY_1, SUMMARY_2, COMMENTARY, SHELL, PATCH, USAGE]


def before(marker: bytes, stream: bytes = STREAM) -> int:
    """Where the event holding `marker` starts."""
    return stream.rindex(b"event: ", 0, stream.index(marker))


# -- request facts ---------------------------------------------------------------------------------


def facts(items: Any) -> RequestFacts:
    return request_facts(API, {"model": "gpt-5", "input": items})


def test_prompt_is_a_string_input() -> None:
    assert facts("list the files") == RequestFacts(
        prompt="list the files", correlating_call_id=None
    )


def test_prompt_is_a_last_user_items_string_content() -> None:
    items = [
        {"role": "user", "content": "earlier"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "x"}]},
        {"role": "user", "content": "and now?"},
    ]
    assert facts(items).prompt == "and now?"


def test_prompt_is_the_last_input_text_part() -> None:
    content = [
        {"type": "input_text", "text": "<environment_context></environment_context>"},
        {"type": "input_text", "text": "hi"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBO"},
    ]
    assert facts([{"type": "message", "role": "user", "content": content}]).prompt == "hi"


@pytest.mark.parametrize("kind", ["function_call_output", "custom_tool_call_output"])
def test_a_tool_output_gives_its_call_id_and_no_prompt(kind: str) -> None:
    items = [
        {"role": "user", "content": "run it"},
        {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{}"},
        {"type": kind, "call_id": "call_1", "output": "ok"},
    ]
    assert facts(items) == RequestFacts(prompt=None, correlating_call_id="call_1")


@pytest.mark.parametrize(
    "items",
    [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "prefill"}],
        [{"type": "reasoning", "summary": []}],
        [{"type": "function_call_output", "output": "no call id"}],
        [{"role": "user", "content": [{"type": "input_image"}]}],
        None,
        [],
        ["hi"],
        7,
    ],
)
def test_no_facts_without_a_user_or_tool_output_last(items: Any) -> None:
    assert facts(items) == RequestFacts(prompt=None, correlating_call_id=None)


def test_a_lone_surrogate_in_the_prompt_is_kept() -> None:
    assert facts("a \ud800 b").prompt == "a \ud800 b"
    assert facts([{"role": "user", "content": [{"type": "input_text", "text": "\udfff"}]}]) == (
        RequestFacts(prompt="\udfff", correlating_call_id=None)
    )


# -- streams ---------------------------------------------------------------------------------------


def test_stream_records_at_every_cut() -> None:
    """Each reasoning summary, the commentary message, the function and the custom tool call
    from their done events (not again from response.completed), then the usage with the cached
    input taken out."""
    assert_every_cut(API, STREAM, STREAM_RECORDS)


def test_stream_without_event_names_records_the_same() -> None:
    assert extract_stream(API, [without_event_names(STREAM)]) == STREAM_RECORDS


def test_an_item_whose_done_event_is_missing_is_recorded_from_response_completed() -> None:
    done = before(b'"type":"response.output_item.done","sequence_number":25')
    end = STREAM.index(b"\n\n", done) + 2
    assert b'"type":"function_call"' in STREAM[done:end]
    stream = STREAM[:done] + STREAM[end:]
    assert extract_stream(API, [stream]) == [SUMMARY_1, SUMMARY_2, COMMENTARY, PATCH, USAGE, SHELL]


def test_an_incomplete_response_records_its_usage() -> None:
    rid = "resp_68a1f1a0b1c2819d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a41"
    assert_every_cut(
        API,
        fixture("responses_incomplete.sse"),
        [
            ModelThought(rid, "**Drafting a long answer**", "reasoning_summary"),
            TokenUsage(
                rid, input=120, output=64, extra={"output_reasoning": 58, "total_tokens": 184}
            ),
        ],
    )


def test_a_failed_response_without_usage_records_no_usage() -> None:
    failed = (
        b'event: response.failed\ndata: {"type":"response.failed","response":{"id":"resp_f",'
        b'"status":"failed","error":{"code":"server_error","message":"x"},"output":[],'
        b'"usage":null}}\n\n'
    )
    stream = STREAM[: before(b'"type":"response.completed"')] + failed
    assert extract_stream(API, [stream]) == [SUMMARY_1, SUMMARY_2, COMMENTARY, SHELL, PATCH]


def test_a_cut_stream_keeps_finished_items_and_drops_the_unfinished_call() -> None:
    """Cut in the middle of the function call: what was done is recorded, no usage came."""
    cut = before(b'"type":"response.function_call_arguments.done"')
    assert_every_cut(API, STREAM[:cut], [SUMMARY_1, SUMMARY_2, COMMENTARY])
    assert extract_stream(API, [STREAM[: cut + 50]]) == [SUMMARY_1, SUMMARY_2, COMMENTARY]


MALFORMED = b"""\
event: response.output_item.done
data: {bad json

event: response.output_item.done
data: {"type":"response.output_item.done","item":"function_call"}

event: response.output_item.done
data: {"type":"response.output_item.done","item":{"type":"function_call","name":"f","call_id":"c","arguments":{"a":1}}}

event: response.output_item.done
data: {"type":"response.output_item.done","item":{"type":"reasoning","summary":[{"text":5},"x",null]}}

event: response.output_item.done
data: {"type":"response.output_item.done","item":{"type":"message","phase":"commentary","role":"user","content":[{"type":"output_text","text":"not the model's"}]}}

event: response.output_item.done
data: []

event: response.created
data: {"type":"response.created","response":{"id":7}}

event: response.completed
data: {"type":"response.completed","response":[]}

event: response.completed
data: {"type":"response.completed","response":{"output":"none","usage":"none"}}

"""


def test_malformed_events_are_skipped_and_the_rest_recorded() -> None:
    at = before(b'"type":"response.output_item.added","sequence_number":21')
    assert_every_cut(API, STREAM[:at] + MALFORMED + STREAM[at:], STREAM_RECORDS)


def test_only_the_events_with_whole_items_are_parsed() -> None:
    """Deltas with broken JSON change nothing: they are never read."""
    names = {event.event for event in events_of(STREAM)}
    broken = b"".join(
        b"event: " + name.encode() + b"\ndata: {broken\n\n"
        for name in sorted(n for n in names if n and ".delta" in n)
    )
    at = before(b'"type":"response.completed"')
    assert extract_stream(API, [STREAM[:at] + broken + STREAM[at:]]) == STREAM_RECORDS


# -- blocking --------------------------------------------------------------------------------------


def test_blocking_body_records_usage_summaries_commentary_and_tool_calls() -> None:
    """A web search call and the final answer are not recorded; an empty summary is skipped;
    the commentary's text parts are joined."""
    rid = "resp_68a1f2b0c1d2819e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b31"
    assert extract_body(API, fixture("responses_blocking.json")) == [
        TokenUsage(rid, input=3021, output=877, extra={"total_tokens": 3898}),
        ModelThought(rid, "**Looking up the schedule**", "reasoning_summary"),
        ModelThought(rid, "Found the dates; adding them to the calendar.", "commentary"),
        ToolUsage(
            rid,
            "add_event",
            "call_Hn5Vb2Xq8TzL1mRc4WyK7pJd",
            '{"title": "PyCon US", "start": "2026-05-13"}',
            item_id="fc_68a1f2b40516819e",
        ),
        ToolUsage(
            rid,
            "sql",
            "call_Ds9Fk3Lm6QwE2rTy5UiO8pAz",
            "SELECT * FROM events WHERE year = 2026;",
            item_id="ctc_68a1f2b51627819e",
        ),
    ]


@pytest.mark.parametrize(
    "body", [b"", b"null", b'{"output":{"type":"function_call"}}', b'{"output":[[],1]}']
)
def test_malformed_bodies_record_nothing(body: bytes) -> None:
    assert extract_body(API, body) == []
