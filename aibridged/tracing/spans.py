"""One request's spans, and what the data plane calls to make them.

`Tracing.intercept` gives each admitted request an `InterceptionTrace`. With tracing off that is
`NO_TRACE`, whose methods do nothing: no span, no context attached, no header touched, a few
no-op calls per request. With tracing on it is a `LiveTrace`:

    Intercept | Passthrough                 SERVER; parent: the client's `traceparent`, if any
    ├── Intercept.CreateInterceptor          the JSON body read, checked and rewritten
    ├── Intercept.RecordInterception         the start handed to the group commit
    │   └── Intercept.RecordPromptUsage      the prompt handed to the recorder
    ├── Intercept.ProcessRequest             the upstream call and the relay to the client
    │   ├── Intercept.ProcessRequest.Upstream   CLIENT; GenAI attributes; its `traceparent`
    │   │                                       goes upstream
    │   ├── Intercept.RecordTokenUsage       each record handed to the recorder
    │   └── Intercept.RecordToolUsage / RecordModelThought
    └── Intercept.RecordInterceptionEnded

A passthrough request has the `Passthrough` span alone (its `traceparent` goes upstream). The
Record* spans mark the hand-off of a record to the recorder (its queue), which is all the
request waits for; the batched database writes happen later, outside any request's trace.

Spans are parented explicitly or through the OpenTelemetry context of the request's task (a
contextvar: trio gives each task a copy of its parent's, so a task started inside a span sees
it as current, and nothing attached in one request is seen by another).
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from types import TracebackType
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from aibridged.auth import Principal
from aibridged.clients import Client
from aibridged.errors import Rejected
from aibridged.intercept.client import RelayOutcome
from aibridged.intercept.relay import Observer
from aibridged.intercept.routes import Route, UpstreamCall
from aibridged.log import redact_text
from aibridged.providers.pool import Provider
from aibridged.recorder import ChildRecord, Recorder
from aibridged.records import (
    InterceptionEnd,
    InterceptionStart,
    ModelThought,
    PromptUsage,
    TokenUsage,
    ToolUsage,
)
from aibridged.safe import bounded_text
from aibridged.tracing import names
from aibridged.tracing.genai import ResponseWatch, Usage

Headers = list[tuple[bytes, bytes]]
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
_PROPAGATOR = TraceContextTextMapPropagator()
_NOTHING = nullcontext()
MAX_DESCRIPTION_CHARS = 256
_RECORD_SPANS: Mapping[type, str] = {
    PromptUsage: names.RECORD_PROMPT_USAGE,
    TokenUsage: names.RECORD_TOKEN_USAGE,
    ToolUsage: names.RECORD_TOOL_USAGE,
    ModelThought: names.RECORD_MODEL_THOUGHT,
}


class Traced(Protocol):
    """What a trace reads of an interception (`aibridged.api.finish.Interception`)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def model(self) -> str: ...
    @property
    def stream(self) -> bool: ...
    @property
    def client(self) -> Client | None: ...
    @property
    def client_session_id(self) -> str | None: ...
    @property
    def outcome(self) -> RelayOutcome: ...


class InterceptionTrace:
    """One request's spans; this base class is tracing off, where every call does nothing."""

    __slots__ = ()

    def __enter__(self) -> InterceptionTrace:
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def creating(self, interception: Traced) -> AbstractContextManager[object]:
        """Around reading and rewriting the request body."""
        return _NOTHING

    def recording(self) -> AbstractContextManager[object]:
        """Around handing the interception's start to the group commit."""
        return _NOTHING

    def processing(self, interception: Traced) -> AbstractContextManager[object]:
        """Around the upstream call and the relay."""
        return _NOTHING

    def upstream_call(self, call: UpstreamCall) -> UpstreamCall:
        """`call` as it goes upstream (with tracing: the upstream span's `traceparent`)."""
        return call

    def observer(self, inner: Observer | None) -> Observer | None:
        """What the relay hands the answer to (with tracing: a watch for model and usage)."""
        return inner


NO_TRACE = InterceptionTrace()
_CURRENT: contextvars.ContextVar[LiveTrace | None] = contextvars.ContextVar(
    "aibridged_trace", default=None
)


class Tracing:
    """Tracing off: every request gets `NO_TRACE`."""

    enabled = False

    def intercept(
        self, scope: Mapping[str, Any], provider: Provider, sub: str, principal: Principal
    ) -> InterceptionTrace:
        return NO_TRACE

    def watch_recorder(self, recorder: Recorder) -> None:
        """Have the recorder's hand-offs become Record* spans (nothing to do when off)."""


TRACING_OFF = Tracing()


class LiveTracing(Tracing):
    enabled = True

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def intercept(
        self, scope: Mapping[str, Any], provider: Provider, sub: str, principal: Principal
    ) -> InterceptionTrace:
        route = provider.route(scope["method"], sub)
        if route is None:
            return NO_TRACE  # refused as not supported before any work: no span, as in Coder
        return LiveTrace(self._tracer, scope, provider, route, principal)

    def watch_recorder(self, recorder: Recorder) -> None:
        recorder.tap = _RecordTap()


