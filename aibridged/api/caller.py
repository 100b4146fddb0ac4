"""Who is calling: the gateway token, BYOK mode, and the checks in front of the token lookup.

The token is read, in order, from `X-Coder-AI-Governance-Token` (its presence means BYOK mode),
`Authorization: Bearer` and `X-Api-Key`, as Coder's AI Gateway does. Then: the BYOK guard, the rate
limit, the per-address limit on failed authentications, and the cached verification.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
import trio

from aibridged.api.limits import AuthFailureLimiter, RateLimiter
from aibridged.auth import Principal, TokenCache
from aibridged.config import AIGatewayConfig
from aibridged.errors import AuthError, Rejected, StoreError

log = structlog.get_logger("aibridged.dataplane")

BYOK_HEADER = b"x-coder-ai-governance-token"
# A token lookup that misses the cache waits at most this long for the database.
TOKEN_LOOKUP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    byok: bool
    token: bytes = b""  # as presented: it never goes upstream, whichever header holds it


def presented_token(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, bool]:
    """The gateway token the client presented (b"" if none) and whether it asked for BYOK."""
    byok_token = bearer = api_key = b""
    for name, value in headers:
        if name == BYOK_HEADER:
            byok_token = value.strip()
        elif name == b"authorization":
            parts = value.split()
            if len(parts) == 2 and parts[0].lower() == b"bearer":
                bearer = parts[1]
        elif name == b"x-api-key":
            api_key = value.strip()
    return byok_token or bearer or api_key, bool(byok_token)


class CallerAuth:
    def __init__(self, settings: AIGatewayConfig, tokens: TokenCache) -> None:
        self._allow_byok = settings.allow_byok
        self._tokens = tokens
        self._rate = RateLimiter(settings.rate_limit) if settings.rate_limit > 0 else None
        self._failures = (
            AuthFailureLimiter(settings.auth_failure_limit)
            if settings.auth_failure_limit > 0
            else None
        )

    async def authenticate(
        self, headers: list[tuple[bytes, bytes]], method: str, address: str
    ) -> Caller:
        """The caller, or `Rejected` in Coder's status and words."""
        token, byok = presented_token(headers)
        if not token:
            if method != "HEAD":  # Claude Code probes connectivity with credential-less HEADs
                log.info("auth.no_token")
            raise Rejected(400, "no authentication key provided", "no_token")
        if byok and not self._allow_byok:
            raise Rejected(403, "Bring Your Own Key (BYOK) mode is not enabled.", "byok_disabled")
        text = token.decode("latin-1")
        if self._rate is not None and not self._rate.allow(text):
            raise Rejected(
                429,
                "You've been rate limited. Please try again later.",
                "rate_limited",
                headers=[(b"retry-after", b"1")],
            )
        failures = self._failures
        if failures is not None and failures.blocked(address) and not self._tokens.is_known(text):
            raise Rejected(
                429,
                "Too many failed authentications from this address. Please try again later.",
                "auth_failures",
                headers=[(b"retry-after", str(failures.retry_after_s()).encode())],
            )
        return Caller(await self._verify(text, address), byok, token)

    async def _verify(self, token: str, address: str) -> Principal:
        try:
            principal = self._tokens.verify_from_memory(token)
            if principal is not None:
                return principal  # the usual case: no query, no deadline to arm
            with trio.fail_after(TOKEN_LOOKUP_TIMEOUT_S):
                return await self._tokens.verify(token)
        except AuthError as exc:
            if self._failures is not None:
                self._failures.failed(address)
            log.info("auth.rejected", reason=exc.reason)
            raise Rejected(403, "unauthorized", "unauthorized") from exc
        except (StoreError, trio.TooSlowError) as exc:
            if self._failures is not None and isinstance(exc, trio.TooSlowError):
                # A lookup that timed out counts against its address: a flood large enough to
                # make lookups queue past the deadline still gets the address blocked.
                self._failures.failed(address)
            log.error("auth.store_unavailable", error=str(exc) or "token lookup timed out")
            raise Rejected(
                503, "could not verify the token: database unavailable", "store_unavailable"
            ) from exc
