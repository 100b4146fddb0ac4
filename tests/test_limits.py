"""The data plane's fixed-window limits, under virtual time."""

from __future__ import annotations

import trio

from aibridged.api.limits import AuthFailureLimiter, RateLimiter


async def test_rate_limit_counts_per_key_in_one_second_windows(autojump_clock: object) -> None:
    limiter = RateLimiter(2)
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    assert limiter.allow("b")  # another token has its own count
    await trio.sleep(0.999)
    assert not limiter.allow("a")  # still the same window
    await trio.sleep(0.001)
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]


async def test_failed_authentications_block_an_address_until_the_minute_ends(
    autojump_clock: object,
) -> None:
    failures = AuthFailureLimiter(3)
    await trio.sleep(20)
    for _ in range(3):
        assert not failures.blocked("10.0.0.1")
        failures.failed("10.0.0.1")
    assert failures.blocked("10.0.0.1") and not failures.blocked("10.0.0.2")
    assert failures.retry_after_s() == 40
    await trio.sleep(40)
    assert not failures.blocked("10.0.0.1")
