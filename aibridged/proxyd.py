"""The composition root of `aibridged proxy` (aibridgeproxyd).

Startup: metrics listener → store → the CA → first provider load (a failure stops startup) →
token cache, reload loop and LISTEN connection → CONNECT listeners → READY=1. Shutdown (first
SIGTERM/SIGINT): STOPPING=1 → the listeners stop accepting → open connections (streams in
flight) get `server.shutdown_grace` → everything else is cancelled. A second signal cancels at
once. SIGHUP reloads the providers.
"""

from __future__ import annotations

import signal
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

import structlog
import trio
from prometheus_client import CollectorRegistry

from aibridged import __version__
from aibridged.api.http import ListenerSettings
from aibridged.auth import TokenCache
from aibridged.config import Config, parse_address
from aibridged.daemon import AUTH_CONNECTIONS, open_database, serve_metrics
from aibridged.errors import ConfigError, StartupError
from aibridged.intercept.upstream import Origin, UpstreamSettings, open_upstream_client
from aibridged.proxy.certs import LeafCertificates, load_ca
from aibridged.proxy.connect import DestinationPolicy
from aibridged.proxy.hosts import ProxySnapshot, build_snapshot
from aibridged.proxy.metrics import ProxyMetrics
from aibridged.proxy.mitm import Forwarding
from aibridged.proxy.server import ProxyState, listener_tls, serve_proxy
from aibridged.proxy.tunnel import Dialer, Resolver, UpstreamProxy, resolve
from aibridged.reload import Reloader
from aibridged.sdnotify import SdNotifier
from aibridged.startup import RELOAD_CONNECTIONS
from aibridged.store import Store
from aibridged.store.listen import run_notification_listener
from aibridged.store.providers import CHANGED_CHANNEL, list_providers
from aibridged.store.users import lookup_grant
from aibridged.supervisor import run_supervised

log = structlog.get_logger("aibridged.proxyd")

DATAPLANE_PATH = "/api/v2/aibridge"


@dataclass(frozen=True, slots=True)
class ProxyAddresses:
    proxy: list[str]  # host:port of the plain listener
    tls: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RunningProxy:
    """What `run_proxy_daemon` reports once it accepts CONNECTs."""

    addresses: ProxyAddresses
    reloader: Reloader[ProxySnapshot]  # wait_reloaded(), statistics()


def gateway_target(config: Config) -> str:
    """Where decrypted requests go: `proxy.target`, else this configuration's gateway."""
    if config.proxy.target:
        return config.proxy.target.rstrip("/")
    if config.server.access_url:
        return config.server.access_url.rstrip("/") + DATAPLANE_PATH
    host, port = parse_address(config.server.http_address)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"  # a wildcard bind is reached on the loopback address
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if config.server.tls_cert_file is not None else "http"
    return f"{scheme}://{shown}:{port}{DATAPLANE_PATH}"


