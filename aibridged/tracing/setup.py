"""`open_tracing`: the tracer provider and its exporter, for the daemon's lifetime.

Spans are exported by the SDK's `BatchSpanProcessor`, in a thread of its own: ending a span puts
it on a bounded queue (full: the span is dropped) and never waits for the network or the disk,
so a slow or unreachable collector cannot slow a request. At shutdown the queue is flushed, in a
worker thread, for at most `SHUTDOWN_TIMEOUT_S`.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

import structlog
import trio

from aibridged import __version__
from aibridged.config import TraceConfig
from aibridged.errors import StartupError
from aibridged.log import set_log_hook
from aibridged.tracing import names
from aibridged.tracing.logs import add_span_event
from aibridged.tracing.spans import TRACING_OFF, LiveTracing, Tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter

log = structlog.get_logger("aibridged.tracing")

SHUTDOWN_TIMEOUT_S = 5.0
OTLP_TRACES_PATH = "/v1/traces"
DROP_LOG_EVERY_S = 10.0
# The batch processor's logger: it warns once per span dropped from a full queue.
_SDK_QUEUE_LOGGER = "opentelemetry.sdk._shared_internal"


class DropReport(logging.Filter):
    """The SDK's "Queue full" warning, one per dropped span, becomes one line per
    `DROP_LOG_EVERY_S` with the count so far: an exporter that cannot keep up must not turn
    into a log storm on the event loop's thread (spans end there)."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0
        self._last = -math.inf
        self._lock = threading.Lock()  # the SDK may log from its export thread too

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Queue full"):
            return True
        with self._lock:
            self.dropped += 1
            now = time.monotonic()
            if now - self._last < DROP_LOG_EVERY_S:
                return False
            self._last = now
        record.msg = "Queue full: spans dropped (%d so far; the exporter cannot keep up)"
        record.args = (self.dropped,)
        return True


@asynccontextmanager
async def open_tracing(
    config: TraceConfig, *, processor: SpanProcessor | None = None
) -> AsyncIterator[Tracing]:
    """`TRACING_OFF` unless `trace.enable`; else live tracing until the block ends. Tests pass
    their own `processor` (an in-memory exporter behind a simple processor)."""
    if not config.enable:
        yield TRACING_OFF
        return
    # The SDK is imported only when tracing is on: with it off, nothing of it is loaded.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {"service.name": config.service_name, "service.version": __version__}
    )
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    file: IO[str] | None = None
    if processor is None:
        exporter, file, where = _exporter(config)
        processor = BatchSpanProcessor(exporter)
    else:
        where = "a span processor given by the caller"
    provider.add_span_processor(processor)
    tracer = provider.get_tracer(
        names.INSTRUMENTATION_NAME, __version__, schema_url=names.SCHEMA_URL
    )
    if config.logs:
        set_log_hook(add_span_event)
    drops = DropReport()
    logging.getLogger(_SDK_QUEUE_LOGGER).addFilter(drops)
    log.info("tracing.on", exporter=where, service_name=config.service_name,
             log_events=config.logs)  # fmt: skip
    try:
        yield LiveTracing(tracer)
    finally:
        if config.logs:
            set_log_hook(None)
        await _shut_down(provider.shutdown, file)
        logging.getLogger(_SDK_QUEUE_LOGGER).removeFilter(drops)


async def _shut_down(shutdown: Callable[[], object], file: IO[str] | None) -> None:
    """Flush what is queued, off the event loop and bounded in time."""
    done = False
    with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_TIMEOUT_S):
        await trio.to_thread.run_sync(shutdown, abandon_on_cancel=True)
        done = True
    if not done:
        log.warning("tracing.flush_timed_out", timeout_s=SHUTDOWN_TIMEOUT_S,
                    reason="the exporter did not finish; the last spans may be lost")  # fmt: skip
    elif file is not None and file is not sys.stderr:
        file.close()  # only once the exporter's thread is done with it


def otlp_traces_url(endpoint: str) -> str:
    """The collector's base URL → its traces URL (a URL already ending so is kept)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(OTLP_TRACES_PATH) else endpoint + OTLP_TRACES_PATH


def _exporter(config: TraceConfig) -> tuple[SpanExporter, IO[str] | None, str]:
    if config.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        url = otlp_traces_url(config.otlp_endpoint)
        # Headers (a collector's API key) come from OTEL_EXPORTER_OTLP_HEADERS, read by the
        # exporter itself: they never pass through the configuration or the logs.
        return OTLPSpanExporter(endpoint=url), None, f"otlp/http {url}"
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    if config.file in ("", "-"):
        out: IO[str] = sys.stderr
        where = "JSON lines to stderr"
    else:
        out = _open(config.file)
        where = f"JSON lines to {config.file}"
    exporter = ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")
    return exporter, out, where


def _open(path: str) -> IO[str]:
    try:
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        return open(file, "a", encoding="utf-8")  # closed at shutdown
    except OSError as exc:
        raise StartupError(f"cannot open trace.file {path}: {exc.strerror}") from exc
