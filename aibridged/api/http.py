"""Serving ASGI apps with hypercorn's trio worker."""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from aibridged.api import h11_strict, idle_timer
from aibridged.errors import StartupError

# Loose on purpose: Quart, prometheus_client and our handlers spell the ASGI types differently.
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    address: str
    graceful_timeout_s: float = 30.0
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Clients and load balancers reuse connections; hypercorn's 5 s default drops them too early.
    keep_alive_timeout_s: float = 75.0
    backlog: int = 2048


def _hypercorn_config(settings: ListenerSettings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [settings.address]
    config.backlog = settings.backlog
    config.graceful_timeout = settings.graceful_timeout_s
    config.keep_alive_timeout = settings.keep_alive_timeout_s
    # hypercorn closes a keep-alive connection after 1000 requests by default: clients then pay a
    # reconnect (measured in bench/); there is no reason to cycle healthy connections.
    config.keep_alive_max_requests = 1_000_000
    config.accesslog = None
    # A Logger (not "-") so hypercorn's messages go through the root handler into structlog.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    if settings.tls_cert_file is not None:
        config.certfile = str(settings.tls_cert_file)
        config.keyfile = str(settings.tls_key_file)
    return config


async def serve_asgi(
    app: ASGIApp,
    settings: ListenerSettings,
    *,
    what: str,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until cancelled or until `shutdown_trigger` returns (then drain gracefully).

    Calls `task_status.started(bound_urls)` once accepting connections.
    """
    h11_strict.install()
    idle_timer.install()
    config = _hypercorn_config(settings)
    try:
        config.create_ssl_context()  # fail here, with a clear message, on a bad certificate
    except (OSError, ValueError) as exc:
        raise StartupError(f"{what}: cannot load TLS certificate/key: {exc}") from exc
    try:
        sockets = config.create_sockets()
    except OSError as exc:
        reason = (
            "address already in use"
            if exc.errno == errno.EADDRINUSE
            else (exc.strerror or str(exc))
        )
        raise StartupError(f"{what}: cannot listen on {settings.address}: {reason}") from exc
    except ValueError as exc:
        raise StartupError(f"{what}: invalid address {settings.address!r}: {exc}") from exc
    for sock in sockets.insecure_sockets + sockets.secure_sockets:
        sock.close()  # only probing: hypercorn binds again right away (SO_REUSEADDR is set)
    await serve(app, config, shutdown_trigger=shutdown_trigger, task_status=task_status)
