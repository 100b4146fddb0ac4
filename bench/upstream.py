"""Run a fake upstream in its own process, so the gateway's process is measured alone.

    python -m bench.upstream --kind fast --port 0     # bench.fast_upstream (default)
    python -m bench.upstream --kind demo --port 0     # aibridged.demo.DemoUpstream
    python -m bench.upstream --paced-port 0 --slow-interval 1 --slow-deltas 24   # + paced stream
    python -m bench.upstream --steady-port 0 --steady-interval 0.02 --steady-deltas 8  # + steady
    python -m bench.upstream --delayed-port 0 --delayed-ms 20   # + the delayed Chat answer

Prints ``listening http://127.0.0.1:<port>`` on stdout once accepting; before it, with
``--paced-port``, ``paced http://127.0.0.1:<port>`` and with ``--steady-port``, ``steady
http://127.0.0.1:<port>`` and with ``--delayed-port``, ``delayed http://127.0.0.1:<port>`` (each a
``bench.paced_upstream`` in the same process: the slow stream of the many-open-streams scenario,
and, for the recording comparison, the steady stream whose events arrive one by one, as a
provider sends them, and the Chat Completions answer that comes a fixed delay after its
request); runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from aibridged.demo import DemoUpstream, serve_demo_upstream
from bench.fast_upstream import FastUpstream
from bench.paced_upstream import Pacing, serve_delayed, serve_paced

READY_PREFIX = "listening "
PACED_PREFIX = "paced "
STEADY_PREFIX = "steady "
DELAYED_PREFIX = "delayed "


async def serve_fast_upstream(
    app: FastUpstream,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """hypercorn tuned like the demo's listener: long keep-alive, no request cap, big backlog."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.keep_alive_timeout = 75.0
    config.keep_alive_max_requests = 1_000_000_000
    config.backlog = 4096
    config.accesslog = None
    config.errorlog = logging.getLogger("bench.upstream.hypercorn")
    config.include_server_header = False
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, app, config, shutdown_trigger=trio.sleep_forever)  # type: ignore[arg-type]
        )
        task_status.started(binds[0])


async def _main(
    kind: str,
    host: str,
    port: int,
    chunk_delay_s: float,
    first_byte_delay_s: float,
    paced: dict[str, tuple[Pacing, int]],
    delayed: tuple[float, int] | None,
) -> None:
    async with trio.open_nursery() as nursery:
        for prefix, (pacing, paced_port) in paced.items():
            url = await nursery.start(partial(serve_paced, pacing, host=host, port=paced_port))
            print(prefix + url, flush=True)
        if delayed is not None:
            delay_s, delayed_port = delayed
            url = await nursery.start(partial(serve_delayed, delay_s, host=host, port=delayed_port))
            print(DELAYED_PREFIX + url, flush=True)
        if kind == "demo":
            demo = DemoUpstream(
                stream_chunks=4, chunk_delay_s=chunk_delay_s, first_byte_delay_s=first_byte_delay_s
            )
            url = await nursery.start(partial(serve_demo_upstream, demo, host=host, port=port))
        else:
            url = await nursery.start(
                partial(serve_fast_upstream, FastUpstream(), host=host, port=port)
            )
        print(READY_PREFIX + url, flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__)
    parser.add_argument("--kind", choices=["fast", "demo"], default="fast")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--chunk-delay", type=float, default=0.0, help="demo only: seconds between events"
    )
    parser.add_argument("--first-byte-delay", type=float, default=0.0, help="demo only")
    parser.add_argument("--paced-port", type=int, help="also serve the paced stream here")
    parser.add_argument(
        "--slow-interval", type=float, default=1.0, help="paced stream: seconds between deltas"
    )
    parser.add_argument("--slow-deltas", type=int, default=24, help="paced stream: text deltas")
    parser.add_argument("--steady-port", type=int, help="also serve the steady stream here")
    parser.add_argument(
        "--steady-interval", type=float, default=0.02, help="steady stream: seconds between deltas"
    )
    parser.add_argument("--steady-deltas", type=int, default=8, help="steady stream: text deltas")
    parser.add_argument("--delayed-port", type=int, help="also serve the delayed Chat answer here")
    parser.add_argument(
        "--delayed-ms", type=float, default=20.0, help="delayed answer: ms after the request"
    )
    args = parser.parse_args(argv)
    paced: dict[str, tuple[Pacing, int]] = {}
    if args.paced_port is not None:
        slow = Pacing(interval_s=args.slow_interval, deltas=args.slow_deltas)
        paced[PACED_PREFIX] = (slow, args.paced_port)
    if args.steady_port is not None:
        steady = Pacing(interval_s=args.steady_interval, deltas=args.steady_deltas)
        paced[STEADY_PREFIX] = (steady, args.steady_port)
    trio.run(
        _main,
        args.kind,
        args.host,
        args.port,
        args.chunk_delay,
        args.first_byte_delay,
        paced,
        None if args.delayed_port is None else (args.delayed_ms / 1000, args.delayed_port),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
