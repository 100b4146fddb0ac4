"""The data plane: `/api/v2/aibridge/<provider>/...` (alias `/api/v2/ai-gateway/...`), raw ASGI.

Per request, in this order: method check → provider lookup → concurrency limit → caller
(token, BYOK guard, rate limits, cached verification; `caller.py`) → provider status → route →
body (size and deadline; `body.py`) → JSON checks and rewrites → the exchange: the provider type
opens the upstream answer (`providers/attempts.py`), the relay streams it back
(`intercept/relay.py`) → finishing (`finish.py`). Each step either passes or raises `Rejected`,
which becomes a response in the provider's error shape.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

import structlog
import trio

from aibridged.api.asgi import DATAPLANE_PREFIXES
from aibridged.api.body import is_json, read_body
from aibridged.api.caller import Caller, CallerAuth
from aibridged.api.finish import Finisher, Interception
from aibridged.api.recording import Recording, open_recording, start_fields
from aibridged.auth import TokenCache
from aibridged.clients import Client, classify_client, client_session_id
from aibridged.config import AIGatewayConfig
from aibridged.dump import Dumps, Taps
from aibridged.errors import Rejected, UpstreamError
from aibridged.intercept.attempt import send_upstream_error
from aibridged.intercept.client import (
    JSON_HEADERS,
    TEXT_HEADERS,
    Receive,
    RelayOutcome,
    Send,
    run_watched,
    send_simple,
)
from aibridged.intercept.extract import request_facts
from aibridged.intercept.headers import forwarded_headers
from aibridged.intercept.payload import PREPARE_IN_THREAD_BYTES, PreparedBody, prepare_body
from aibridged.intercept.relay import RelayPlan, relay_response
from aibridged.intercept.routes import KNOWN_METHODS, Api, UpstreamCall
from aibridged.intercept.shapes import error_body
from aibridged.intercept.upstream import UpstreamClient
from aibridged.intercept.wire import WireFormat
from aibridged.log import bind_request
from aibridged.metrics import Metrics
from aibridged.providers.attempts import Resilience, open_upstream
from aibridged.providers.pool import Provider, ProviderRegistry
from aibridged.recorder import Recorder
from aibridged.safe import bounded_text
from aibridged.tracing import TRACING_OFF, InterceptionTrace, Tracing

log = structlog.get_logger("aibridged.dataplane")


def route_not_supported(method: str, path: str) -> Rejected:
    # Plain text, as Coder's mux catch-all answers; client-chosen parts bounded.
    return Rejected(
        404,
        f"route not supported: {bounded_text(method, 32)} {bounded_text(path, 512)}",
        "route_not_supported",
        plain_text=True,
    )


class DataPlane:
    def __init__(
        self,
        *,
        settings: AIGatewayConfig,
        providers: ProviderRegistry,
        tokens: TokenCache,
        upstream: UpstreamClient,
        metrics: Metrics,
        recorder: Recorder | None = None,
        dumps: Dumps | None = None,
        tracing: Tracing = TRACING_OFF,
    ) -> None:
        self._settings = settings
        self._tracing = tracing
        self._recorder = recorder
        self._dumps = dumps
        self._providers = providers
        self._auth = CallerAuth(settings, tokens)
        self._upstream = upstream
        self._metrics = metrics
        self._finisher = Finisher(metrics)
        self._resilience = Resilience(settings.circuit_breaker, metrics, providers)
        self._inflight = 0

    @property
    def inflight(self) -> int:
        return self._inflight

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        prefix = next(p for p in DATAPLANE_PREFIXES if path.startswith(p))
        name, slash, sub = path[len(prefix) :].partition("/")
        # The snapshot is read once: a provider swap never changes a request already admitted.
        provider = self._providers.current.get(name)
        fmt = provider.wire_format if provider is not None else WireFormat.OPENAI
        outcome = RelayOutcome()
        try:
            try:
                await self._admit(scope, receive, send, provider, slash + sub, outcome)
            except Rejected as reject:
                await self._reject(send, outcome.wire_format or fmt, reject, outcome)
        # The last resort: nothing a client or an upstream does may reach hypercorn as a crash.
        except Exception as exc:
            log.exception("dataplane.unhandled_error", error=f"{type(exc).__name__}: {exc}")
            if not outcome.started:
                body = error_body(outcome.wire_format or fmt, 500, "internal error in the gateway")
                await send_simple(send, 500, body, JSON_HEADERS, outcome)
            # else: leaving the response unfinished makes hypercorn drop the connection.

    async def _admit(
        self,
        scope: dict[str, Any],
        receive: Receive,
        send: Send,
        provider: Provider | None,
        sub: str,
        outcome: RelayOutcome,
    ) -> None:
        method: str = scope["method"]
        if method not in KNOWN_METHODS or provider is None:
            # Unknown methods are refused before any other work; unusable providers (status
            # "error") and unknown names have no routes at all.
            raise route_not_supported(method, scope["path"])
        bind_request(provider=provider.name)
        client = scope.get("client")
        # Authenticated before taking a concurrency slot: callers with made-up tokens, waiting
        # on their lookups, never hold slots real users need.
        caller = await self._auth.authenticate(
            scope["headers"], method, client[0] if client else ""
        )
        bind_request(initiator=caller.principal.username)
        limit = self._settings.max_concurrency
        if limit and self._inflight >= limit:
            raise Rejected(
                503, "AI Gateway is currently at capacity. Please try again later.", "at_capacity"
            )
        self._inflight += 1
        try:
            with self._tracing.intercept(scope, provider, sub, caller.principal) as trace:
                await self._handle(scope, receive, send, provider, caller, sub, outcome, trace)
        finally:
            self._inflight -= 1

    async def _reject(
        self, send: Send, fmt: WireFormat, reject: Rejected, outcome: RelayOutcome
    ) -> None:
        self._metrics.rejected.labels(reason=reject.reason).inc()
        if outcome.started:
            return  # a response is already on its way (cannot happen today; never send two)
        if reject.plain_text:
            await send_simple(send, reject.status, reject.message.encode(), TEXT_HEADERS, outcome)
        else:
            body = error_body(fmt, reject.status, reject.message)
            await send_simple(send, reject.status, body, JSON_HEADERS + reject.headers, outcome)

    async def _handle(
        self,
        scope: dict[str, Any],
        receive: Receive,
        send: Send,
        provider: Provider,
        caller: Caller,
        sub: str,
        outcome: RelayOutcome,
        trace: InterceptionTrace,
    ) -> None:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        method: str = scope["method"]
        if not provider.enabled:
            raise Rejected(
                503,
                f'provider_disabled: AI provider "{provider.name}" is disabled',
                "provider_disabled",
            )
        route = provider.route(method, sub)
        if route is None:
            raise route_not_supported(method, scope["path"])
        outcome.wire_format = route.wire_format  # rejections from here on speak the route's format
        body = await read_body(
            receive,
            headers,
            limit=self._settings.max_body_bytes,
            timeout_s=self._settings.request_body_timeout_s,
        )
        if body is None:
            return  # the client left while sending its request
        interception = Interception(uuid.uuid4(), provider, route, method, caller, outcome, trace)
        bind_request(interception_id=str(interception.id))
        extra: list[tuple[bytes, bytes]] = []
        if route.intercepted:
            with trace.creating(interception):
                body = await self._prepare(interception, headers, body)
            extra = self._actor_headers(caller)
        call = UpstreamCall(
            method=method,
            route=route,
            query=scope.get("query_string", b""),
            headers=forwarded_headers(
                headers, keep_client_auth=caller.byok, gateway_token=caller.token
            )
            + extra,
            body=body,
            byok=caller.byok,
        )
        provider.family.admit(call)
        if interception.facts is not None:
            with trace.recording():
                interception.recording = self._open_recording(interception, call)
            call.before_send = partial(self._start_committed, interception)
        self._finisher.started(interception)
        try:
            if interception.recording is not None:
                await interception.recording.wait_sent()
            with trace.processing(interception):
                await run_watched(
                    receive, outcome, partial(self._exchange, interception, call, send)
                )
        except Exception as exc:  # a bug: finished as such, not as a cut at the deadline
            outcome.error = outcome.error or f"internal error ({type(exc).__name__})"
            raise
        finally:
            self._finisher.finish(interception)

    async def _exchange(self, interception: Interception, call: UpstreamCall, send: Send) -> None:
        provider, outcome = interception.provider, interception.outcome
        fmt = interception.route.wire_format
        before_end = partial(self._finisher.finish, interception)
        interception.upstream_called_at = trio.current_time()
        interception.attempts.new_tap = self._taps(interception)
        try:
            call = interception.trace.upstream_call(call)  # with tracing: its traceparent
            response = await open_upstream(
                self._upstream,
                provider,
                call,
                interception.attempts,
                self._resilience,
                interception.model,
            )
        except UpstreamError as exc:
            await send_upstream_error(send, fmt, exc, outcome, before_end)
            return
        except Rejected as reject:  # the start could not be committed: nothing went upstream
            outcome.error = reject.message
            await self._reject(send, fmt, reject, outcome)
            return
        interception.upstream_answered_at = trio.current_time()
        try:
            await relay_response(
                response,
                self._plan(interception, call),
                send,
                outcome,
                observer=interception.trace.observer(interception.recording),
                before_end=before_end,
            )
        except UpstreamError as exc:  # refused before any byte was relayed
            await send_upstream_error(send, fmt, exc, outcome, before_end)
        finally:
            with trio.CancelScope(shield=True):
                await response.aclose()

    def _taps(self, interception: Interception) -> Taps | None:
        """The API dumps of this request's upstream attempts (None: dumps are off)."""
        if self._dumps is None:
            return None
        model = interception.model if interception.route.intercepted else None
        return self._dumps.taps(interception.provider.name, model, interception.id)

    def _plan(self, interception: Interception, call: UpstreamCall) -> RelayPlan:
        provider = interception.provider
        pings = interception.stream and interception.route.api is Api.MESSAGES
        return RelayPlan(
            wire_format=interception.route.wire_format,
            intercepted=interception.route.intercepted,
            head_request=call.method == "HEAD",
            ping_interval_s=self._settings.stream_ping_interval_s if pings else None,
            max_event_bytes=self._settings.max_event_bytes,
            transcoder=provider.family.transcoder(provider, call),
        )

    async def _prepare(
        self, interception: Interception, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> bytes:
        """Validate the JSON body, apply Coder's rewrites, classify the client."""
        if not is_json(headers):
            raise Rejected(415, "Content-Type must be application/json", "bad_request")
        api = interception.route.api
        prepared: PreparedBody
        if len(body) > PREPARE_IN_THREAD_BYTES:  # keep the event loop free for everyone else
            prepared = await trio.to_thread.run_sync(prepare_body, api, body)
        else:
            prepared = prepare_body(api, body)
        provider = interception.provider
        interception.model = provider.family.recorded_model(provider, prepared.model)
        interception.stream = prepared.stream
        text_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
        interception.client = classify_client(text_headers)
        interception.client_session_id = client_session_id(
            interception.client, text_headers, prepared.parsed
        )
        if self._recorder is not None:
            interception.facts = request_facts(api, prepared.parsed)
        return prepared.body

    def _open_recording(self, interception: Interception, call: UpstreamCall) -> Recording:
        """Submit the interception's start; the call waits for its commit before sending."""
        assert self._recorder is not None and interception.facts is not None
        provider, caller = interception.provider, interception.caller
        credential = provider.family.credential(provider, call)  # what the first attempt uses
        fields = start_fields(
            call,
            initiator_id=caller.principal.user_id,
            api_key_id=caller.principal.token_id,
            provider_name=provider.name,
            wire_format=interception.route.wire_format,
            model=interception.model,
            client=str(interception.client or Client.UNKNOWN),
            client_session_id=interception.client_session_id,
            credential_kind=credential.kind,
            credential_hint=credential.hint,
        )
        return open_recording(
            self._recorder,
            interception_id=interception.id,
            api=interception.route.api,
            stream=interception.stream,
            facts=interception.facts,
            fields=fields,
        )

    async def _start_committed(self, interception: Interception) -> None:
        """The upstream call's `before_send`: its start committed (Rejected if it cannot be).
        The gateway's own time runs until then (the overhead histogram)."""
        recording = interception.recording
        assert recording is not None
        if not recording.is_committed:  # the first attempt; the others go straight on
            await recording.committed()
            interception.upstream_called_at = trio.current_time()

    def _actor_headers(self, caller: Caller) -> list[tuple[bytes, bytes]]:
        if not self._settings.send_actor_headers:
            return []
        return [
            (b"x-ai-bridge-actor-id", str(caller.principal.user_id).encode()),
            (b"x-ai-bridge-actor-metadata-username", caller.principal.username.encode()),
        ]