class _RecordTap:
    """The recorder's tap: records go to the trace of the request handing them over."""

    def added(self, interception: InterceptionStart, record: ChildRecord) -> None:
        trace_ = _CURRENT.get()
        if trace_ is not None and trace_.interception_id == interception.id:
            trace_.recorded(record)

    def ended(self, record: InterceptionEnd) -> None:
        trace_ = _CURRENT.get()
        if trace_ is not None and trace_.interception_id == record.id:
            trace_.ended()


class LiveTrace(InterceptionTrace):
    __slots__ = (
        "_attrs",
        "_context_token",
        "_current_token",
        "_interception",
        "_parent",
        "_provider",
        "_root",
        "_route",
        "_scope",
        "_tracer",
        "_upstream",
        "_usage",
        "_watch",
    )

    def __init__(
        self,
        tracer: Tracer,
        scope: Mapping[str, Any],
        provider: Provider,
        route: Route,
        principal: Principal,
    ) -> None:
        self._tracer = tracer
        self._scope = scope
        self._provider = provider
        self._route = route
        self._parent = _incoming_context(scope["headers"])
        # Carried by every span of the interception, as Coder's are.
        self._attrs: dict[str, AttributeValue] = {
            names.PROVIDER: provider.name,
            names.USER_ID: str(principal.user_id),
            names.API_KEY_ID: principal.token_id,
            names.IS_BEDROCK: provider.type.name == "bedrock",
        }
        self._interception: Traced | None = None
        self._upstream: Span | None = None
        self._watch: ResponseWatch | None = None
        self._usage = Usage()

    @property
    def interception_id(self) -> uuid.UUID | None:
        return self._interception.id if self._interception is not None else None

    # -- the root span ----------------------------------------------------------------------------

    def __enter__(self) -> LiveTrace:
        method, path = self._scope["method"], self._scope["path"]
        attrs = {**self._attrs, names.REQUEST_PATH: path, names.HTTP_METHOD: method}
        if self._route.intercepted:
            name = names.INTERCEPT
        else:
            name = names.PASSTHROUGH
            attrs[names.PASSTHROUGH_URL] = path
            attrs[names.PASSTHROUGH_UPSTREAM_URL] = (
                self._provider.base_url + self._route.upstream_path
            )
            attrs[names.PASSTHROUGH_METHOD] = method
        self._root = self._tracer.start_span(
            name, context=self._parent, kind=SpanKind.SERVER, attributes=attrs
        )
        self._context_token = otel_context.attach(trace.set_span_in_context(self._root))
        self._current_token = _CURRENT.set(self)
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        root = self._root
        try:
            status = self._interception.outcome.status if self._interception else 0
            if isinstance(exc, Rejected):
                status = exc.status
                root.set_attribute(names.ERROR_TYPE, exc.reason)
                if exc.status >= 500:
                    root.set_status(StatusCode.ERROR, f"{exc.status} {exc.reason}")
            elif isinstance(exc, Exception):
                # A bug: its type, never its message (which may quote anything).
                root.set_attribute(names.ERROR_TYPE, type(exc).__qualname__)
                root.set_status(StatusCode.ERROR, "internal error in the gateway")
            elif self._interception is not None:
                _set_outcome(root, self._interception.outcome)
            if status:
                root.set_attribute(names.HTTP_STATUS, status)
        finally:
            _CURRENT.reset(self._current_token)
            otel_context.detach(self._context_token)
            root.end()

    def _bind(self, interception: Traced) -> None:
        if self._interception is None:
            self._interception = interception
            self._attrs[names.INTERCEPTION_ID] = str(interception.id)
            self._root.set_attribute(names.INTERCEPTION_ID, str(interception.id))

    # -- the children -----------------------------------------------------------------------------

    @contextmanager
    def _child(
        self, name: str, *, kind: SpanKind = SpanKind.INTERNAL, context: Context | None = None
    ) -> Iterator[Span]:
        """A span that is the current one while the block runs."""
        span = self._tracer.start_span(name, context=context, kind=kind, attributes=self._attrs)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield span
        except Rejected as exc:
            span.set_attribute(names.ERROR_TYPE, exc.reason)
            span.set_status(StatusCode.ERROR, f"{exc.status} {exc.reason}")
            raise
        except Exception as exc:
            span.set_attribute(names.ERROR_TYPE, type(exc).__qualname__)
            span.set_status(StatusCode.ERROR, "internal error in the gateway")
            raise
        finally:
            otel_context.detach(token)
            span.end()

    @contextmanager
    def creating(self, interception: Traced) -> Iterator[object]:
        self._bind(interception)
        with self._child(names.CREATE_INTERCEPTOR) as span:
            yield span
        # The request is understood: every span from here on says what it asked for.
        described: dict[str, AttributeValue] = {
            names.MODEL: bounded_text(interception.model),
            names.STREAMING: interception.stream,
            names.CLIENT: str(interception.client or Client.UNKNOWN),
        }
        self._attrs.update(described)
        self._root.set_attributes(described)

    def recording(self) -> AbstractContextManager[object]:
        return self._child(names.RECORD_INTERCEPTION)

    @contextmanager
    def processing(self, interception: Traced) -> Iterator[object]:
        self._bind(interception)
        if not self._route.intercepted:
            yield None
            return
        with self._child(names.PROCESS_REQUEST) as span:
            try:
                yield span
            finally:  # however it ended (the client leaving cancels it): the upstream span too
                self._end_upstream(interception)
                _set_outcome(span, interception.outcome)

    def upstream_call(self, call: UpstreamCall) -> UpstreamCall:
        if self._route.intercepted and self._interception is not None:
            self._upstream = self._start_upstream(self._interception)
            context = trace.set_span_in_context(self._upstream)
        else:
            context = None  # the current span: the Passthrough one
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=context)
        headers = [(k, v) for k, v in call.headers if k not in _TRACE_HEADERS]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in carrier.items()]
        return replace(call, headers=headers)

    def observer(self, inner: Observer | None) -> Observer | None:
        interception = self._interception
        if not self._route.intercepted or interception is None:
            return inner
        self._watch = ResponseWatch(
            inner, self._route.api, stream=interception.stream, usage=self._usage
        )
        return self._watch

    def _start_upstream(self, interception: Traced) -> Span:
        attrs: dict[str, AttributeValue] = {
            **self._attrs,
            names.GEN_AI_OPERATION: names.OPERATION_CHAT,
            names.GEN_AI_PROVIDER: names.genai_provider(self._provider.type.name),
        }
        if interception.model:
            attrs[names.GEN_AI_REQUEST_MODEL] = bounded_text(interception.model)
        if interception.client_session_id:
            attrs[names.GEN_AI_CONVERSATION] = bounded_text(interception.client_session_id)
        origin = self._provider.origin
        if origin is not None:
            attrs[names.SERVER_ADDRESS] = origin.host.decode("ascii")
            attrs[names.SERVER_PORT] = origin.port or (443 if origin.scheme == b"https" else 80)
        return self._tracer.start_span(names.UPSTREAM, kind=SpanKind.CLIENT, attributes=attrs)

    def _end_upstream(self, interception: Traced) -> None:
        span, self._upstream = self._upstream, None
        if span is None:
            return
        watch = self._watch
        if watch is not None:
            watch.finish()  # an extractor of its own gives out what it still held
            if watch.model:
                span.set_attribute(names.GEN_AI_RESPONSE_MODEL, watch.model)
        span.set_attributes(self._usage.attributes())
        _set_outcome(span, interception.outcome)
        span.end()

    # -- what the recorder's tap reports ----------------------------------------------------------

    def recorded(self, record: ChildRecord) -> None:
        attrs = self._attrs
        if isinstance(record, ToolUsage):
            attrs = {**attrs, names.GEN_AI_TOOL_NAME: bounded_text(record.tool)}
        elif isinstance(record, TokenUsage):
            self._usage.add(record)
        self._tracer.start_span(_RECORD_SPANS[type(record)], attributes=attrs).end()

    def ended(self) -> None:
        context = trace.set_span_in_context(self._root)
        span = self._tracer.start_span(
            names.RECORD_INTERCEPTION_ENDED, context=context, attributes=self._attrs
        )
        span.end()


def _set_outcome(span: Span, outcome: RelayOutcome) -> None:
    """A response that failed (or was cut) is an error; the client leaving is not."""
    if outcome.client_gone:
        span.set_attribute(names.CLIENT_GONE, True)
    elif outcome.error or outcome.status >= 500:
        kind = str(outcome.status) if outcome.status >= 400 else "response_incomplete"
        span.set_attribute(names.ERROR_TYPE, kind)
        # Gateway-made text (upstream bodies are never in it), redacted all the same.
        description = bounded_text(redact_text(outcome.error), MAX_DESCRIPTION_CHARS)
        span.set_status(StatusCode.ERROR, description or f"status {outcome.status}")


class _HeaderGetter(Getter[Headers]):
    """W3C trace context from ASGI headers (lower-case byte names)."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        name = key.encode("latin-1")
        values = [v.decode("latin-1") for k, v in carrier if k == name]
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_GETTER = _HeaderGetter()


def _incoming_context(headers: Headers) -> Context | None:
    """The client's trace context, when it sent a `traceparent` (a malformed one is ignored)."""
    if not any(name == b"traceparent" for name, _ in headers):
        return None
    return _PROPAGATOR.extract(headers, getter=_GETTER)
