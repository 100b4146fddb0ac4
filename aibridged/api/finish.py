"""Every interception finishes: metrics and the `interception.finished` line, exactly once.

`Finisher.finish` runs just before the response's last byte goes out (so a client that has its
whole answer can rely on the counters and the log line being there), and again, as a no-op, in
the data plane's `finally`: whatever ended the exchange (an upstream error, the client leaving, a
cancellation at the shutdown deadline), it is counted and logged, and its end is recorded with
what was seen so far.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import structlog
import trio
from prometheus_client import Gauge

from aibridged.api.caller import Caller
from aibridged.api.recording import Recording
from aibridged.clients import Client
from aibridged.intercept.client import RelayOutcome
from aibridged.intercept.extract import RequestFacts
from aibridged.intercept.routes import Route
from aibridged.metrics import Metrics
from aibridged.providers.attempts import Attempts
from aibridged.providers.pool import Provider
from aibridged.safe import bounded_text
from aibridged.tracing import NO_TRACE, InterceptionTrace

log = structlog.get_logger("aibridged.dataplane")

CUT_BY_GATEWAY = "cut by the gateway before the response ended (shutdown deadline)"


@dataclass(slots=True)
class Interception:
    """What is known about one proxied request; the recorder (a later layer) builds on this."""

    id: uuid.UUID
    provider: Provider
    route: Route
    method: str
    caller: Caller
    outcome: RelayOutcome
    trace: InterceptionTrace = NO_TRACE  # its spans (tracing on) or nothing
    model: str = ""
    stream: bool = False
    client: Client | None = None
    client_session_id: str | None = None
    started_at: float = field(default_factory=trio.current_time)
    attempts: Attempts = field(default_factory=Attempts)
    finished: bool = False
    _inflight: Gauge | None = None  # the gauge child counted at the start
    facts: RequestFacts | None = None  # what recording reads of the request
    recording: Recording | None = None
    upstream_called_at: float | None = None  # for the overhead histogram
    upstream_answered_at: float | None = None


class Finisher:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def started(self, interception: Interception) -> None:
        if interception.route.intercepted:
            name = interception.provider.name
            model = self._metrics.model_label(name, interception.model)
            metrics = self._metrics
            gauge = metrics.child(
                metrics.interceptions_inflight, name, model, interception.route.api.value
            )
            gauge.inc()
            interception._inflight = gauge

    def finish(self, interception: Interception) -> None:
        """Count and log `interception` (once; later calls do nothing)."""
        if interception.finished:
            return
        interception.finished = True
        outcome = interception.outcome
        if not (outcome.complete or outcome.client_gone or outcome.error):
            outcome.error = CUT_BY_GATEWAY
        provider = interception.provider.name
        duration = trio.current_time() - interception.started_at
        metrics = self._metrics
        if outcome.parse_abandoned:
            metrics.child(metrics.stream_parse_abandoned, provider).inc()
        if not interception.route.intercepted:
            route = interception.route.pattern
            metrics.child(metrics.passthrough, provider, route, interception.method).inc()
            self._log("passthrough.finished", interception, duration)
            return
        gauge = interception._inflight
        if gauge is not None:
            gauge.dec()
        status = _status(outcome)
        if 200 <= outcome.status < 300:
            model = self._metrics.admit_model(provider, interception.model)
        else:
            model = self._metrics.model_label(provider, interception.model)
        client = str(interception.client or Client.UNKNOWN)
        api = interception.route.api.value
        metrics.child(
            metrics.interceptions, provider, model, status, api, interception.method, client
        ).inc()
        metrics.child(metrics.interceptions_duration, provider, model).observe(duration)
        self._observe_overhead(interception)
        if interception.recording is not None:
            credential = interception.attempts.credential
            interception.recording.end(
                status,
                outcome.error,
                credential.hint if credential else "",
                answered=200 <= outcome.status < 300,
            )
        self._log("interception.finished", interception, duration)

    def _observe_overhead(self, interception: Interception) -> None:
        """The gateway's own time: until the upstream call went out, and from the upstream's
        answer to the client's response start."""
        called, answered = interception.upstream_called_at, interception.upstream_answered_at
        if called is None:
            return
        own = called - interception.started_at
        first_byte = interception.outcome.first_byte_at
        if answered is not None and first_byte is not None and first_byte >= answered:
            own += first_byte - answered
        api = interception.route.api.value
        self._metrics.child(self._metrics.overhead, api).observe(max(own, 0.0))

    def _log(self, event: str, interception: Interception, duration: float) -> None:
        outcome = interception.outcome
        credential = interception.attempts.credential
        log.info(
            event,
            interception_id=str(interception.id),
            provider=interception.provider.name,
            route=interception.route.api.value,
            model=bounded_text(interception.model),
            stream=interception.stream,
            initiator=interception.caller.principal.username,
            credential=credential.kind if credential else None,
            credential_hint=credential.hint if credential else None,
            client=str(interception.client) if interception.client else None,
            client_session_id=(
                bounded_text(interception.client_session_id)
                if interception.client_session_id
                else None
            ),
            status=outcome.status,
            bytes=outcome.bytes_out,
            events=outcome.events,
            pings=outcome.pings,
            attempts=interception.attempts.count,
            client_gone=outcome.client_gone,
            parse_abandoned=outcome.parse_abandoned or None,
            error=outcome.error or None,
            duration_s=round(duration, 4),
        )


def _status(outcome: RelayOutcome) -> str:
    """The `status` label: completed, failed, or cancelled (the client left)."""
    if outcome.client_gone:
        return "cancelled"
    if outcome.error or outcome.status >= 400 or not outcome.complete:
        return "failed"
    return "completed"
