"""The data plane: `/api/v2/aibridge/<provider>/...` (alias `/api/v2/ai-gateway/...`), raw ASGI.

Per request, in this order: provider lookup → concurrency limit → token extraction → BYOK guard →
per-token rate limit → token verification (cached, no query per request) → provider status →
route → body (size-checked while reading) → intercept or pass through. Each step either passes or
raises `Reject`, which becomes a response in the provider's error shape.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

from aibridged.auth import Principal, TokenCache
from aibridged.clients import Client, classify_client, client_session_id
from aibridged.config import AIGatewayConfig
from aibridged.errors import AuthError, StoreError
from aibridged.intercept.headers import upstream_request_headers
from aibridged.intercept.relay import (
    Exchange,
    Receive,
    RelayOutcome,
    Send,
    relay_exchange,
    send_simple,
)
from aibridged.intercept.routes import (
    Api,
    BodyRejected,
    Route,
    classify,
    encode_path,
    prepare_body,
)
from aibridged.intercept.shapes import error_body
from aibridged.intercept.upstream import UpstreamClients
from aibridged.intercept.wire import WireFormat
from aibridged.metrics import Metrics
from aibridged.providers.pool import Provider, ProviderRegistry

log = structlog.get_logger("aibridged.dataplane")

PREFIXES = ("/api/v2/aibridge/", "/api/v2/ai-gateway/")
BYOK_HEADER = b"x-coder-ai-governance-token"
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_JSON = [(b"content-type", b"application/json")]
# Any token is a valid HTTP method; metric labels take these and "other".
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A token lookup that misses the cache waits at most this long for the database.
TOKEN_LOOKUP_TIMEOUT_S = 5.0


class Reject(Exception):
    """Answer the request ourselves: `status` and `message` in the provider's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        reason: str,
        *,
        plain_text: bool = False,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason  # the `reason` label of coder_aibridged_requests_rejected_total
        self.plain_text = plain_text
        self.headers = headers or []


def _route_not_supported(method: str, path: str) -> Reject:
    # Plain text, as the reference's mux catch-all answers.
    return Reject(
        404, f"route not supported: {method} {path}", "route_not_supported", plain_text=True
    )


class RateLimiter:
    """Fixed one-second windows per key (reference §1.1); only the current window is kept."""

    def __init__(self, per_second: int) -> None:
        self._limit = per_second
        self._window = -1
        self._counts: dict[str, int] = {}

    def allow(self, key: str) -> bool:
        window = int(time.monotonic())
        if window != self._window:
            self._window = window
            self._counts.clear()
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        return count <= self._limit


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    byok: bool


@dataclass(slots=True)
class Interception:
    """What is known about one proxied request; the recorder (a later layer) builds on this."""

    id: uuid.UUID
    provider: Provider
    route: Route
    method: str
    caller: Caller
    model: str = ""
    stream: bool = False
    client: Client | None = None
    client_session_id: str | None = None
    started_at: float = field(default_factory=trio.current_time)


