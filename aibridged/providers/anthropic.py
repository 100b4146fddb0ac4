"""Anthropic-format providers: anthropic (bedrock, in providers/bedrock/, signs with AWS keys).

Messages is intercepted; the base URL has no `/v1`. Keys go in `X-Api-Key`. In BYOK mode the
caller's own `X-Api-Key` (a personal key) wins; else its `Authorization: Bearer` (a Claude Pro/Max
OAuth token) goes as it is (as Coder's AI Gateway does).
"""

from __future__ import annotations

from aibridged.intercept.routes import Api, UpstreamCall
from aibridged.intercept.wire import WireFormat
from aibridged.providers.family import Credential, Passthrough, ProviderFamily

_WRITE = frozenset({"POST"})


class AnthropicFamily(ProviderFamily):
    wire_format = WireFormat.ANTHROPIC
    intercepted = {"/v1/messages": Api.MESSAGES}
    passthrough = (
        Passthrough("/v1/models"),
        Passthrough("/v1/models/"),
        Passthrough("/v1/messages/count_tokens", _WRITE),
        Passthrough("/api/event_logging/", _WRITE),  # Claude Code's telemetry
    )

    def key_header(self, key: str) -> tuple[bytes, bytes]:
        return (b"x-api-key", key.encode())

    def byok_secret(self, call: UpstreamCall) -> str | None:
        api_key = next((v for n, v in call.headers if n == b"x-api-key"), None)
        if api_key is not None:
            return api_key.strip().decode("latin-1")
        return super().byok_secret(call)

    def auth_headers(
        self, headers: list[tuple[bytes, bytes]], credential: Credential
    ) -> list[tuple[bytes, bytes]]:
        if credential.kind == "byok" and any(name == b"x-api-key" for name, _ in headers):
            return [(name, value) for name, value in headers if name != b"authorization"]
        return super().auth_headers(headers, credential)


ANTHROPIC = AnthropicFamily()
