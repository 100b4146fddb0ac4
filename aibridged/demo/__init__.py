"""A built-in local LLM upstream speaking the real OpenAI and Anthropic wire formats.

``aibridged serve --demo`` registers it as the providers ``demo-openai`` and ``demo-anthropic``;
tests and benchmarks use it as a fake upstream. Deterministic: the answer is derived from the
request (see :mod:`aibridged.demo.reply`), so callers can compute what to expect.

    app = DemoUpstream(stream_chunks=8, chunk_delay_s=0.0, first_byte_delay_s=0.0)
    url = await nursery.start(serve_demo_upstream, app)   # "http://127.0.0.1:<port>"
    ...
    app.requests[-1].header("authorization")              # what the gateway sent upstream

Modules: ``reply`` (format-agnostic answer, token counting, SSE encoding), ``openai_format`` and
``anthropic_format`` (sans-IO wire shapes), ``asgi`` (routing, delivery, hypercorn serving).
"""

from .asgi import DemoResponse, DemoUpstream, RecordedRequest, serve_demo_upstream
from .reply import Reply, ToolCall, count_tokens

__all__ = [
    "DemoResponse",
    "DemoUpstream",
    "RecordedRequest",
    "Reply",
    "ToolCall",
    "count_tokens",
    "serve_demo_upstream",
]
