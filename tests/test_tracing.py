"""Tracing end to end: the official SDKs through a whole gateway with `[trace] enable = true`,
its spans caught by an in-memory exporter.

Expected token counts come from what the SDK parsed of the upstream's answer (the fake upstream
reports them), never from the code under test.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import structlog
import trio
import trio.lowlevel
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aibridged.config import TraceConfig
from aibridged.log import RedactSecrets, call_log_hook, merge_request_fields
from aibridged.tracing import GENAI_SEMCONV_VERSION, open_tracing
from aibridged.tracing.setup import DropReport, otlp_traces_url
from tests.gateway import ANTHROPIC_KEY, OPENAI_KEY, Gateway, start_gateway

# Text that must never reach a span: the prompts sent, the answers received, the credentials.
PROMPT = "tell me about the purple-elephant-7781 please"
TOOL_PROMPT = "Read the config file of the purple-elephant-7781 #demo-tool"
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
TOOLS_ANTHROPIC = [{"name": "read_file", "input_schema": {
    "type": "object", "properties": {"path": {"type": "string"}}}}]  # fmt: skip
WAIT_S = 10.0


class SpanSink(InMemorySpanExporter):
    """The in-memory exporter, plus waiting for spans instead of sleeping and hoping."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = trio.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = super().export(spans)
        self._changed.set()  # SimpleSpanProcessor exports on the event loop's thread
        self._changed = trio.Event()
        return result

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.get_finished_spans() if s.name == name]

    async def wait_for(self, name: str, count: int = 1) -> list[ReadableSpan]:
        with trio.fail_after(WAIT_S):
            while len(found := self.named(name)) < count:
                await self._changed.wait()
        return found

    def of_trace(self, root: ReadableSpan) -> list[ReadableSpan]:
        assert root.context is not None
        return [
            s
            for s in self.get_finished_spans()
            if s.context is not None and s.context.trace_id == root.context.trace_id
        ]


@pytest.fixture
def spans() -> SpanSink:
    return SpanSink()


async def _gateway(
    nursery: trio.Nursery,
    database_url: str,
    state_dir: Path,
    spans: SpanSink,
    **flags: str,
) -> Gateway:
    return await start_gateway(
        nursery,
        database_url=database_url,
        state_dir=state_dir,
        flags=flags,
        span_processor=SimpleSpanProcessor(spans),
    )


@pytest.fixture
async def gateway(
    nursery: trio.Nursery, database_url: str, tmp_path: Path, spans: SpanSink
) -> Gateway:
    return await _gateway(nursery, database_url, tmp_path, spans, **{"trace.enable": "true"})


def _id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def _edges(found: list[ReadableSpan]) -> list[tuple[str, str | None]]:
    """(span, its parent) by name, for the spans of one trace; the root's parent is None when
    it has none in the trace."""
    by_id = {_id(s): s for s in found}
    edges = []
    for span in found:
        parent = by_id.get(span.parent.span_id) if span.parent is not None else None
        edges.append((span.name, parent.name if parent is not None else None))
    return sorted(edges, key=lambda e: (e[0], e[1] or ""))


def _one(found: list[ReadableSpan], name: str) -> ReadableSpan:
    matching = [s for s in found if s.name == name]
    assert len(matching) == 1, f"{len(matching)} spans named {name}: {[s.name for s in found]}"
    return matching[0]


def _text(found: list[ReadableSpan]) -> str:
    """Everything exported of these spans: names, attributes, events, status, resource."""
    return "\n".join(s.to_json(indent=None) for s in found)


def _assert_nothing_secret(found: list[ReadableSpan], *texts: str) -> None:
    exported = _text(found)
    for text in ("purple-elephant-7781", OPENAI_KEY, ANTHROPIC_KEY, *texts):
        assert text not in exported


CHAT_TREE = [
    ("Intercept", None),
    ("Intercept.CreateInterceptor", "Intercept"),
    ("Intercept.ProcessRequest", "Intercept"),
    ("Intercept.ProcessRequest.Upstream", "Intercept.ProcessRequest"),
    ("Intercept.RecordInterception", "Intercept"),
    ("Intercept.RecordInterceptionEnded", "Intercept"),
    ("Intercept.RecordPromptUsage", "Intercept.RecordInterception"),
    ("Intercept.RecordTokenUsage", "Intercept.ProcessRequest"),
]


