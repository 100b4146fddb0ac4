"""The data plane: `/api/v2/aibridge/<provider>/...` (alias `/api/v2/ai-gateway/...`), raw ASGI.

Per request, in this order: provider lookup → concurrency limit → token extraction → BYOK guard →
per-token rate limit → token verification (cached, no query per request) → provider status →
route → body (size-checked while reading) → intercept or pass through.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx2
import structlog
import trio

from aibridged.auth import Principal, TokenCache
from aibridged.clients import classify_client, client_session_id
from aibridged.config import AIGatewayConfig
from aibridged.errors import AuthError, StoreError
from aibridged.intercept.headers import upstream_request_headers
from aibridged.intercept.relay import Exchange, Receive, Send, relay_exchange, send_simple
from aibridged.intercept.routes import Api, BodyRejected, classify, prepare_body
from aibridged.intercept.shapes import error_body
from aibridged.providers.pool import Provider, ProviderRegistry
from aibridged.providers.types import WireFormat

log = structlog.get_logger("aibridged.dataplane")

PREFIXES = ("/api/v2/aibridge/", "/api/v2/ai-gateway/")
BYOK_HEADER = b"x-coder-ai-governance-token"
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


def _human_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}B"


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
class _Caller:
    principal: Principal
    byok: bool


class DataPlane:
    def __init__(
        self,
        *,
        settings: AIGatewayConfig,
        providers: ProviderRegistry,
        tokens: TokenCache,
        client: httpx2.AsyncClient,
    ) -> None:
        self._settings = settings
        self._providers = providers
        self._tokens = tokens
        self._client = client
        self._rate = RateLimiter(settings.rate_limit) if settings.rate_limit > 0 else None
        self._inflight = 0

    @property
    def inflight(self) -> int:
        return self._inflight

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        rest = (
            path[len(PREFIXES[0]) :] if path.startswith(PREFIXES[0]) else path[len(PREFIXES[1]) :]
        )
        name, slash, sub = rest.partition("/")
        provider = self._providers.current.get(name)
        if provider is None or provider.error:
            # An unknown provider, or one that cannot be built (status "error"), has no routes.
            await send_simple(send, 404, f"route not supported: {method} {path}".encode(), _TEXT)
            return
        fmt = provider.wire_format
        limit = self._settings.max_concurrency
        if limit and self._inflight >= limit:
            await self._fail(
                send, fmt, 503, "AI Gateway is currently at capacity. Please try again later."
            )
            return
        self._inflight += 1
        try:
            await self._handle(scope, receive, send, provider, method, path, slash + sub)
        finally:
            self._inflight -= 1

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
        fmt = provider.wire_format
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        caller = await self._authenticate(headers, send, fmt, method, path)
        if caller is None:
            return
        if not provider.enabled:
            await self._fail(
                send, fmt, 503, f'provider_disabled: AI provider "{provider.name}" is disabled'
            )
            return
        route = classify(fmt, method, sub)
        if route is None:
            await send_simple(send, 404, f"route not supported: {method} {path}".encode(), _TEXT)
            return
        body = await self._read_body(receive, send, fmt, headers)
        if body is None:
            return
        query = scope.get("query_string", b"")
        url = (
            provider.base_url
            + route.upstream_path
            + (("?" + query.decode("latin-1")) if query else "")
        )
        auth = _upstream_auth(provider, caller.byok, headers)
        stream = False
        model = ""
        upstream_body = body
        extra: list[tuple[bytes, bytes]] = []
        interception_id = uuid.uuid4()
        if route.api is not Api.PASSTHROUGH:
            if not _is_json(headers):
                await self._fail(send, fmt, 415, "Content-Type must be application/json")
                return
            try:
                prepared = prepare_body(route.api, body)
            except BodyRejected as exc:
                await self._fail(send, fmt, exc.status, exc.message)
                return
            stream, model, upstream_body = prepared.stream, prepared.model, prepared.body
            if self._settings.send_actor_headers:
                extra = [
                    (b"x-ai-bridge-actor-id", str(caller.principal.user_id).encode()),
                    (b"x-ai-bridge-actor-metadata-username", caller.principal.username.encode()),
                ]
            text_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
            client = classify_client(text_headers)
            session = client_session_id(client, text_headers, prepared.parsed)
        else:
            client, session = None, None
        exchange = Exchange(
            wire_format=fmt,
            method=method,
            url=url,
            headers=upstream_request_headers(
                headers, keep_client_auth=caller.byok, auth=auth, extra=extra
            ),
            body=upstream_body,
            stream=stream,
            ping_interval_s=(
                self._settings.stream_ping_interval_s
                if stream and route.api is Api.MESSAGES
                else None
            ),
        )
        started = trio.current_time()
        outcome = await relay_exchange(self._client, exchange, receive, send, observer=None)
        log.info(
            "interception.finished" if route.api is not Api.PASSTHROUGH else "passthrough.finished",
            interception_id=str(interception_id),
            provider=provider.name,
            route=route.api.value,
            model=model,
            stream=stream,
            initiator=caller.principal.username,
            credential="byok" if caller.byok else "centralized",
            client=str(client) if client else None,
            client_session_id=session,
            status=outcome.status,
            bytes=outcome.bytes_out,
            events=outcome.events,
            pings=outcome.pings,
            client_gone=outcome.client_gone,
            error=outcome.error or None,
            duration_s=round(trio.current_time() - started, 4),
        )

    async def _authenticate(
        self,
        headers: list[tuple[bytes, bytes]],
        send: Send,
        fmt: WireFormat,
        method: str,
        path: str,
    ) -> _Caller | None:
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
            await self._fail(send, fmt, 400, "no authentication key provided")
            return None
        byok = bool(byok_token)
        if byok and not self._settings.allow_byok:
            await self._fail(send, fmt, 403, "Bring Your Own Key (BYOK) mode is not enabled.")
            return None
        text = token.decode("latin-1")
        if self._rate is not None and not self._rate.allow(text):
            await send_simple(
                send,
                429,
                error_body(fmt, 429, "You've been rate limited. Please try again later."),
                [(b"content-type", b"application/json"), (b"retry-after", b"1")],
            )
            return None
        try:
            principal = await self._tokens.verify(text)
        except AuthError as exc:
            log.info("auth.rejected", reason=exc.reason)
            await self._fail(send, fmt, 403, "unauthorized")
            return None
        except StoreError as exc:
            log.error("auth.store_unavailable", error=str(exc))
            await self._fail(send, fmt, 503, "could not verify the token: database unavailable")
            return None
        return _Caller(principal, byok)

    async def _read_body(
        self, receive: Receive, send: Send, fmt: WireFormat, headers: list[tuple[bytes, bytes]]
    ) -> bytes | None:
        limit = self._settings.max_body_bytes
        too_large = (
            "Request body too large. The maximum allowed request body size is "
            f"{_human_size(limit)}."
        )
        for name, value in headers:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._fail(send, fmt, 413, too_large)
                return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._fail(send, fmt, 413, too_large)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks) if len(chunks) != 1 else chunks[0]

    async def _fail(self, send: Send, fmt: WireFormat, status: int, message: str) -> None:
        await send_simple(send, status, error_body(fmt, status, message))


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
