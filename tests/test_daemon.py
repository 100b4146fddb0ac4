"""The daemon as a whole: health, readiness, metrics, first boot, graceful shutdown."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import httpx2
import trio
from prometheus_client import CollectorRegistry

from aibridged.config import load_config
from aibridged.daemon import run_daemon
from aibridged.sdnotify import SdNotifier
from tests.fakes import FakeUpstream
from tests.gateway import start_gateway

MSG = {
    "model": "claude-demo",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}


async def test_health_readiness_metrics_and_admin_token_file(
    nursery: trio.Nursery, database_url: str, tmp_path: Path
) -> None:
    config = load_config(
        path=None,
        env={},
        flags={
            "database.url": database_url,
            "server.state_dir": str(tmp_path),
            "server.http_address": "127.0.0.1:0",
            "prometheus.address": "127.0.0.1:0",
        },
        search_default_path=False,
    )
    registry = CollectorRegistry()
    bound = await nursery.start(
        lambda task_status: run_daemon(
            config, registry=registry, handle_signals=False, task_status=task_status
        )
    )
    async with httpx2.AsyncClient() as http:
        assert (await http.get(bound.http[0] + "/healthz")).status_code == 200
        ready = await http.get(bound.http[0] + "/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        scrape = (await http.get(bound.metrics[0] + "/metrics")).text
    assert "coder_aibridged_build_info{" in scrape
    assert "coder_aibridged_ready 1.0" in scrape
    assert "process_resident_memory_bytes" in scrape
    token_file = tmp_path / "admin.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(token_file.read_text().strip()) == 33


async def test_sigterm_lets_an_inflight_stream_finish_then_stops(
    nursery: trio.Nursery, database_url: str, tmp_path: Path
) -> None:
    upstream = FakeUpstream(chunk_delay_s=0.1, stream_chunks=10)
    gw = await start_gateway(
        nursery,
        database_url=database_url,
        state_dir=tmp_path,
        upstream=upstream,
        handle_signals=True,
    )
    # start_gateway runs the daemon in `nursery`; watch for its end through the health endpoint.
    events: list[bytes] = []
    async with httpx2.AsyncClient(timeout=10) as http:
        async with http.stream(
            "POST", gw.base("anthropic") + "/v1/messages", json=MSG, headers={"x-api-key": gw.token}
        ) as r:
            async for chunk in r.aiter_raw():
                if not events:
                    os.kill(os.getpid(), signal.SIGTERM)
                events.append(chunk)
        body = b"".join(events)
        assert b"message_stop" in body  # the stream ran to its end despite the signal
    with trio.fail_after(5):
        while True:
            try:
                async with httpx2.AsyncClient() as fresh:
                    await fresh.get(gw.url + "/healthz")
            except httpx2.ConnectError:
                break  # the listener is closed
            await trio.sleep(0.05)


async def test_sd_notify_sends_ready_and_stopping(
    nursery: trio.Nursery, database_url: str, tmp_path: Path
) -> None:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    await sock.bind(path)
    notifier = SdNotifier({"NOTIFY_SOCKET": path})
    config = load_config(
        path=None,
        env={},
        flags={
            "database.url": database_url,
            "server.state_dir": str(tmp_path),
            "server.http_address": "127.0.0.1:0",
            "prometheus.enabled": "false",
        },
        search_default_path=False,
    )
    cancel = trio.CancelScope()

    async def daemon(task_status: trio.TaskStatus[object]) -> None:
        with cancel:
            await run_daemon(
                config, notifier=notifier, handle_signals=True, task_status=task_status
            )

    await nursery.start(daemon)
    with trio.fail_after(5):
        assert (await sock.recv(1024)).startswith(b"READY=1")
        os.kill(os.getpid(), signal.SIGTERM)
        assert await sock.recv(1024) == b"STOPPING=1"
    sock.close()
