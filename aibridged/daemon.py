"""The composition root and supervisor of `aibridged serve`.

Startup: metrics listener → store (fail fast) → migrations, first-boot admin → writers (consumers
before producers) → background tasks → HTTP listener → READY=1. Shutdown (first SIGTERM/SIGINT, or
a database that stopped answering): STOPPING=1 → the listener stops accepting and in-flight
requests get `server.shutdown_grace` → background tasks are cancelled → the writers' inputs close
and they drain → store closes → embedded PostgreSQL stops. A second signal cancels everything at
once. A shutdown asked for by a failure still drains, then exits non-zero.
"""

from __future__ import annotations

import gc
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import trio
from prometheus_client import CollectorRegistry
from prometheus_client.asgi import make_asgi_app

from aibridged import __version__
from aibridged.api.asgi import GatewayApp
from aibridged.api.control import create_control_app
from aibridged.api.dataplane import DataPlane
from aibridged.api.http import ListenerSettings, serve_asgi
from aibridged.api.manage import Management
from aibridged.api.provider_routes import ProviderRoutes
from aibridged.auth import TokenCache
from aibridged.config import Config
from aibridged.demo import DemoUpstream, serve_demo_upstream
from aibridged.demo.asgi import answer_lifespan
from aibridged.demo.banner import demo_banner
from aibridged.errors import StartupError, StoreError
from aibridged.intercept.upstream import UpstreamSettings, open_upstream_client
from aibridged.log import flush_logs, run_log_flusher
from aibridged.metrics import Metrics
from aibridged.recorder import Recorder
from aibridged.retention import RetentionSweeper
from aibridged.sdnotify import SdNotifier
from aibridged.startup import (
    ProviderRuntime,
    open_dumps,
    open_providers,
    open_recorder,
    statistics_for_readiness,
)
from aibridged.store import Store, apply_migrations, open_store
from aibridged.store.embedded import start_embedded_postgres
from aibridged.store.users import bootstrap_admin, lookup_grant
from aibridged.supervisor import open_writers, run_supervised
from aibridged.tracing import open_tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

log = structlog.get_logger("aibridged.daemon")

ADMIN_TOKEN_FILE = "admin.token"
STORE_CHECK_INTERVAL_S = 5.0
STORE_CHECK_FAILURES = 3  # consecutive failed pings before the store counts as crashed
GC_YOUNG_THRESHOLD = 50_000  # allocations between collections of the youngest generation
# Connections of the pool token lookups may use: a flood of unknown tokens cannot take the rest.
AUTH_CONNECTIONS = 3
MANAGEMENT_CONNECTIONS = 3  # the management API's share


@dataclass(frozen=True, slots=True)
class BoundAddresses:
    http: list[str]
    metrics: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Lifecycle:
    """What the signal watcher, the store watch and the listener share."""

    root: trio.CancelScope
    notifier: SdNotifier
    shutdown: trio.Event = field(default_factory=trio.Event)
    failure: BaseException | None = None  # why the daemon stops, when it is not a signal
    signalled: bool = False  # a stop signal arrived (the next one cuts everything at once)
    on_sighup: Callable[[], None] | None = None  # set once the providers can be reloaded

    def stop(self, failure: BaseException | None = None) -> None:
        """Ask for the graceful shutdown (listener drains, writers flush, store closes)."""
        if failure is not None and self.failure is None:
            self.failure = failure
        if not self.shutdown.is_set():
            self.notifier.stopping()
            self.shutdown.set()


