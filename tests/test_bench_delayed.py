"""The bench's delayed Chat answer (a provider that answers each request after a while), and the
verdict on recording's JSON throughput measured against it: judged only when the gateway was
saturated (its CPU, not the upstream or the commit, limited the rate)."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import trio

from bench.paced_upstream import serve_delayed
from bench.targets import RECORDING_DELAYED_LIMIT, evaluate_bench_targets


def _delayed_row(delayed: dict[str, Any]) -> dict[str, Any]:
    rows = evaluate_bench_targets([], {}, {}, delayed=delayed)
    (row,) = [r for r in rows if "answered after 20 ms" in r["target"]]
    return row


def _delayed(ratio: float, *, least_busy: float, errors: int = 0) -> dict[str, Any]:
    return {
        "recording_ratio": ratio,
        "gateway_rps": 900.0,
        "gateway_norec_rps": round(900.0 / ratio, 1),
        "connections": 128,
        "gateway_cpu_pct": least_busy,
        "least_busy_recording_cpu_pct": least_busy,
        "saturated": least_busy >= 90.0,
        "errors": errors,
    }


def test_a_saturated_run_at_the_limit_passes_and_one_below_fails() -> None:
    assert _delayed_row(_delayed(RECORDING_DELAYED_LIMIT, least_busy=99.0))["verdict"] == "PASS"
    assert _delayed_row(_delayed(RECORDING_DELAYED_LIMIT - 0.01, least_busy=99.0))["verdict"] == (
        "FAIL"
    )


def test_a_run_whose_recording_gateway_idled_gets_no_verdict() -> None:
    row = _delayed_row(_delayed(0.95, least_busy=70.0))
    assert row["verdict"] == "n/a" and "not saturated" in row["detail"]


def test_errors_fail_a_saturated_run_whatever_its_ratio() -> None:
    row = _delayed_row(_delayed(0.95, least_busy=99.0, errors=3))
    assert row["verdict"] == "FAIL" and "3 errors" in row["detail"]


def test_no_run_is_reported_as_not_run() -> None:
    assert _delayed_row({})["detail"] == "not run"


async def test_the_delayed_upstream_answers_each_request_on_a_kept_alive_connection_after_its_delay(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio.open_nursery() as nursery:
        url = await nursery.start(partial(serve_delayed, 0.02))
        host, _, port = url.removeprefix("http://").rpartition(":")
        stream = await trio.open_tcp_stream(host, int(port))
        body = b'{"model":"m","messages":[]}'
        request = b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: %d\r\n\r\n%s" % (
            len(body),
            body,
        )
        for _ in range(2):
            sent_at = trio.current_time()
            await stream.send_all(request)
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                answer += await stream.receive_some(65_536)
            assert trio.current_time() - sent_at >= 0.02
            head, _, payload = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert json.loads(payload)["object"] == "chat.completion"
        await stream.aclose()
        nursery.cancel_scope.cancel()
