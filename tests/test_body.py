"""Reading request bodies: size bound while reading, and a deadline, under virtual time."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from aibridged.api.body import read_body
from aibridged.errors import Rejected


async def test_a_body_that_stalls_gets_408_at_the_deadline(autojump_clock: object) -> None:
    sent = [{"type": "http.request", "body": b'{"model":', "more_body": True}]

    async def receive() -> dict[str, Any]:
        if sent:
            return sent.pop(0)
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    with pytest.raises(Rejected) as info:
        await read_body(receive, [], limit=1000, timeout_s=60)
    assert (info.value.status, info.value.reason) == (408, "body_timeout")
    assert trio.current_time() == 60


async def test_a_body_over_the_limit_is_refused_while_reading(autojump_clock: object) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"x" * 400, "more_body": True}

    with pytest.raises(Rejected) as info:
        await read_body(receive, [], limit=1000, timeout_s=60)
    assert info.value.status == 413 and "1000B" in info.value.message


async def test_a_client_that_leaves_while_sending_is_no_request(autojump_clock: object) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    assert await read_body(receive, [], limit=1000, timeout_s=60) is None
