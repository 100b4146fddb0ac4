"""aibridgeproxyd's metrics (`coder_aibridgeproxyd_` prefix), on its own registry and listener."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

PREFIX = "coder_aibridgeproxyd_"


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry, *, process_metrics: bool = True) -> None:
        self.registry = registry
        if process_metrics:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        # provider_name: configured providers; provider_type: a dozen types; status: enabled,
        # disabled, proxy_excluded.
        self.provider_info = Gauge(
            PREFIX + "provider_info",
            "Configured providers (value 1) with their status for the proxy: enabled (its hosts"
            " are decrypted), disabled (tunnelled), proxy_excluded (enabled, but no host of its"
            " own: its base URL's host is claimed by a provider earlier by name).",
            ["provider_name", "provider_type", "status"],
            registry=registry,
        )
        self.providers_last_reload = Gauge(
            PREFIX + "providers_last_reload_timestamp_seconds",
            "When the providers were last reloaded (every attempt, failed ones included).",
            registry=registry,
        )
        self.providers_last_reload_success = Gauge(
            PREFIX + "providers_last_reload_success_timestamp_seconds",
            "When the providers were last reloaded successfully.",
            registry=registry,
        )
        # result: ok, failed.
        self.provider_reloads = Counter(
            PREFIX + "provider_reloads",
            "Provider reloads by result; a failed one keeps the previous set.",
            ["result"],
            registry=registry,
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
        # task: a handful of fixed background-task names.
        self.task_restarts = Counter(
            PREFIX + "task_restarts",
            "Background tasks restarted after a crash.",
            ["task"],
            registry=registry,
        )
