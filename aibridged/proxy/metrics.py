"""aibridgeproxyd's metrics (`coder_aibridgeproxyd_` prefix), on its own registry and listener."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from aibridged.metrics import add_process_collectors, provider_reload_series, task_restarts_counter

PREFIX = "coder_aibridgeproxyd_"


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry, *, process_metrics: bool = True) -> None:
        self.registry = registry
        if process_metrics:
            add_process_collectors(registry)
        # provider_name: configured providers; provider_type: a dozen types; status: enabled,
        # disabled, proxy_excluded.
        (
            self.provider_info,
            self.providers_last_reload,
            self.providers_last_reload_success,
            self.provider_reloads,
        ) = provider_reload_series(
            registry,
            PREFIX,
            info_help="Configured providers (value 1) with their status for the proxy: enabled"
            " (its hosts are decrypted), disabled (tunnelled), proxy_excluded (enabled, but no"
            " host of its own: its base URL's host is claimed by a provider earlier by name).",
        )
        # type: mitm, tunneled.
        self.connect_sessions = Counter(
            PREFIX + "connect_sessions",
            "CONNECT sessions established, by type.",
            ["type"],
            registry=registry,
        )
        # provider: configured names.
        self.mitm_requests = Counter(
            PREFIX + "mitm_requests",
            "Decrypted requests forwarded to the gateway.",
            ["provider"],
            registry=registry,
        )
        self.inflight_mitm_requests = Gauge(
            PREFIX + "inflight_mitm_requests",
            "Decrypted requests in flight.",
            ["provider"],
            registry=registry,
        )
        # code: HTTP status codes (a few dozen at most); provider: configured names.
        self.mitm_responses = Counter(
            PREFIX + "mitm_responses",
            "Answers to decrypted requests, by status code.",
            ["code", "provider"],
            registry=registry,
        )
        self.ready = Gauge(
            PREFIX + "ready", "1 once the proxy accepts CONNECTs.", registry=registry
        )
        self.task_restarts = task_restarts_counter(registry, PREFIX)