async def run_daemon(
    config: Config,
    *,
    registry: CollectorRegistry | None = None,
    notifier: SdNotifier | None = None,
    demo: bool = False,
    handle_signals: bool = True,
    environ: Mapping[str, str] | None = None,
    span_processor: SpanProcessor | None = None,
    task_status: trio.TaskStatus[BoundAddresses] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the gateway until a signal (or cancellation) stops it. `span_processor` replaces
    the exporter of `[trace]` (tests give an in-memory one)."""
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    metrics.build_info.labels(version=__version__).set(1)
    notifier = notifier if notifier is not None else SdNotifier()
    _check_state_dir(config.server.state_dir)
    _raise_open_file_limit()
    async with trio.open_nursery() as root:
        life = _Lifecycle(root.cancel_scope, notifier)
        root.start_soon(run_log_flusher)
        if handle_signals:
            await root.start(_watch_signals, life)
        await root.start(notifier.run_watchdog)
        metrics_urls: list[str] = []
        if config.prometheus.enabled:
            metrics_urls = await root.start(
                serve_metrics, ListenerSettings(address=config.prometheus.address), metrics.registry
            )
        demo_url = await root.start(serve_demo_upstream, DemoUpstream()) if demo else None
        async with (
            open_tracing(config.trace, processor=span_processor) as tracing,  # closes last
            open_database(config) as store,
            open_upstream_client(_upstream_settings(config)) as upstream,
        ):
            await _prepare_database(store, config.server.state_dir)
            # Writers (the recorder, the dump writer) start here: they outlive the listener and
            # drain before the store closes.
            async with open_writers(metrics) as writers:
                recorder = await open_recorder(config, store, metrics, writers)
                dumps = await open_dumps(config, metrics, writers)
                token_cache = TokenCache(
                    partial(lookup_grant, store.budget("auth", AUTH_CONNECTIONS)),
                    ttl_s=config.ai_gateway.token_cache_ttl_s,
                )
                providers = await open_providers(
                    config, store, metrics, notifier, demo_url=demo_url, environ=environ
                )
                dataplane = DataPlane(
                    settings=config.ai_gateway,
                    providers=providers.registry,
                    tokens=token_cache,
                    upstream=upstream,
                    metrics=metrics,
                    recorder=recorder,
                    dumps=dumps,
                    tracing=tracing,
                )
                if recorder is not None:
                    tracing.watch_recorder(recorder)
                sweeper = RetentionSweeper(
                    store, metrics, retention_s=config.ai_gateway.retention_s
                )
                app = _build_app(
                    config, store, dataplane, life, token_cache, providers, recorder, sweeper
                )
                async with trio.open_nursery() as services:
                    await services.start(
                        run_supervised, "token_refresher", token_cache.run_refresher, metrics
                    )
                    await providers.run(store, metrics, services)
                    await services.start(run_supervised, "retention_sweeper", sweeper.run, metrics)
                    life.on_sighup = partial(providers.reloader.request, sighup=True)
                    services.start_soon(_watch_store, store, life, metrics)
                    http_urls = await services.start(
                        _run_listener, app, config, life, services.cancel_scope
                    )
                    _settle_garbage_collector()
                    metrics.ready.set(1)
                    notifier.ready()
                    log.info(
                        "daemon.ready", http=http_urls, metrics=metrics_urls, version=__version__
                    )
                    if demo_url is not None:
                        public = config.server.access_url or http_urls[0]
                        token_file = config.server.state_dir / ADMIN_TOKEN_FILE
                        flush_logs()
                        print(demo_banner(public, token_file), file=sys.stderr, flush=True)
                    task_status.started(BoundAddresses(http=http_urls, metrics=metrics_urls))
        log.info("daemon.stopped")
        root.cancel_scope.cancel()  # the signal watcher, the metrics listener, the log flusher
    if life.failure is not None:
        raise life.failure


def _settle_garbage_collector() -> None:
    """Everything built at startup lives as long as the process: move it out of the collector's
    sight (`gc.freeze`), and collect the young generation less often. A request allocates
    hundreds of short-lived objects, almost none in cycles; with the default threshold (700) the
    collector ran every few requests."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _raise_open_file_limit() -> None:
    """Every stream holds two sockets: lift the soft limit on open files to the hard one."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:
        log.warning("daemon.file_limit_unchanged", error=str(exc))


def _check_state_dir(state_dir: Path) -> None:
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create state dir {state_dir}: {exc.strerror}") from exc
    if not os.access(state_dir, os.W_OK | os.X_OK):
        raise StartupError(f"state dir {state_dir} is not writable")


@asynccontextmanager
async def open_database(config: Config) -> AsyncIterator[Store]:
    embedded = None
    dsn = config.database.url
    if not dsn:
        data_dir = config.server.state_dir / "postgres"
        log.info("store.embedded_starting", data_dir=str(data_dir))
        embedded = await trio.to_thread.run_sync(start_embedded_postgres, data_dir)
        dsn = embedded.uri
    try:
        async with open_store(
            dsn,
            pool_size=config.database.pool_size,
            connect_timeout_s=config.database.connect_timeout_s,
        ) as store:
            log.info("store.connected", database=store.dsn_for_humans)
            yield store
    finally:
        if embedded is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(embedded.stop)
            log.info("store.embedded_stopped")


async def _prepare_database(store: Store, state_dir: Path) -> None:
    applied = await apply_migrations(store)
    if applied:
        log.info("store.migrated", versions=applied)
    path = state_dir / ADMIN_TOKEN_FILE

    def deliver(token: str) -> None:
        try:
            _write_private_file(path, token + "\n")
        except OSError as exc:
            raise StartupError(f"cannot write the admin token to {path}: {exc.strerror}") from exc

    if await bootstrap_admin(store, deliver):
        log.info("users.admin_created", username="admin", token_file=str(path))


def _write_private_file(path: Path, text: str) -> None:
    """Write `text` to `path` (mode 0600) atomically: a crash leaves the old file or the new."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise


def _upstream_settings(config: Config) -> UpstreamSettings:
    return UpstreamSettings(
        connect_timeout_s=config.ai_gateway.upstream_connect_timeout_s,
        read_timeout_s=config.ai_gateway.upstream_timeout_s,
    )


def _build_app(
    config: Config,
    store: Store,
    dataplane: DataPlane,
    life: _Lifecycle,
    tokens: TokenCache,
    providers: ProviderRuntime,
    recorder: Recorder | None,
    sweeper: RetentionSweeper,
) -> GatewayApp:
    async def readiness() -> str | None:
        if life.shutdown.is_set():
            return "shutting down"
        try:
            await store.ping()
        except StoreError as exc:
            return str(exc)
        return None

    management = Management(tokens, store.budget("management", MANAGEMENT_CONNECTIONS))
    control = create_control_app(
        readiness,
        max_body_bytes=config.ai_gateway.max_body_bytes,
        management=management,
        providers=ProviderRoutes(
            management,
            lambda: providers.box,
            providers.describe,
            providers.reloader.reload_soon,
        ),
        details=lambda: statistics_for_readiness(providers, recorder, sweeper),
        dashboard_session_lifetime_s=config.server.dashboard_session_lifetime_s,
        proxy_ca_cert_file=config.proxy.ca_cert_file,
    )
    return GatewayApp(control, dataplane if config.ai_gateway.enabled else None)


async def _run_listener(
    app: GatewayApp,
    config: Config,
    life: _Lifecycle,
    services: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    settings = ListenerSettings(
        address=config.server.http_address,
        graceful_timeout_s=config.server.shutdown_grace_s,
        tls_cert_file=config.server.tls_cert_file,
        tls_key_file=config.server.tls_key_file,
    )
    await serve_asgi(
        app,
        settings,
        what="http listener",
        shutdown_trigger=life.shutdown.wait,
        task_status=task_status,
    )
    # The listener has drained: the background tasks go next, then the store closes.
    log.info("daemon.listener_stopped")
    services.cancel()


async def serve_metrics(
    settings: ListenerSettings,
    registry: CollectorRegistry,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Prometheus' /metrics of `registry` (the gateway's, or the proxy's) until cancelled."""
    scrape = make_asgi_app(registry)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # prometheus_client's app speaks only HTTP
            await answer_lifespan(receive, send)
        else:
            await scrape(scope, receive, send)

    await serve_asgi(app, settings, what="metrics listener", task_status=task_status)


async def _watch_store(store: Store, life: _Lifecycle, metrics: Metrics) -> None:
    """A store that stops answering ends the daemon, gracefully: in-flight streams keep their
    grace, then the exit is non-zero so systemd restarts the unit."""
    failures = 0
    next_run = trio.current_time()
    while True:
        next_run += STORE_CHECK_INTERVAL_S
        await trio.sleep_until(next_run)
        try:
            with trio.fail_after(STORE_CHECK_INTERVAL_S):
                await store.ping()
            failures = 0
            metrics.store_ping_failures.set(0)
        except (StoreError, trio.TooSlowError) as exc:
            failures += 1
            metrics.store_ping_failures.set(failures)
            log.warning("store.ping_failed", failures=failures, error=str(exc) or "timed out")
            if failures >= STORE_CHECK_FAILURES:
                log.error("daemon.stopping", reason="the database stopped answering")
                life.stop(StoreError(f"database stopped answering: {exc or 'timed out'}"))
                return


async def _watch_signals(
    life: _Lifecycle,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("daemon.sighup", action="reloading the providers")
                if life.on_sighup is not None:
                    life.on_sighup()
            elif not life.signalled:  # the first stop signal, even after a failure asked to stop
                life.signalled = True
                log.info("daemon.stopping", signal=signal.Signals(signum).name)
                life.stop()
            else:
                log.warning("daemon.stopping_now", signal=signal.Signals(signum).name)
                life.root.cancel()