class DataPlane:
    def __init__(
        self,
        *,
        settings: AIGatewayConfig,
        providers: ProviderRegistry,
        tokens: TokenCache,
        upstream: UpstreamClients,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._providers = providers
        self._tokens = tokens
        self._upstream = upstream
        self._metrics = metrics
        self._rate = RateLimiter(settings.rate_limit) if settings.rate_limit > 0 else None
        self._inflight = 0

    @property
    def inflight(self) -> int:
        return self._inflight

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        prefix = PREFIXES[0] if path.startswith(PREFIXES[0]) else PREFIXES[1]
        name, slash, sub = path[len(prefix) :].partition("/")
        # The snapshot is read once: a provider swap never changes a request already admitted.
        provider = self._providers.current.get(name)
        fmt = provider.wire_format if provider is not None else WireFormat.OPENAI
        try:
            if provider is None or provider.error:
                # Unknown, or unusable (status "error"): such a provider has no routes at all.
                raise _route_not_supported(method, path)
            limit = self._settings.max_concurrency
            if limit and self._inflight >= limit:
                raise Reject(
                    503,
                    "AI Gateway is currently at capacity. Please try again later.",
                    "at_capacity",
                )
            self._inflight += 1
            try:
                await self._handle(scope, receive, send, provider, method, path, slash + sub)
            finally:
                self._inflight -= 1
        except Reject as reject:
            self._metrics.rejected.labels(reason=reject.reason).inc()
            if reject.plain_text:
                await send_simple(send, reject.status, reject.message.encode(), _TEXT)
            else:
                body = error_body(fmt, reject.status, reject.message)
                await send_simple(send, reject.status, body, _JSON + reject.headers)

    async def _handle(
        self,
        scope: dict[str, Any],
        receive: Receive,
        send: Send,
        provider: Provider,
        method: str,
        path: str,
        sub: str,
    ) -> None:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        caller = await self._authenticate(headers, method, path)
        if not provider.enabled:
            raise Reject(
                503,
                f'provider_disabled: AI provider "{provider.name}" is disabled',
                "provider_disabled",
            )
        route = classify(provider.wire_format, method, sub)
        if route is None:
            raise _route_not_supported(method, path)
        body: bytes | None = None
        with trio.move_on_after(self._settings.request_body_timeout_s) as reading:
            body = await self._read_body(receive, headers)
        if reading.cancelled_caught:
            raise Reject(
                408,
                f"request body not received within {self._settings.request_body_timeout_s:g}s",
                "body_timeout",
            )
        if body is None:
            return  # the client left while sending its request
        interception = Interception(uuid.uuid4(), provider, route, method, caller)
        extra: list[tuple[bytes, bytes]] = []
        if route.api is not Api.PASSTHROUGH:
            body = self._prepare(interception, headers, body)
            if self._settings.send_actor_headers:
                extra = [
                    (b"x-ai-bridge-actor-id", str(caller.principal.user_id).encode()),
                    (b"x-ai-bridge-actor-metadata-username", caller.principal.username.encode()),
                ]
        query = scope.get("query_string", b"")
        exchange = Exchange(
            wire_format=provider.wire_format,
            method=method,
            url=provider.base_url
            + encode_path(route.upstream_path)
            + (("?" + query.decode("latin-1")) if query else ""),
            headers=upstream_request_headers(
                headers,
                keep_client_auth=caller.byok,
                auth=_upstream_auth(provider, caller.byok, headers),
                extra=extra,
            ),
            body=body,
            stream=interception.stream,
            ping_interval_s=(
                self._settings.stream_ping_interval_s
                if interception.stream and route.api is Api.MESSAGES
                else None
            ),
        )
        if route.api is Api.PASSTHROUGH:
            outcome = await relay_exchange(
                self._upstream.pick(), exchange, receive, send, observer=None
            )
            method_label = method if method in _KNOWN_METHODS else "other"
            self._metrics.passthrough.labels(provider.name, route.pattern, method_label).inc()
            self._log_finished("passthrough.finished", interception, outcome)
            return
        model = self._metrics.model_label(provider.name, interception.model)
        inflight = self._metrics.interceptions_inflight.labels(
            provider.name, model, route.api.value
        )
        inflight.inc()
        try:
            outcome = await relay_exchange(
                self._upstream.pick(), exchange, receive, send, observer=None
            )
        finally:
            inflight.dec()
        status = (
            "cancelled"
            if outcome.client_gone
            else "failed"
            if outcome.error or outcome.status >= 400
            else "completed"
        )
        client = str(interception.client or Client.UNKNOWN)
        self._metrics.interceptions.labels(
            provider.name, model, status, route.api.value, method, client
        ).inc()
        self._metrics.interceptions_duration.labels(provider.name, model).observe(
            trio.current_time() - interception.started_at
        )
        self._log_finished("interception.finished", interception, outcome)

    def _prepare(
        self, interception: Interception, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> bytes:
        """Validate the JSON body, apply the reference's rewrites, classify the client."""
        if not _is_json(headers):
            raise Reject(415, "Content-Type must be application/json", "bad_request")
        try:
            prepared = prepare_body(interception.route.api, body)
        except BodyRejected as exc:
            raise Reject(exc.status, exc.message, "bad_request") from exc
        interception.model = prepared.model
        interception.stream = prepared.stream
        text_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
        interception.client = classify_client(text_headers)
        interception.client_session_id = client_session_id(
            interception.client, text_headers, prepared.parsed
        )
        return prepared.body

    def _log_finished(self, event: str, interception: Interception, outcome: RelayOutcome) -> None:
        log.info(
            event,
            interception_id=str(interception.id),
            provider=interception.provider.name,
            route=interception.route.api.value,
            model=interception.model,
            stream=interception.stream,
            initiator=interception.caller.principal.username,
            credential="byok" if interception.caller.byok else "centralized",
            client=str(interception.client) if interception.client else None,
            client_session_id=interception.client_session_id,
            status=outcome.status,
            bytes=outcome.bytes_out,
            events=outcome.events,
            pings=outcome.pings,
            client_gone=outcome.client_gone,
            error=outcome.error or None,
            duration_s=round(trio.current_time() - interception.started_at, 4),
        )

    async def _authenticate(
        self, headers: list[tuple[bytes, bytes]], method: str, path: str
    ) -> Caller:
        byok_token = b""
        bearer = b""
        api_key = b""
        for name, value in headers:
            if name == BYOK_HEADER:
                byok_token = value.strip()
            elif name == b"authorization":
                parts = value.split()
                if len(parts) == 2 and parts[0].lower() == b"bearer":
                    bearer = parts[1]
            elif name == b"x-api-key":
                api_key = value.strip()
        token = byok_token or bearer or api_key
        if not token:
            if method != "HEAD":  # Claude Code probes connectivity with credential-less HEADs
                log.info("auth.no_token", path=path)
            raise Reject(400, "no authentication key provided", "no_token")
        byok = bool(byok_token)
        if byok and not self._settings.allow_byok:
            raise Reject(403, "Bring Your Own Key (BYOK) mode is not enabled.", "byok_disabled")
        text = token.decode("latin-1")
        if self._rate is not None and not self._rate.allow(text):
            raise Reject(
                429,
                "You've been rate limited. Please try again later.",
                "rate_limited",
                headers=[(b"retry-after", b"1")],
            )
        try:
            with trio.fail_after(TOKEN_LOOKUP_TIMEOUT_S):
                principal = await self._tokens.verify(text)
        except AuthError as exc:
            log.info("auth.rejected", reason=exc.reason)
            raise Reject(403, "unauthorized", "unauthorized") from exc
        except (StoreError, trio.TooSlowError) as exc:
            log.error("auth.store_unavailable", error=str(exc) or "token lookup timed out")
            raise Reject(
                503, "could not verify the token: database unavailable", "store_unavailable"
            ) from exc
        return Caller(principal, byok)

    async def _read_body(
        self, receive: Receive, headers: list[tuple[bytes, bytes]]
    ) -> bytes | None:
        limit = self._settings.max_body_bytes
        too_large = Reject(
            413,
            "Request body too large. The maximum allowed request body size is "
            f"{_human_size(limit)}.",
            "body_too_large",
        )
        for name, value in headers:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large  # checked while reading: never buffer more than the limit
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _human_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}B"


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


def _upstream_auth(
    provider: Provider, byok: bool, headers: list[tuple[bytes, bytes]]
) -> tuple[bytes, bytes] | None:
    """The provider credential to inject, or None to send the client's own (BYOK).

    In BYOK mode the user's own Authorization / X-Api-Key go upstream; only a BYOK request that
    carries no credential of its own falls back to the provider's key (reference §2.8).
    """
    if byok and any(name in (b"authorization", b"x-api-key") for name, _ in headers):
        return None
    if not provider.key:
        return None
    if provider.wire_format is WireFormat.ANTHROPIC:
        return (b"x-api-key", provider.key.encode())
    return (b"authorization", b"Bearer " + provider.key.encode())
