"""Prometheus metrics on an injected registry (tests build their own)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

PREFIX = "coder_aibridged_"


class Metrics:
    """Every series the daemon exports. Label cardinality is noted per series."""

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
        # no labels.
        self.build_info = Gauge(
            PREFIX + "build_info",
            "Constant 1, labelled with the version.",
            ["version"],
            registry=registry,
        )
        self.ready = Gauge(
            PREFIX + "ready", "1 once the daemon is ready to serve.", registry=registry
        )
