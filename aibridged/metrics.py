"""Prometheus metrics on an injected registry (tests build their own).

Every series says what bounds its label values: per-user labels are left out on purpose, and the
client-chosen model name is capped per provider (`model_label`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

PREFIX = "coder_aibridged_"
MODELS_PER_PROVIDER = 100


class Metrics:
    def __init__(self, registry: CollectorRegistry, *, process_metrics: bool = True) -> None:
        self.registry = registry
        if process_metrics:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        # task: a handful of fixed background-task names.
        self.task_restarts = Counter(
            PREFIX + "task_restarts",
            "Background tasks restarted after a crash.",
            ["task"],
            registry=registry,
        )
        # version: one value per process.
        self.build_info = Gauge(
            PREFIX + "build_info",
            "Constant 1, labelled with the version.",
            ["version"],
            registry=registry,
        )
        self.ready = Gauge(
            PREFIX + "ready", "1 once the daemon serves requests.", registry=registry
        )

        # provider: configured names; model: capped by model_label; status: completed, failed,
        # cancelled; route: 3 APIs; method: POST; client: 14 known values.
        self.interceptions = Counter(
            PREFIX + "interceptions",
            "Intercepted requests by outcome (completed, failed, cancelled by the client).",
            ["provider", "model", "status", "route", "method", "client"],
            registry=registry,
        )
        self.interceptions_inflight = Gauge(
            PREFIX + "interceptions_inflight",
            "Intercepted requests in flight.",
            ["provider", "model", "route"],
            registry=registry,
        )
        self.interceptions_duration = Histogram(
            PREFIX + "interceptions_duration_seconds",
            "Duration of intercepted requests, streams included.",
            ["provider", "model"],
            buckets=(0.5, 2, 5, 15, 30, 60, 120),
            registry=registry,
        )
        # route: the allow-list entry that matched (a handful per wire format).
        self.passthrough = Counter(
            PREFIX + "passthrough",
            "Requests passed through to the provider unchanged.",
            ["provider", "route", "method"],
            registry=registry,
        )
        # reason: a fixed set (see api/dataplane.py Reject).
        self.rejected = Counter(
            PREFIX + "requests_rejected",
            "Data-plane requests the gateway answered itself, without calling a provider.",
            ["reason"],
            registry=registry,
        )
        # One series per configured provider.
        self.provider_info = Gauge(
            PREFIX + "provider_info",
            "Configured providers (value 1) with their status: enabled, disabled or error.",
            ["provider_name", "provider_type", "status"],
            registry=registry,
        )
        self._models: dict[str, set[str]] = {}

    def model_label(self, provider: str, model: str) -> str:
        """`model` as a label value; past MODELS_PER_PROVIDER distinct names, "other"."""
        if not model:
            return "unknown"
        seen = self._models.setdefault(provider, set())
        if model in seen:
            return model
        if len(seen) >= MODELS_PER_PROVIDER:
            return "other"
        seen.add(model)
        return model
