"""A local OTLP/HTTP trace collector for the bench: the tracing gateway exports to it, as it
would to a real collector, and never to the network.

    python -m bench.otlp_sink --port 0

Prints ``listening http://127.0.0.1:<port>`` once accepting. ``POST /v1/traces`` takes an
OTLP protobuf export, counts its spans and answers 200; ``GET /stats`` answers the counts as
JSON (exports, spans, bytes, spans by name). Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

READY_PREFIX = "listening "
_EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.exports = 0
        self.bytes = 0
        self.rejected = 0
        self.names: Counter[str] = Counter()

    def add(self, body: bytes) -> bool:
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except Exception:  # a malformed export: counted, answered 400
            with self.lock:
                self.rejected += 1
            return False
        names = [
            span.name
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]
        with self.lock:
            self.exports += 1
            self.bytes += len(body)
            self.names.update(names)
        return True

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "exports": self.exports,
                "spans": sum(self.names.values()),
                "bytes": self.bytes,
                "rejected": self.rejected,
                "spans_by_name": dict(self.names),
            }


def _handler(counts: _Counts) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's session expects

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            ok = self.path == "/v1/traces" and counts.add(body)
            self._answer(200 if ok else 400, _EMPTY_RESPONSE, "application/x-protobuf")

        def do_GET(self) -> None:
            if self.path != "/stats":
                self._answer(404, b"not found\n", "text/plain")
                return
            self._answer(200, json.dumps(counts.snapshot()).encode(), "application/json")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per export would only add noise to the bench's logs

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp_sink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    counts = _Counts()
    server = ThreadingHTTPServer((args.host, args.port), _handler(counts))
    server.daemon_threads = True

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    print(f"{READY_PREFIX}http://{host!s}:{port}", flush=True)
    server.serve_forever()
    print(json.dumps(counts.snapshot()), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