async def test_a_streamed_chat_completion_yields_the_span_tree_with_genai_attributes(
    gateway: Gateway, oai: openai.AsyncOpenAI, spans: SpanSink
) -> None:
    stream = await oai.chat.completions.create(
        model="gpt-demo",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert usage is not None and answer
    root = (await spans.wait_for("Intercept"))[0]
    found = spans.of_trace(root)
    assert _edges(found) == CHAT_TREE
    assert root.parent is None and root.kind is SpanKind.SERVER
    assert root.status.status_code is StatusCode.UNSET
    interception_id = root.attributes["interception_id"]
    for span in found:  # the interception's attributes are on every span, as in Coder
        assert span.attributes["interception_id"] == interception_id
        assert span.attributes["provider"] == "openai"
        assert span.attributes["api_key_id"] == gateway.token.split("-")[0]
    assert root.attributes["streaming"] is True and root.attributes["model"] == "gpt-demo"
    assert root.attributes["request_path"] == "/api/v2/aibridge/openai/v1/chat/completions"
    assert root.attributes["http.response.status_code"] == 200
    upstream = _one(found, "Intercept.ProcessRequest.Upstream")
    assert upstream.kind is SpanKind.CLIENT
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    assert cached, "the demo reports cached tokens: the cache attribute must be seen non-zero"
    attrs = dict(upstream.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"  # an openai-compat provider
    assert attrs["gen_ai.request.model"] == "gpt-demo"
    assert attrs["gen_ai.response.model"] == chunks[0].model
    assert attrs["gen_ai.response.id"] == chunks[0].id
    assert attrs["gen_ai.usage.input_tokens"] == usage.prompt_tokens  # cached included
    assert attrs["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == cached
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 0
    assert attrs["server.address"] == "127.0.0.1"
    _assert_nothing_secret(found, answer, gateway.token)


async def test_a_blocking_message_yields_the_span_tree_with_cache_and_tool_spans(
    gateway: Gateway, claude: anthropic.AsyncAnthropic, spans: SpanSink
) -> None:
    message = await claude.messages.create(
        model="claude-demo",
        max_tokens=64,
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": TOOL_PROMPT}],
        tools=TOOLS_ANTHROPIC,  # type: ignore[arg-type]
        extra_headers={
            "x-claude-code-session-id": "ses-tracing-1",
            "user-agent": "claude-cli/2.0.14",
        },
    )
    assert any(block.type == "tool_use" for block in message.content)
    root = (await spans.wait_for("Intercept"))[0]
    found = spans.of_trace(root)
    assert _edges(found) == sorted(
        [*CHAT_TREE, ("Intercept.RecordToolUsage", "Intercept.ProcessRequest")],
        key=lambda e: (e[0], e[1] or ""),
    )
    assert root.attributes["streaming"] is False
    assert root.attributes["client"] == "Claude Code"
    tool = _one(found, "Intercept.RecordToolUsage")
    assert tool.attributes["gen_ai.tool.name"] == "read_file"
    attrs = dict(_one(found, "Intercept.ProcessRequest.Upstream").attributes or {})
    usage = message.usage
    read, creation = usage.cache_read_input_tokens or 0, usage.cache_creation_input_tokens or 0
    assert read and creation
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.response.model"] == message.model
    assert attrs["gen_ai.response.id"] == message.id
    assert attrs["gen_ai.usage.input_tokens"] == usage.input_tokens + read + creation
    assert attrs["gen_ai.usage.output_tokens"] == usage.output_tokens
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == read
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == creation
    assert attrs["gen_ai.conversation.id"] == "ses-tracing-1"
    text = "".join(block.text for block in message.content if block.type == "text")
    _assert_nothing_secret(found, text, json.dumps(TOOLS_ANTHROPIC[0]["input_schema"]))


async def test_the_clients_traceparent_is_the_parent_and_the_upstream_gets_its_span(
    gateway: Gateway, claude: anthropic.AsyncAnthropic, spans: SpanSink
) -> None:
    async with claude.messages.stream(
        model="claude-demo",
        max_tokens=64,
        messages=[{"role": "user", "content": PROMPT}],
        extra_headers={"traceparent": TRACEPARENT, "tracestate": "vendor=x"},
    ) as stream:
        await stream.get_final_message()
    root = (await spans.wait_for("Intercept"))[0]
    assert root.context is not None and root.parent is not None
    assert f"{root.context.trace_id:032x}" == CLIENT_TRACE
    assert f"{root.parent.span_id:016x}" == CLIENT_SPAN and root.parent.is_remote
    upstream = _one(spans.of_trace(root), "Intercept.ProcessRequest.Upstream")
    sent = gateway.upstream.requests[-1]
    # The client's own header is replaced by the upstream span's, on the same trace.
    assert sent.header("traceparent") == f"00-{CLIENT_TRACE}-{_id(upstream):016x}-01"
    assert sent.header("tracestate") == "vendor=x"
    assert [k for k, _ in sent.headers].count("traceparent") == 1
    # Two usage records in a Messages stream (input at the start, output at the end): summed.
    assert len(spans.named("Intercept.RecordTokenUsage")) == 2
    assert upstream.attributes["gen_ai.usage.output_tokens"] > 0


async def test_a_passthrough_request_has_one_span_and_passes_its_trace_upstream(
    gateway: Gateway, spans: SpanSink
) -> None:
    async with httpx2.AsyncClient() as client:
        answer = await client.get(
            gateway.base("openai") + "/v1/models",
            headers={"authorization": f"Bearer {gateway.token}", "traceparent": TRACEPARENT},
        )
    assert answer.status_code == 200
    root = (await spans.wait_for("Passthrough"))[0]
    assert [s.name for s in spans.of_trace(root)] == ["Passthrough"]
    assert root.attributes["passthrough_method"] == "GET"
    assert root.attributes["passthrough_url"] == "/api/v2/aibridge/openai/v1/models"
    assert root.attributes["passthrough_upstream_url"] == gateway.upstream_url + "/v1/models"
    sent = gateway.upstream.requests[-1]
    assert sent.header("traceparent") == f"00-{CLIENT_TRACE}-{_id(root):016x}-01"


async def test_an_upstream_error_sets_error_status_on_the_upstream_and_the_root_span(
    gateway: Gateway, oai: openai.AsyncOpenAI, spans: SpanSink
) -> None:
    gateway.upstream.fail_next(503)
    with pytest.raises(openai.InternalServerError):
        await oai.chat.completions.create(
            model="gpt-demo", messages=[{"role": "user", "content": PROMPT}]
        )
    root = (await spans.wait_for("Intercept"))[0]
    upstream = _one(spans.of_trace(root), "Intercept.ProcessRequest.Upstream")
    for span in (root, upstream):
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"] == "503"
    assert root.attributes["http.response.status_code"] == 503
    assert "gen_ai.usage.input_tokens" not in upstream.attributes
    _assert_nothing_secret(spans.get_finished_spans())


async def test_a_rejected_request_ends_its_span_with_the_reason(
    gateway: Gateway, spans: SpanSink
) -> None:
    async with httpx2.AsyncClient() as client:
        answer = await client.post(
            gateway.base("openai") + "/v1/chat/completions",
            headers={"authorization": f"Bearer {gateway.token}", "content-type": "text/plain"},
            content=PROMPT,
        )
    assert answer.status_code == 415
    root = (await spans.wait_for("Intercept"))[0]
    assert root.attributes["error.type"] == "bad_request"
    assert root.attributes["http.response.status_code"] == 415
    assert root.status.status_code is StatusCode.UNSET  # a client's mistake, not a failure
    create = _one(spans.of_trace(root), "Intercept.CreateInterceptor")
    assert create.status.status_code is StatusCode.ERROR
    _assert_nothing_secret(spans.get_finished_spans())


async def test_concurrent_streams_each_get_their_own_tree(
    gateway: Gateway, claude: anthropic.AsyncAnthropic, spans: SpanSink
) -> None:
    """Each request's spans are parented within its own task's context, however the requests
    (and the tasks each one starts) interleave."""
    traces = [f"{n:032x}" for n in range(1, 6)]

    async def one(trace_id: str) -> None:
        async with claude.messages.stream(
            model="claude-demo",
            max_tokens=64,
            messages=[{"role": "user", "content": PROMPT}],
            extra_headers={"traceparent": f"00-{trace_id}-{CLIENT_SPAN}-01"},
        ) as stream:
            await stream.get_final_message()

    gateway.upstream.chunk_delay_s = 0.01  # the streams' events interleave
    async with trio.open_nursery() as nursery:
        for trace_id in traces:
            nursery.start_soon(one, trace_id)
    roots = await spans.wait_for("Intercept", len(traces))
    assert sorted(f"{r.context.trace_id:032x}" for r in roots if r.context) == traces
    expected = _edges(spans.of_trace(roots[0]))
    for root in roots:
        found = spans.of_trace(root)
        assert _edges(found) == expected
        assert {s.attributes["interception_id"] for s in found} == {
            root.attributes["interception_id"]
        }


async def test_a_client_that_leaves_mid_stream_ends_every_span(
    gateway: Gateway, spans: SpanSink
) -> None:
    gateway.upstream.hold_stream_open(interval_s=0.01)
    body = {"model": "claude-demo", "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": PROMPT}]}  # fmt: skip
    headers = {"x-api-key": gateway.token, "content-type": "application/json"}
    url = gateway.base("anthropic") + "/v1/messages"
    async with (
        httpx2.AsyncClient() as client,
        client.stream("POST", url, headers=headers, json=body) as response,
    ):
        async for _ in response.aiter_raw():
            break  # one chunk, then the client goes away
    root = (await spans.wait_for("Intercept"))[0]
    found = spans.of_trace(root)
    assert {"Intercept.ProcessRequest.Upstream", "Intercept.RecordInterceptionEnded"} <= {
        s.name for s in found
    }
    assert root.attributes["client_gone"] is True
    assert root.status.status_code is StatusCode.UNSET
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing leaked into this task


async def test_with_recording_off_the_upstream_span_still_has_the_usage(
    nursery: trio.Nursery, database_url: str, tmp_path: Path, spans: SpanSink
) -> None:
    flags = {"trace.enable": "true", "ai_gateway.recording": "false"}
    gateway = await _gateway(nursery, database_url, tmp_path, spans, **flags)
    async with openai.AsyncOpenAI(
        base_url=gateway.base("openai") + "/v1", api_key=gateway.token, max_retries=0
    ) as client:
        completion = await client.chat.completions.create(
            model="gpt-demo", messages=[{"role": "user", "content": PROMPT}]
        )
    root = (await spans.wait_for("Intercept"))[0]
    found = spans.of_trace(root)
    assert not [s.name for s in found if s.name.startswith("Intercept.Record")]
    attrs = _one(found, "Intercept.ProcessRequest.Upstream").attributes
    assert completion.usage is not None
    assert attrs["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert attrs["gen_ai.response.model"] == completion.model


async def test_tracing_off_makes_no_spans_and_injects_no_traceparent(
    nursery: trio.Nursery, database_url: str, tmp_path: Path, spans: SpanSink
) -> None:
    gateway = await _gateway(nursery, database_url, tmp_path, spans)  # the default: off
    async with openai.AsyncOpenAI(
        base_url=gateway.base("openai") + "/v1", api_key=gateway.token, max_retries=0
    ) as client:
        await client.chat.completions.create(
            model="gpt-demo", messages=[{"role": "user", "content": PROMPT}]
        )
        await client.models.list()
    assert spans.get_finished_spans() == ()
    assert all(r.header("traceparent") is None for r in gateway.upstream.requests)
    assert len(gateway.upstream.requests) == 2


def test_with_tracing_off_the_daemon_does_not_load_the_opentelemetry_sdk() -> None:
    code = (
        "import sys, aibridged.daemon\n"
        "print(any(m.startswith('opentelemetry.sdk') for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


# ------------------------------------------------------------------------- log lines as events


@pytest.fixture
def logging_with_hook() -> Iterator[None]:
    """The production processors around the hook (the gateway's tests otherwise log to the
    default structlog configuration, which has none)."""

    def drop(logger: object, method_name: str, event_dict: Any) -> Any:
        raise structlog.DropEvent

    previous = structlog.get_config()["processors"]
    structlog.configure(processors=[merge_request_fields, structlog.processors.add_log_level,
                                    RedactSecrets(), call_log_hook, drop])  # fmt: skip
    try:
        yield
    finally:
        structlog.configure(processors=previous)


async def test_trace_logs_adds_log_lines_as_span_events_without_content(
    logging_with_hook: None,
    nursery: trio.Nursery,
    database_url: str,
    tmp_path: Path,
    spans: SpanSink,
) -> None:
    flags = {"trace.enable": "true", "trace.logs": "true",
             "ai_gateway.structured_logging": "true"}  # fmt: skip
    gateway = await _gateway(nursery, database_url, tmp_path, spans, **flags)
    async with anthropic.AsyncAnthropic(
        base_url=gateway.base("anthropic"), api_key=gateway.token, max_retries=0
    ) as client:
        await client.messages.create(
            model="claude-demo", max_tokens=64, messages=[{"role": "user", "content": PROMPT}]
        )
    root = (await spans.wait_for("Intercept"))[0]
    found = spans.of_trace(root)
    events = [(s.name, e) for s in found for e in s.events]
    finished = [(name, e) for name, e in events if e.name == "interception.finished"]
    assert len(finished) == 1
    span_name, event = finished[0]
    assert span_name == "Intercept.ProcessRequest"  # where it was logged
    assert event.attributes["status"] == 200 and event.attributes["level"] == "info"
    # The structured-logging record lines carry the prompt: never an event.
    assert not [e for _, e in events if e.name == "interception log"]
    _assert_nothing_secret(found)


async def test_without_trace_logs_spans_have_no_log_events(
    logging_with_hook: None, gateway: Gateway, oai: openai.AsyncOpenAI, spans: SpanSink
) -> None:
    await oai.chat.completions.create(
        model="gpt-demo", messages=[{"role": "user", "content": PROMPT}]
    )
    root = (await spans.wait_for("Intercept"))[0]
    assert all(not s.events for s in spans.of_trace(root))


# ------------------------------------------------------------------------------------ set-up


def _trace_config(**overrides: Any) -> TraceConfig:
    values: dict[str, Any] = {"enable": True, "logs": False, "otlp_endpoint": "", "file": "",
                              "service_name": "aibridged-test"}  # fmt: skip
    return TraceConfig(**{**values, **overrides})


async def test_without_a_collector_spans_go_to_the_trace_file_as_json_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "traces" / "spans.jsonl"
    async with open_tracing(_trace_config(file=str(path))) as tracing:
        assert tracing.enabled
        tracer = tracing._tracer  # type: ignore[attr-defined]
        tracer.start_span("one").end()
        tracer.start_span("two").end()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["name"] for line in lines] == ["one", "two"]  # flushed at the end
    assert lines[0]["resource"]["attributes"]["service.name"] == "aibridged-test"


async def test_tracing_off_gives_the_no_op_tracing() -> None:
    async with open_tracing(_trace_config(enable=False)) as tracing:
        assert not tracing.enabled


def test_the_otlp_endpoint_is_the_collectors_base_url() -> None:
    assert otlp_traces_url("http://127.0.0.1:4318") == "http://127.0.0.1:4318/v1/traces"
    assert otlp_traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert otlp_traces_url("https://c/v1/traces") == "https://c/v1/traces"


async def test_a_task_started_inside_a_span_sees_it_and_cannot_change_its_parents() -> None:
    """What the data plane relies on: trio copies the OpenTelemetry context into each task at
    its start, so child tasks see the request's span, and what they attach stays theirs."""
    tracer = TracerProvider().get_tracer("test")
    seen: list[object] = []
    with tracer.start_as_current_span("request") as request:

        async def child() -> None:
            seen.append(trace.get_current_span())
            with tracer.start_as_current_span("inner"):
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
            await trio.lowlevel.checkpoint()
            assert trace.get_current_span() is request
    assert seen == [request]
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_the_pinned_genai_conventions_version_is_documented() -> None:
    operations = (Path(__file__).parent.parent / "docs" / "operations.md").read_text()
    assert f"GenAI semantic conventions v{GENAI_SEMCONV_VERSION}" in operations


def test_the_sdks_warning_per_dropped_span_becomes_one_line_per_period_with_the_count() -> None:
    drops = DropReport()

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("opentelemetry", logging.WARNING, "x", 1, msg, ("Span",), None)

    first, second = record("Queue full, dropping %s."), record("Queue full, dropping %s.")
    assert drops.filter(first) and not drops.filter(second)
    assert first.getMessage().startswith("Queue full: spans dropped (1 so far")
    assert drops.dropped == 2
    assert drops.filter(record("Exception while exporting %s."))  # other lines pass as they are
