"""API surfaces and routes: what a provider path means, and which paths are safe to forward.

Which paths each provider type serves is vendor knowledge and lives with the provider types
(`aibridged.providers`); this module has the shapes they share and the path checks every route
goes through.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import quote

from aibridged.intercept.h1 import BeforeSend
from aibridged.intercept.wire import WireFormat


class Api(enum.StrEnum):
    CHAT_COMPLETIONS = "chat_completions"
    RESPONSES = "responses"
    MESSAGES = "messages"
    PASSTHROUGH = "passthrough"


@dataclass(frozen=True, slots=True)
class Route:
    api: Api
    upstream_path: str  # appended to the provider's base URL (decoded; see encode_path)
    pattern: str  # the allow-list entry that matched (a bounded metric label)
    wire_format: WireFormat  # of the answers and errors (usually the provider's own)

    @property
    def intercepted(self) -> bool:
        return self.api is not Api.PASSTHROUGH


@dataclass(slots=True)
class UpstreamCall:
    """What the client asked of a provider, before the provider type makes an attempt of it."""

    method: str
    route: Route
    query: bytes
    headers: list[tuple[bytes, bytes]]  # the client's, filtered (intercept/headers.py), + extras
    body: bytes
    byok: bool  # the client authenticated with the governance header: its own key may go
    # Awaited just before the request's first byte goes to the provider (the recorder's start
    # commit: the attempt is prepared meanwhile); raises to send nothing.
    before_send: BeforeSend | None = None


# Methods a client may use at all; anything else is refused before any other work.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# What a decoded path may not contain: each would change meaning when the path is encoded again
# for the upstream request ("%2e%2e" would be decoded twice, "?" would start a query), or is not
# a path at all (control characters, U+FFFD from bytes that were not UTF-8).
_FORBIDDEN = frozenset("%?#\\\ufffd") | frozenset(map(chr, [*range(0x20), 0x7F]))


def plain_path(path: str) -> bool:
    """True for a path that means the same upstream as here: no traversal, no smuggling."""
    if "//" in path or not _FORBIDDEN.isdisjoint(path):
        return False
    return not any(segment in (".", "..") for segment in path.split("/"))


def encode_path(path: str) -> str:
    """A plain decoded path (see `plain_path`) encoded for the upstream URL."""
    return quote(path, safe="/:@!$&'()*+,;=-._~")
