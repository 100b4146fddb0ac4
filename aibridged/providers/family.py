"""How one family of provider types talks upstream: its routes, its credentials, its URLs.

A `ProviderFamily` holds the vendor knowledge the data plane must not have: which paths are
intercepted or passed through (and with which methods), how a key is presented, which BYOK
credentials go through, and how the upstream request is built for one attempt. The data plane
asks the provider (`Provider.route`, `open_upstream`) and never looks at the vendor itself, so a
family with its own routes and headers (Copilot) or its own signing and URL scheme (Bedrock) is
added here without touching the data plane.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aibridged.intercept.headers import CLIENT_AUTH, IDENTITY_ENCODING
from aibridged.intercept.relay import StreamTranscoder
from aibridged.intercept.routes import Api, Route, UpstreamCall, encode_path, plain_path
from aibridged.intercept.upstream import UpstreamRequest
from aibridged.intercept.wire import WireFormat
from aibridged.safe import mask_secret

if TYPE_CHECKING:
    from aibridged.providers.pool import Provider

READ = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class Passthrough:
    """An allow-listed path forwarded unchanged, with the methods it allows."""

    path: str  # ending in "/": everything below it (not the path itself)
    methods: frozenset[str] = READ

    def matches(self, path: str) -> bool:
        if self.path.endswith("/"):
            return path.startswith(self.path) and not path.endswith("/")
        return path == self.path


@dataclass(frozen=True, slots=True)
class Credential:
    """What authenticates one attempt upstream."""

    kind: str  # "centralized" (a provider key) or "byok" (the caller's own)
    header: tuple[bytes, bytes] | None = None  # added to the request; None: the client's own
    hint: str = ""  # masked, for logs and records


class ProviderFamily:
    """The behaviour shared by the provider types of one wire format."""

    wire_format: WireFormat
    intercepted: Mapping[str, Api] = {}
    passthrough: tuple[Passthrough, ...] = ()
    # Leading part of the client path the base URL already holds (OpenAI base URLs end in /v1).
    prefix_in_base_url: str = ""
    # Surfaces answered in another format than the family's own (Copilot's Messages).
    route_formats: Mapping[Api, WireFormat] = {}

    def route(self, method: str, path: str) -> Route | None:
        """The route for `method path` (relative to the provider's prefix), or None."""
        if not plain_path(path):
            return None  # no traversal or smuggling games with the upstream URL
        upstream = path
        if self.prefix_in_base_url and path.startswith(self.prefix_in_base_url + "/"):
            upstream = path[len(self.prefix_in_base_url) :]
        api = self.intercepted.get(path)
        if api is not None:
            if method != "POST":
                return None
            return Route(api, upstream, path, self.route_formats.get(api, self.wire_format))
        for rule in self.passthrough:
            if rule.matches(path):
                if method not in rule.methods:
                    return None  # read-only unless the route needs more: no writes with our key
                return Route(Api.PASSTHROUGH, upstream, rule.path, self.wire_format)
        return None

    def settings_problem(
        self,
        provider_id: uuid.UUID,
        base_url: str,
        settings: Mapping[str, Any],
        secrets: Mapping[str, str],
    ) -> str:
        """Why a provider of this family with these settings cannot be served ("": it can).
        Asked when the provider is built: such a provider gets status "error"."""
        return ""

    def recorded_model(self, provider: Provider, requested: str) -> str:
        """The model an interception is recorded (and counted) under: the one the client asked
        for, unless the provider type calls another (Bedrock's model mapping)."""
        return requested

    def admit(self, call: UpstreamCall) -> None:
        """Refuse (`Rejected`) a call this family cannot make at all, before any upstream work."""

    def credential(self, provider: Provider, call: UpstreamCall) -> Credential:
        """The credential of the next attempt: the caller's own in BYOK mode when it sent one
        (as Coder's AI Gateway does), else the provider's key."""
        if call.byok:
            own = self.byok_secret(call)
            if own is not None:
                return Credential("byok", None, mask_secret(own))
        if not provider.keys:
            return Credential("centralized")
        return self.key_credential(provider.keys[0])

    def key_credential(self, key: str) -> Credential:
        """The credential of an attempt with one of the provider's keys (failover walks them)."""
        return Credential("centralized", self.key_header(key), mask_secret(key))

    def byok_secret(self, call: UpstreamCall) -> str | None:
        """The caller's own credential among its forwarded headers, if any."""
        for name, value in call.headers:
            if name in CLIENT_AUTH:
                return _secret_of(value)
        return None

    def key_header(self, key: str) -> tuple[bytes, bytes]:
        return (b"authorization", b"Bearer " + key.encode())

    def auth_headers(
        self, headers: list[tuple[bytes, bytes]], credential: Credential
    ) -> list[tuple[bytes, bytes]]:
        """`headers` as they go upstream under `credential`."""
        if credential.kind == "byok":
            return list(headers)
        out = [(name, value) for name, value in headers if name not in CLIENT_AUTH]
        if credential.header is not None:
            out.append(credential.header)
        return out

    def build_request(
        self, provider: Provider, call: UpstreamCall, credential: Credential
    ) -> UpstreamRequest:
        """The upstream request of one attempt."""
        query = call.query.decode("latin-1")
        target = encode_path(call.route.upstream_path) + ("?" + query if query else "")
        headers = self.auth_headers(call.headers, credential)
        headers.append(IDENTITY_ENCODING)
        assert provider.origin is not None  # providers in status "error" are never served
        return UpstreamRequest(call.method, provider.origin, target, headers, call.body)

    def transcoder(self, provider: Provider, call: UpstreamCall) -> StreamTranscoder | None:
        """An event-level transform of streamed answers (None: relay the bytes)."""
        return None


def _secret_of(value: bytes) -> str:
    parts = value.split()
    secret = parts[1] if len(parts) == 2 and parts[0].lower() == b"bearer" else value.strip()
    return secret.decode("latin-1")
