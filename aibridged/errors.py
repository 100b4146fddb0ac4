"""One exception hierarchy for the whole daemon.

    AibridgedError
    ├── ConfigError               bad configuration: names the key path and the file
    ├── StartupError              the daemon cannot start (port in use, state dir unwritable, ...)
    ├── StoreError                the database failed
    │   ├── StoreUnavailable      cannot connect / connection lost
    │   ├── StoreRejectedValue    a value the database cannot store (text with a NUL character)
    │   └── MigrationError        a migration could not be applied
    ├── SecretsError              the secrets key file is missing, unreadable or not the right one
    │   └── UnknownSecretsKey     a secret was sealed under a key the key file does not hold
    ├── AuthError                 a token is missing, malformed, unknown or revoked; user suspended
    ├── InvalidInput              a value given by a user (CLI, API) is not acceptable
    ├── PermissionDenied          the caller's role may not do this
    ├── NotFound                  a named object (user, token, provider) does not exist
    ├── Conflict                  a unique name is already taken
    ├── Rejected                  a request the gateway answers itself (status, message, reason)
    │   └── BodyRejected          the request body is not acceptable (400, 415, 501)
    ├── CredentialError           a provider's own credentials (AWS) cannot be resolved
    ├── ProxyError                aibridgeproxyd refuses or cannot serve a CONNECT (its status)
    └── UpstreamError             talking to an LLM provider failed
        ├── UpstreamTimeout       no answer in time (the client gets 504)
        ├── UpstreamConnectError  cannot connect, or the connection broke (502)
        ├── UpstreamProtocolError an answer the gateway cannot relay faithfully (502)
        └── UpstreamStatusError   an error status; carries the provider-shaped body to relay
            ├── KeysExhausted     no key of the provider could serve the call (429 or 502)
            └── CircuitOpen       the provider's circuit breaker refuses the call (503)

Library exceptions (asyncpg, h11, trio streams, OSError) are translated once, where they enter
our code, with ``raise X from exc``.
"""

from __future__ import annotations


class AibridgedError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(AibridgedError):
    """A configuration value is missing, unknown, of the wrong type or invalid."""


class StartupError(AibridgedError):
    """The daemon cannot start; the message is one line an operator can act on."""


class StoreError(AibridgedError):
    """The database failed."""


class StoreUnavailable(StoreError):
    """The database cannot be reached."""


class StoreRejectedValue(StoreError):
    """A value PostgreSQL cannot hold in text (a NUL character, ...): the input's fault."""


class MigrationError(StoreError):
    """A schema migration failed."""


class SecretsError(AibridgedError):
    """Secrets at rest cannot be sealed or opened (key file missing, malformed, or not the key
    the stored secrets were sealed with)."""


class UnknownSecretsKey(SecretsError):
    """A stored secret was sealed under a key the key ring does not hold (a rotation on another
    replica, or the wrong key file): nothing of this database can be trusted to open."""


class AuthError(AibridgedError):
    """Authentication failed. ``reason`` is for logs only; clients see a fixed text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidInput(AibridgedError):
    """A value given by a user (CLI argument, API field) is not acceptable.

    `validations` names each bad field with why, (field, detail), for the API's error shape."""

    def __init__(self, message: str, validations: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.validations = validations or []


class PermissionDenied(AibridgedError):
    """The caller is authenticated, but its role may not do what it asked."""


class NotFound(AibridgedError):
    """A named object does not exist."""


class Conflict(AibridgedError):
    """A unique name is already taken."""


class Rejected(AibridgedError):
    """Answer the request ourselves: `status` and `message`, in the provider's error shape.

    `reason` is the `reason` label of `coder_aibridged_requests_rejected_total` (a fixed set);
    `plain_text` answers with text instead (Coder's "route not supported" catch-all).
    """

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
        self.reason = reason
        self.plain_text = plain_text
        self.headers = headers or []


class BodyRejected(Rejected):
    """The request body is not acceptable: not JSON, not an object, an unsupported option."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message, "bad_request")


class CredentialError(AibridgedError):
    """A provider's credentials cannot be resolved (AWS: the default chain found none, STS
    refused the role). The message names no secret."""


class ProxyError(AibridgedError):
    """A CONNECT the proxy answers itself: `status` (400, 403, 407, 502, 504) and a message
    safe to show the client (never an internal address or a credential)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class UpstreamError(AibridgedError):
    """Talking to an upstream provider failed."""

    status = 502  # what the client gets when nothing better is known


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer in time."""

    status = 504


class UpstreamConnectError(UpstreamError):
    """The upstream could not be reached or reset the connection."""


class UpstreamProtocolError(UpstreamError):
    """The upstream answered something the relay cannot pass on faithfully (say, a content type
    it does not understand on an intercepted route)."""


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status before any byte reached the client.

    `body` is in the provider's error shape (the upstream's own when it already was, else
    wrapped); `headers` are the upstream response headers to relay with it.
    """

    def __init__(
        self, status: int, body: bytes, headers: list[tuple[bytes, bytes]], reason: str = ""
    ) -> None:
        super().__init__(reason or f"upstream answered {status}")
        self.status = status
        self.body = body
        self.headers = headers

    def header(self, name: bytes) -> bytes | None:
        """The first upstream header `name` (lower-case), e.g. b"retry-after" for failover."""
        return next((value for key, value in self.headers if key == name), None)


class KeysExhausted(UpstreamStatusError):
    """No key of the provider could serve the call (429 with `Retry-After`, or 502).

    `upstream_failed` tells the circuit breaker whether the upstream itself failed (a 5xx or an
    unreachable host on some key) rather than only refusing or rate-limiting the keys.
    """

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        reason: str,
        *,
        upstream_failed: bool,
    ) -> None:
        super().__init__(status, body, headers, reason)
        self.upstream_failed = upstream_failed


class CircuitOpen(UpstreamStatusError):
    """The circuit breaker of the call's provider, endpoint and model is open (503)."""
