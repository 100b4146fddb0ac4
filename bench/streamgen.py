"""Many concurrent streams held open at once, each read to its end and checked (one trio process,
raw sockets, :mod:`bench.httpclient`'s parser; it holds thousands of connections on one core).

    python -m bench.streamgen --port 8080 --path /v1/messages --body-file body.json \\
        --header 'x-api-key: k' --streams 5000 --expect-deltas 24 --timeout 120

Every stream opens its own connection and sends one request. At most ``--ramp`` streams are
opening at once (connect, request, response head); once its head is in, a stream counts as open
until its body ends. A stream is complete when the status is 200 and the body ends with the
``message_stop`` event after exactly ``--expect-deltas`` text deltas. Everything else is counted
by kind:

- ``connect``: the connection could not be opened (refused, reset, timed out);
- ``status``: a status other than 200;
- ``reset``: the connection broke (reset, broken pipe) after it was open;
- ``truncated``: the body ended (EOF, or the end of the chunked body) before ``message_stop`` or
  with fewer deltas;
- ``timeout``: not complete within ``--timeout`` seconds of its start;
- ``protocol``: a response this parser does not understand.

Prints one JSON line per ``--progress`` seconds (``{"t":..,"open":..,...}``) and, at the end, one
``{"result": {...}}`` line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from bench.httpclient import ProtocolError, ResponseParser, build_request
from bench.latency import percentile
from bench.procs import raise_nofile

ERROR_KINDS = ("connect", "status", "reset", "truncated", "timeout", "protocol")
_DELTA = b"event: content_block_delta"
_STOP = b"event: message_stop"
RECV = 16_384  # the stream events are small; a smaller read buffer keeps 5,000 readers cheap


@dataclass(slots=True)
class _State:
    started: float
    target: int
    opening: int = 0
    open: int = 0
    peak_open: int = 0
    peak_open_at_s: float = 0.0
    all_open_from_s: float | None = None
    all_open_until_s: float | None = None
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    error_sample: dict[str, str] = field(default_factory=dict)  # first error body per status
    first_byte_s: list[float] = field(default_factory=list)
    stream_s: list[float] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.started

    def opened(self) -> None:
        self.open += 1
        if self.open > self.peak_open:
            self.peak_open = self.open
            self.peak_open_at_s = self.now()
        if self.open == self.target and self.all_open_from_s is None:
            self.all_open_from_s = self.now()

    def closed(self) -> None:
        if self.open == self.target and self.all_open_until_s is None:
            self.all_open_until_s = self.now()
        self.open -= 1


def _complete(parser: ResponseParser, expect_deltas: int) -> bool:
    body = bytes(parser.body).rstrip()
    return (
        body.endswith(b"}")
        and _STOP in body[-200:]
        and (expect_deltas <= 0 or body.count(_DELTA) == expect_deltas)
    )


async def _one(
    state: _State,
    host: str,
    port: int,
    raw: bytes,
    *,
    expect_deltas: int,
    ramp: trio.Semaphore,
    timeout_s: float,
) -> None:
    await ramp.acquire()
    holding = True
    started = time.monotonic()
    state.opening += 1
    try:
        with trio.fail_after(min(30.0, timeout_s)):
            stream = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError):
        state.errors["connect"] += 1
        state.opening -= 1
        ramp.release()
        return
    parser = ResponseParser()
    is_open = False
    kind: str | None = None
    try:
        with trio.fail_after(timeout_s):
            await stream.send_all(raw)
            while not parser.complete:
                data = await stream.receive_some(RECV)
                if not data:
                    kind = "truncated"
                    break
                parser.feed(data)
                if holding and parser.head_done:
                    holding = False
                    state.opening -= 1
                    ramp.release()
                    state.first_byte_s.append(time.monotonic() - started)
                    state.statuses[parser.status] += 1
                    if parser.status != 200:
                        kind = "status"
                        with trio.move_on_after(2):  # the error body, for the report
                            while not parser.complete and (data := await stream.receive_some(RECV)):
                                parser.feed(data)
                        state.error_sample.setdefault(
                            str(parser.status), bytes(parser.body[:300]).decode(errors="replace")
                        )
                        break
                    is_open = True
                    state.opened()
    except trio.TooSlowError:
        kind = "timeout"
    except ProtocolError:
        kind = "protocol"
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        kind = "reset"
    finally:
        if holding:
            state.opening -= 1
            ramp.release()
        if is_open:
            state.closed()
        await stream.aclose()
    if kind is None and not _complete(parser, expect_deltas):
        kind = "truncated"
    if kind is None:
        state.ok += 1
        state.stream_s.append(time.monotonic() - started)
    else:
        state.errors[kind] += 1


async def _progress(state: _State, every_s: float) -> None:
    while True:
        line = {
            "t": round(state.now(), 2),
            "opening": state.opening,
            "open": state.open,
            "peak_open": state.peak_open,
            "ok": state.ok,
            "errors": sum(state.errors.values()),
        }
        print(json.dumps(line), flush=True)
        await trio.sleep(every_s)


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {f"p{q}": round(percentile(ordered, q) * 1000, 1) for q in (50, 99)} | {
        "max": round(ordered[-1] * 1000, 1) if ordered else float("nan")
    }


async def generate(
    host: str,
    port: int,
    raw: bytes,
    *,
    streams: int,
    expect_deltas: int,
    ramp: int,
    timeout_s: float,
    progress_s: float,
) -> dict[str, Any]:
    state = _State(started=time.monotonic(), target=streams)
    limiter = trio.Semaphore(ramp)
    async with trio.open_nursery() as outer:
        outer.start_soon(_progress, state, progress_s)
        async with trio.open_nursery() as nursery:
            for _ in range(streams):
                nursery.start_soon(
                    partial(
                        _one,
                        state,
                        host,
                        port,
                        raw,
                        expect_deltas=expect_deltas,
                        ramp=limiter,
                        timeout_s=timeout_s,
                    )
                )
        outer.cancel_scope.cancel()
    held = None
    if state.all_open_from_s is not None and state.all_open_until_s is not None:
        held = round(state.all_open_until_s - state.all_open_from_s, 2)
    return {
        "streams": streams,
        "ok": state.ok,
        "errors": {kind: state.errors.get(kind, 0) for kind in ERROR_KINDS},
        "error_count": sum(state.errors.values()),
        "statuses": {str(code): count for code, count in sorted(state.statuses.items())},
        "error_bodies": state.error_sample,
        "peak_open": state.peak_open,
        "peak_open_at_s": round(state.peak_open_at_s, 2),
        "all_open_from_s": state.all_open_from_s and round(state.all_open_from_s, 2),
        "all_open_for_s": held,
        "elapsed_s": round(state.now(), 2),
        "first_byte_ms": _ms(state.first_byte_s),
        "stream_ms": _ms(state.stream_s),
        "ramp": ramp,
        "expect_deltas": expect_deltas,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streamgen", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--header", action="append", default=[], help="'name: value'")
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--expect-deltas", type=int, default=0, help="0: do not count")
    parser.add_argument("--ramp", type=int, default=200, help="streams opening at once")
    parser.add_argument("--timeout", type=float, default=120.0, help="per stream, seconds")
    parser.add_argument("--progress", type=float, default=0.5, help="seconds between lines")
    args = parser.parse_args(argv)
    raise_nofile(args.streams + 1024)
    headers = [
        (name.strip(), value.strip()) for name, _, value in (h.partition(":") for h in args.header)
    ]
    raw = build_request(
        "POST", f"{args.host}:{args.port}", args.path, headers, args.body_file.read_bytes()
    )
    result = trio.run(
        partial(
            generate,
            args.host,
            args.port,
            raw,
            streams=args.streams,
            expect_deltas=args.expect_deltas,
            ramp=args.ramp,
            timeout_s=args.timeout,
            progress_s=args.progress,
        )
    )
    print(json.dumps({"result": result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
