"""Request limits of the data plane: per-token rate, and failed authentications per address.

Both count in fixed windows of the trio clock (so tests run them under `autojump_clock`), and keep
only the current window: memory is bounded by the keys seen within one window.
"""

from __future__ import annotations

import math

import trio


class RateLimiter:
    """At most `limit` events per key per window of `window_s` (Coder's AI Gateway: 1 s)."""

    def __init__(self, limit: int, window_s: float = 1.0) -> None:
        self._limit = limit
        self._window_s = window_s
        self._window = -1
        self._counts: dict[str, int] = {}

    def _current(self) -> dict[str, int]:
        window = math.floor(trio.current_time() / self._window_s)
        if window != self._window:
            self._window = window
            self._counts.clear()
        return self._counts

    def allow(self, key: str) -> bool:
        """Count one event for `key`; False once it is over the limit in this window."""
        counts = self._current()
        count = counts.get(key, 0) + 1
        counts[key] = count
        return count <= self._limit

    def exceeded(self, key: str) -> bool:
        """True when `key` is over the limit in this window (nothing is counted)."""
        return self._current().get(key, 0) >= self._limit

    def retry_after_s(self) -> int:
        """Whole seconds until the current window ends (at least 1), for `Retry-After`."""
        end = (self._window + 1) * self._window_s
        return max(1, math.ceil(end - trio.current_time()))


class AuthFailureLimiter:
    """Failed authentications per client address: past `limit` in a minute, that address gets
    429 for the rest of the minute without a token lookup, unless its token is known-good."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self._failures = RateLimiter(limit, window_s)

    def blocked(self, address: str) -> bool:
        return self._failures.exceeded(address)

    def failed(self, address: str) -> None:
        self._failures.allow(address)

    def retry_after_s(self) -> int:
        return self._failures.retry_after_s()