async def run_proxy_daemon(
    config: Config,
    *,
    registry: CollectorRegistry | None = None,
    notifier: SdNotifier | None = None,
    handle_signals: bool = True,
    resolver: Resolver = resolve,
    task_status: trio.TaskStatus[RunningProxy] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the proxy until a signal (or cancellation) stops it. `resolver` replaces DNS for
    tunnelled destinations (tests resolve made-up names to 127.0.0.1)."""
    settings = config.proxy
    if settings.ca_cert_file is None or settings.ca_key_file is None:
        raise ConfigError(
            "the proxy needs its CA: set proxy.ca_cert_file and proxy.ca_key_file"
            " (`aibridged proxy ca create` writes a new one)"
        )
    ca = load_ca(settings.ca_cert_file, settings.ca_key_file)
    try:
        target = Origin.from_url(gateway_target(config))
    except ValueError as exc:
        raise ConfigError(f"proxy.target: {exc}") from exc
    metrics = ProxyMetrics(registry if registry is not None else CollectorRegistry())
    notifier = notifier if notifier is not None else SdNotifier()
    shutdown = trio.Event()
    async with trio.open_nursery() as root:
        await root.start(notifier.run_watchdog)
        metrics_urls: list[str] = []
        if config.prometheus.enabled:
            listener = ListenerSettings(address=settings.metrics_address)
            metrics_urls = await root.start(serve_metrics, listener, metrics.registry)
        async with (
            open_database(config) as store,
            open_upstream_client(_gateway_client_settings(config)) as client,
        ):
            tokens = TokenCache(
                partial(lookup_grant, store.budget("auth", AUTH_CONNECTIONS)),
                ttl_s=config.ai_gateway.token_cache_ttl_s,
            )
            state = ProxyState(
                tokens=tokens,
                leaves=LeafCertificates(ca),
                dialer=_dialer(config, resolver),
                forwarding=Forwarding(
                    client=client,
                    target=target,
                    metrics=metrics,
                    header_timeout_s=settings.header_timeout_s,
                    body_timeout_s=config.ai_gateway.request_body_timeout_s,
                    max_body_bytes=config.ai_gateway.max_body_bytes,
                ),
                allowed_ports=settings.allowed_ports,
                header_timeout_s=settings.header_timeout_s,
            )
            reloader = await _first_load(config, store, state, metrics, notifier)
            async with trio.open_nursery() as services:
                await services.start(
                    run_supervised, "token_refresher", tokens.run_refresher, metrics
                )
                await services.start(run_supervised, "provider_reloader", reloader.run, metrics)
                listen = partial(
                    run_notification_listener, store, CHANGED_CHANNEL, reloader.request
                )
                await services.start(run_supervised, "provider_listener", listen, metrics)
                if handle_signals:
                    await services.start(_watch_signals, shutdown, reloader, notifier, root)
                addresses = await _serve(config, state, shutdown, services, metrics_urls)
                metrics.ready.set(1)
                notifier.ready()
                log.info("proxyd.ready", proxy=addresses.proxy, tls=addresses.tls,
                         metrics=metrics_urls, target=gateway_target(config),
                         version=__version__)  # fmt: skip
                task_status.started(RunningProxy(addresses, reloader))
        log.info("proxyd.stopped")
        root.cancel_scope.cancel()


async def _serve(
    config: Config,
    state: ProxyState,
    shutdown: trio.Event,
    services: trio.Nursery,
    metrics_urls: list[str],
) -> ProxyAddresses:
    """Start the listeners in `services`; they stop accepting on `shutdown`, and the open
    connections then get the shutdown grace before `services` is cancelled."""
    settings = config.proxy

    async def run(*, task_status: trio.TaskStatus[ProxyAddresses]) -> None:
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as listening:
                plain = await listening.start(
                    partial(
                        serve_proxy,
                        state,
                        parse_address(settings.listen_address),
                        handler_nursery=connections,
                    )
                )
                tls: list[str] = []
                if settings.tls_listen_address:
                    assert settings.tls_cert_file is not None and settings.tls_key_file is not None
                    context = _listener_tls(str(settings.tls_cert_file), str(settings.tls_key_file))
                    tls = await listening.start(
                        partial(
                            serve_proxy,
                            state,
                            parse_address(settings.tls_listen_address),
                            tls=context,
                            handler_nursery=connections,
                        )
                    )
                task_status.started(ProxyAddresses(plain, tls, metrics_urls))
                await shutdown.wait()
                listening.cancel_scope.cancel()
            log.info("proxyd.listeners_stopped")
            connections.cancel_scope.deadline = trio.current_time() + config.server.shutdown_grace_s
        services.cancel_scope.cancel()

    addresses: ProxyAddresses = await services.start(run)
    return addresses


def _listener_tls(cert_file: str, key_file: str) -> ssl.SSLContext:
    try:
        return listener_tls(cert_file, key_file)
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot load the proxy's TLS listener certificate: {exc}") from exc


async def _first_load(
    config: Config,
    store: Store,
    state: ProxyState,
    metrics: ProxyMetrics,
    notifier: SdNotifier,
) -> Reloader[ProxySnapshot]:
    runner = store.budget("providers", RELOAD_CONNECTIONS)
    explicit: Mapping[str, str] = config.proxy.intercept

    async def build(version: int) -> ProxySnapshot:
        return build_snapshot(await list_providers(runner), explicit, version)

    def apply(snapshot: ProxySnapshot) -> None:
        state.table = snapshot.table
        metrics.provider_info.clear()
        for provider in snapshot.providers:
            metrics.provider_info.labels(provider.name, provider.type, provider.status).set(1)
        log.info(
            "proxyd.providers", hosts=dict(snapshot.table.hosts), version=snapshot.table.version
        )

    reloader = Reloader(
        build,
        apply,
        metrics=metrics,
        notifier=notifier,
        poll_interval_s=config.ai_gateway.providers_poll_interval_s,
    )
    await reloader.load_first()
    return reloader


def _dialer(config: Config, resolver: Resolver) -> Dialer:
    settings = config.proxy
    upstream = None
    if settings.upstream:
        upstream = UpstreamProxy.from_url(settings.upstream, settings.upstream_ca)
    return Dialer(
        DestinationPolicy(settings.allowed_private_cidrs),
        connect_timeout_s=config.ai_gateway.upstream_connect_timeout_s,
        resolver=resolver,
        upstream=upstream,
    )


def _gateway_client_settings(config: Config) -> UpstreamSettings:
    return UpstreamSettings(
        connect_timeout_s=config.ai_gateway.upstream_connect_timeout_s,
        read_timeout_s=config.ai_gateway.upstream_timeout_s,
    )


async def _watch_signals(
    shutdown: trio.Event,
    reloader: Reloader[ProxySnapshot],
    notifier: SdNotifier,
    root: trio.Nursery,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("proxyd.sighup", action="reloading the providers")
                reloader.request(sighup=True)
            elif not shutdown.is_set():
                log.info("proxyd.stopping", signal=signal.Signals(signum).name)
                notifier.stopping()
                shutdown.set()
            else:
                log.warning("proxyd.stopping_now", signal=signal.Signals(signum).name)
                root.cancel_scope.cancel()
