"""Prometheus metrics on an injected registry (tests build their own).

Every series says what bounds its label values: per-user labels are left out on purpose, and the
client-chosen model name is capped per provider (`model_label`).
"""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from aibridged.safe import bounded_text

PREFIX = "coder_aibridged_"
MODELS_PER_PROVIDER = 100
MODEL_LABEL_CHARS = 128
OTHER_MODEL = "other"


class TaskMetrics(Protocol):
    """What a supervised background task counts (the gateway's and the proxy's metrics)."""

    task_restarts: Counter


class ReloadMetrics(Protocol):
    """What the shared provider reload loop sets (the gateway's and the proxy's metrics)."""

    providers_last_reload: Gauge
    providers_last_reload_success: Gauge
    provider_reloads: Counter


def add_process_collectors(registry: CollectorRegistry) -> None:
    """Process, platform and GC series (both daemons have them)."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


def task_restarts_counter(registry: CollectorRegistry, prefix: str) -> Counter:
    # task: a handful of fixed background-task names.
    return Counter(
        prefix + "task_restarts",
        "Background tasks restarted after a crash.",
        ["task"],
        registry=registry,
    )


def provider_reload_series(
    registry: CollectorRegistry, prefix: str, *, info_help: str
) -> tuple[Gauge, Gauge, Gauge, Counter]:
    """`provider_info` (one series per configured provider, described by `info_help`), the
    two reload timestamps and the reloads by result: what the shared reload loop sets."""
    info = Gauge(
        prefix + "provider_info",
        info_help,
        ["provider_name", "provider_type", "status"],
        registry=registry,
    )
    last = Gauge(
        prefix + "providers_last_reload_timestamp_seconds",
        "When the providers were last reloaded (every attempt, failed ones included).",
        registry=registry,
    )
    last_success = Gauge(
        prefix + "providers_last_reload_success_timestamp_seconds",
        "When the providers were last reloaded successfully.",
        registry=registry,
    )
    # Two series: result ok or failed.
    reloads = Counter(
        prefix + "provider_reloads",
        "Provider reloads by result (ok, failed); a failed one keeps the previous set.",
        ["result"],
        registry=registry,
    )
    return info, last, last_success, reloads


class Metrics:
    def __init__(self, registry: CollectorRegistry, *, process_metrics: bool = True) -> None:
        self.registry = registry
        if process_metrics:
            add_process_collectors(registry)
        self.task_restarts = task_restarts_counter(registry, PREFIX)
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
        self.store_ping_failures = Gauge(
            PREFIX + "store_ping_failures",
            "Consecutive failed checks of the database (the daemon stops after 3).",
            registry=registry,
        )

        # provider: configured names; model: capped by admit_model; status: completed, failed,
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
        (
            self.provider_info,
            self.providers_last_reload,
            self.providers_last_reload_success,
            self.provider_reloads,
        ) = provider_reload_series(
            registry,
            PREFIX,
            info_help="Configured providers (value 1) with their status: enabled, disabled or"
            " error.",
        )
        # One series per SSE stream parsing gave up on (bounded by provider names).
        self.stream_parse_abandoned = Counter(
            PREFIX + "stream_parse_abandoned",
            "Streams whose events grew past ai_gateway.max_event_size: relayed as bytes, unparsed.",
            ["provider"],
            registry=registry,
        )
        # Recording. provider: configured names; model: capped as above; type: 4 token kinds.
        self.tokens = Counter(
            PREFIX + "tokens",
            "Tokens recorded, by type: input (not cached), output, cache_read, cache_write.",
            ["provider", "model", "type"],
            registry=registry,
        )
        self.prompts = Counter(
            PREFIX + "prompts",
            "Non-empty user prompts recorded.",
            ["provider", "model"],
            registry=registry,
        )
        self.tool_selections = Counter(
            PREFIX + "non_injected_tool_selections",
            "Tool calls the model made to the client's own tools.",
            ["provider", "model"],
            registry=registry,
        )
        self.injected_tool_invocations = Counter(
            PREFIX + "injected_tool_invocations",
            "Calls of tools the gateway injected (MCP) and ran itself (none until MCP is built).",
            ["provider", "model"],
            registry=registry,
        )
        # record: the 5 record kinds; no other labels.
        self.recorder_dropped = Counter(
            PREFIX + "recorder_dropped",
            "Records the recorder dropped: its queue was full, or the drain at shutdown gave up.",
            ["record"],
            registry=registry,
        )
        self.recorder_rows = Counter(
            PREFIX + "recorder_rows",
            "Records written, by kind.",
            ["record"],
            registry=registry,
        )
        self.recorder_batches = Counter(
            PREFIX + "recorder_batches", "Batches the recorder wrote.", registry=registry
        )
        self.recorder_errors = Counter(
            PREFIX + "recorder_errors",
            "Failed recorder writes (starts or batches; a failed batch is retried).",
            registry=registry,
        )
        self.recorder_queue = Gauge(
            PREFIX + "recorder_queue",
            "Records waiting to be written, by kind of queue (rows, ends).",
            ["queue"],
            registry=registry,
        )
        # API dumps. reason: queue_full, closed, shutdown, crashed; no other labels.
        self.dumps_dropped = Counter(
            PREFIX + "dumps_dropped",
            "API dump pieces dropped (the dump queue was full, or the writer had stopped);"
            " a dump that lost a piece takes no more.",
            ["reason"],
            registry=registry,
        )
        self.dump_write_errors = Counter(
            PREFIX + "dump_write_errors",
            "API dump writes that failed (a read-only or full disk, ...); requests go on.",
            registry=registry,
        )
        self.dump_queue_bytes = Gauge(
            PREFIX + "dump_queue_bytes",
            "Bytes of API dumps waiting to be written.",
            registry=registry,
        )
        # Resilience (providers/breaker.py, providers/keypool.py). endpoint: the provider's
        # intercepted paths (a handful); model: capped per provider as above; key_index: 1 to 5;
        # reason and outcome: fixed sets.
        self.breaker_state = Gauge(
            PREFIX + "circuit_breaker_state",
            "Circuit breaker state: 0 closed, 0.5 half-open, 1 open.",
            ["provider", "endpoint", "model"],
            registry=registry,
        )
        self.breaker_trips = Counter(
            PREFIX + "circuit_breaker_trips",
            "Times a circuit breaker opened.",
            ["provider", "endpoint", "model"],
            registry=registry,
        )
        self.breaker_rejects = Counter(
            PREFIX + "circuit_breaker_rejects",
            "Requests refused with 503 because their circuit breaker was open.",
            ["provider", "endpoint", "model"],
            registry=registry,
        )
        self.key_pool_transitions = Counter(
            PREFIX + "key_pool_state_transitions",
            "Keys taken out of use: rate_limited (cooling down), unauthorized or forbidden"
            " (until the provider changes).",
            ["provider", "key_index", "reason"],
            registry=registry,
        )
        self.key_pool_exhaustions = Counter(
            PREFIX + "key_pool_exhaustions",
            "Requests no key of the provider could serve: rate_limited (429) or failed (502).",
            ["provider", "outcome"],
            registry=registry,
        )
        self.key_pool_failover_attempts = Histogram(
            PREFIX + "key_pool_failover_attempts",
            "Upstream attempts per request of a provider with keys.",
            ["provider"],
            buckets=(1, 2, 3, 4, 5, 10, 25),
            registry=registry,
        )
        self._retention_metrics(registry)
        # route: the intercepted APIs (3 values).
        self.overhead = Histogram(
            PREFIX + "overhead_seconds",
            "Time spent in the gateway itself before the upstream call went out and between the"
            " upstream's answer and the client's response start (the upstream's wait excluded).",
            ["route"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
            registry=registry,
        )
        self.key_pool_state_name = PREFIX + "key_pool_state"  # computed at scrape (keypool.py)
        self._models: dict[str, set[str]] = {}
        # Labelled children, found by their label values: `labels()` validates and locks on every
        # call, and the data plane asks for the same few series on every request. Bounded as
        # the label values are.
        self._children: dict[tuple[object, ...], Any] = {}

    def _retention_metrics(self, registry: CollectorRegistry) -> None:
        # record: the 5 record kinds; result: ok, skipped, failed; the others have no labels.
        self.retention_purged = Counter(
            PREFIX + "retention_purged_records",
            "Records the retention sweeper removed (dropped with their partition or deleted in"
            " batches), by kind.",
            ["record"],
            registry=registry,
        )
        self.retention_partitions_dropped = Counter(
            PREFIX + "retention_partitions_dropped",
            "Day partitions (one table's each) the retention sweeper dropped whole.",
            registry=registry,
        )
        self.retention_drops_deferred = Counter(
            PREFIX + "retention_drops_deferred",
            "Partition drops left for the next sweep: the table lock was not granted at once.",
            registry=registry,
        )
        self.retention_sweeps = Counter(
            PREFIX + "retention_sweeps",
            "Retention sweeps by result: ok, skipped (another replica holds the lock), failed.",
            ["result"],
            registry=registry,
        )
        self.retention_sweep_duration = Histogram(
            PREFIX + "retention_sweep_duration_seconds",
            "Duration of the retention sweeps that ran (ok or failed; skipped ones excluded).",
            buckets=(0.01, 0.05, 0.25, 1, 5, 15, 60, 300, 900),
            registry=registry,
        )
        self.retention_last_sweep = Gauge(
            PREFIX + "retention_last_sweep_timestamp_seconds",
            "When the last retention sweep started (whatever its result).",
            registry=registry,
        )
        self.retention_last_sweep_success = Gauge(
            PREFIX + "retention_last_sweep_success_timestamp_seconds",
            "When the last successful retention sweep of this replica finished (0: none yet).",
            registry=registry,
        )

    def child(self, metric: Counter | Gauge | Histogram, *values: str) -> Any:
        """`metric.labels(*values)`, cached."""
        key = (id(metric), *values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def model_label(self, provider: str, model: str) -> str:
        """The label for `model` before its outcome is known: itself once admitted, else "other"."""
        if not model:
            return "unknown"
        label = bounded_text(model, MODEL_LABEL_CHARS)
        return label if label in self._models.get(provider, ()) else OTHER_MODEL

    def admit_model(self, provider: str, model: str) -> str:
        """The label for `model` after a 2xx answer, admitting it while the provider has room.

        Only models the upstream accepted take one of a provider's MODELS_PER_PROVIDER label
        values, so a client sending junk model names cannot use them up.
        """
        if not model:
            return "unknown"
        label = bounded_text(model, MODEL_LABEL_CHARS)
        seen = self._models.setdefault(provider, set())
        if label in seen:
            return label
        if len(seen) >= MODELS_PER_PROVIDER:
            return OTHER_MODEL
        seen.add(label)
        return label
