"""Tracing: OpenTelemetry spans for the data plane, off by default (`[trace]`, `--trace`).

    names.py    span names and attribute keys (Coder's), the GenAI conventions version followed
    spans.py    Tracing / LiveTracing, the per-request InterceptionTrace (NO_TRACE when off)
    genai.py    the upstream span's model and token usage (the relay's observer while tracing)
    logs.py     `trace.logs`: log lines as span events, content never
    setup.py    open_tracing: the provider, the exporter (OTLP/HTTP, or JSON lines to a file)

With tracing off, the data plane's hooks are calls on `NO_TRACE` that do nothing, and the
OpenTelemetry SDK is not even imported.
"""

from aibridged.tracing.names import GENAI_SEMCONV_VERSION
from aibridged.tracing.setup import open_tracing
from aibridged.tracing.spans import NO_TRACE, TRACING_OFF, InterceptionTrace, Tracing

__all__ = [
    "GENAI_SEMCONV_VERSION",
    "NO_TRACE",
    "TRACING_OFF",
    "InterceptionTrace",
    "Tracing",
    "open_tracing",
]
