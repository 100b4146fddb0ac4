"""The daemon as a whole: health, readiness, metrics, first boot, graceful shutdown."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
from pathlib import Path

import httpx2
import pytest
import trio
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from aibridged.api.finish import CUT_BY_GATEWAY
from aibridged.config import Config, load_config
from aibridged.daemon import _Lifecycle, _watch_store, run_daemon
from aibridged.errors import StoreError, StoreUnavailable
from aibridged.metrics import Metrics
from aibridged.sdnotify import SdNotifier
from tests.fakes import FakeUpstream
from tests.gateway import self_signed_certificate, start_gateway
from tests.logs import watch_logs

MSG = {
    "model": "claude-demo",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}


def _config(database_url: str, state_dir: Path, flags: dict[str, str]) -> Config:
    """Defaults, on a test database, listening on a free port."""
    return load_config(
        path=None,
        env={},
        flags={
            "database.url": database_url,
            "server.state_dir": str(state_dir),
            "server.http_address": "127.0.0.1:0",
            **flags,
        },
        search_default_path=False,
    )


async def test_health_readiness_metrics_and_admin_token_file(
    nursery: trio.Nursery, database_url: str, tmp_path: Path
) -> None:
    config = _config(database_url, tmp_path, {"prometheus.address": "127.0.0.1:0"})
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


async def test_sd_notify_sends_ready_and_stopping(
    nursery: trio.Nursery, database_url: str, tmp_path: Path
) -> None:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    await sock.bind(path)
    notifier = SdNotifier({"NOTIFY_SOCKET": path})
    config = _config(database_url, tmp_path, {"prometheus.enabled": "false"})
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


async def test_shutdown_order_listener_then_services_then_store(
    nursery: trio.Nursery, database_url: str, tmp_path: Path
) -> None:
    upstream = FakeUpstream(chunk_delay_s=0.05, stream_chunks=10)
    gw = await start_gateway(
        nursery,
        database_url=database_url,
        state_dir=tmp_path,
        upstream=upstream,
        handle_signals=True,
    )
    with capture_logs() as logs:
        async with (
            httpx2.AsyncClient(timeout=10) as http,
            http.stream(
                "POST",
                gw.base("anthropic") + "/v1/messages",
                json=MSG,
                headers={"x-api-key": gw.token},
            ) as r,
        ):
            signalled = False
            async for _ in r.aiter_raw():  # keep reading to the end
                if not signalled:
                    os.kill(os.getpid(), signal.SIGTERM)
                    signalled = True
        with trio.fail_after(10):
            await gw.stopped.wait()
    with pytest.raises(httpx2.ConnectError):  # the listener is closed
        async with httpx2.AsyncClient() as fresh:
            await fresh.get(gw.url + "/healthz")
    order = [e["event"] for e in logs if e["event"] in _SHUTDOWN_EVENTS]
    assert order == [
        "daemon.stopping",
        "interception.finished",  # the in-flight stream finished inside the grace period
        "daemon.listener_stopped",
        "daemon.stopped",  # after the store closed
    ]


_SHUTDOWN_EVENTS = {
    "daemon.stopping",
    "interception.finished",
    "daemon.listener_stopped",
    "daemon.stopped",
}


async def test_streams_still_open_after_the_grace_period_are_cut(
    nursery: trio.Nursery, database_url: str, tmp_path: Path
) -> None:
    upstream = FakeUpstream()
    upstream.hold_stream_open(interval_s=0.05)
    gw = await start_gateway(
        nursery,
        database_url=database_url,
        state_dir=tmp_path,
        upstream=upstream,
        handle_signals=True,
        flags={"server.shutdown_grace": "1s"},
    )

    async def read_until_cut(task_status: trio.TaskStatus[None]) -> None:
        async with (
            httpx2.AsyncClient(timeout=10) as http,
            http.stream(
                "POST",
                gw.base("anthropic") + "/v1/messages",
                json=MSG,
                headers={"x-api-key": gw.token},
            ) as r,
        ):
            task_status.started()
            with contextlib.suppress(httpx2.TransportError):  # the cut may end the body abruptly
                async for _ in r.aiter_raw():
                    pass

    with watch_logs() as logs:
        await nursery.start(read_until_cut)
        signalled = trio.current_time()
        os.kill(os.getpid(), signal.SIGTERM)
        with trio.fail_after(5):
            await gw.stopped.wait()
        elapsed = trio.current_time() - signalled
        with trio.fail_after(2):
            await upstream.disconnected.wait()  # the cut reached the upstream too
    assert 0.9 <= elapsed < 3.0
    # The cut stream is finished like any other: logged and counted, not lost.
    [line] = logs.matching("interception.finished")
    assert line["error"] == CUT_BY_GATEWAY and line["status"] == 200 and line["events"] > 0
    failed = gw.registry.get_sample_value(
        "coder_aibridged_interceptions_total",
        {
            "provider": "anthropic",
            "model": "claude-demo",
            "status": "failed",
            "route": "messages",
            "method": "POST",
            "client": "Unknown",
        },
    )
    assert failed == 1


class _SilentStore:
    """A store whose pings never succeed (the database went away)."""

    def __init__(self) -> None:
        self.pings: list[float] = []

    async def ping(self) -> None:
        self.pings.append(trio.current_time())
        raise StoreUnavailable("database unavailable: connection refused")


async def test_a_database_that_stops_answering_asks_for_a_graceful_shutdown(
    autojump_clock: object,
) -> None:
    store = _SilentStore()
    notifications: list[str] = []

    class Notifier:
        def stopping(self) -> None:
            notifications.append("STOPPING=1")

    life = _Lifecycle(trio.CancelScope(), Notifier())  # type: ignore[arg-type]
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    with capture_logs():
        await _watch_store(store, life, metrics)  # type: ignore[arg-type]
    assert store.pings == [5.0, 10.0, 15.0]
    assert metrics.store_ping_failures._value.get() == 3  # what the alert watches
    assert life.shutdown.is_set()  # the listener drains, streams keep their grace
    assert isinstance(life.failure, StoreError) and "stopped answering" in str(life.failure)
    assert not life.root.cancel_called  # nothing was cut at once
    assert notifications == ["STOPPING=1"] and not life.signalled  # a SIGTERM still drains


async def test_tls_listener_serves_https(
    nursery: trio.Nursery, database_url: str, tmp_path: Path
) -> None:
    cert, key = await self_signed_certificate(tmp_path)
    gw = await start_gateway(
        nursery,
        database_url=database_url,
        state_dir=tmp_path,
        flags={"server.tls_cert_file": str(cert), "server.tls_key_file": str(key)},
    )
    assert gw.url.startswith("https://")
    async with httpx2.AsyncClient(verify=False) as http:
        assert (await http.get(gw.url + "/healthz")).status_code == 200
