"""One exception hierarchy for the whole daemon.

    AibridgedError
    ├── ConfigError               bad configuration: names the key path and the file
    ├── StartupError              the daemon cannot start (port in use, state dir unwritable, ...)
    ├── StoreError                the database failed
    │   ├── StoreUnavailable      cannot connect / connection lost
    │   └── MigrationError        a migration could not be applied
    ├── AuthError                 a token is missing, malformed, unknown or revoked; user suspended
    ├── InvalidInput              a value given by a user (CLI, API) is not acceptable
    ├── NotFound                  a named object (user, token, provider) does not exist
    ├── Conflict                  a unique name is already taken
    └── UpstreamError             talking to an LLM provider failed
        ├── UpstreamTimeout
        ├── UpstreamConnectError
        └── UpstreamStatusError   carries the provider-shaped body to relay

Library exceptions (asyncpg, httpx2, trio streams, OSError) are translated once, where they enter
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


class MigrationError(StoreError):
    """A schema migration failed."""


class AuthError(AibridgedError):
    """Authentication failed. ``reason`` is for logs only; clients see a fixed text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidInput(AibridgedError):
    """A value given by a user (CLI argument, API field) is not acceptable."""


class NotFound(AibridgedError):
    """A named object does not exist."""


class Conflict(AibridgedError):
    """A unique name is already taken."""


class UpstreamError(AibridgedError):
    """Talking to an upstream provider failed."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer in time."""


class UpstreamConnectError(UpstreamError):
    """The upstream could not be reached or reset the connection."""


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status; ``body`` is relayed as-is."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status
        self.body = body
        self.content_type = content_type
