"""The API dumps' parts: where a dump goes, what its text says, and the writer behind the queue."""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from pathlib import Path

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from aibridged.dump import Dumps, DumpWriter
from aibridged.dump.paths import (
    MAX_PART_CHARS,
    interception_stem,
    passthrough_stem,
    safe_part,
    with_suffix,
)
from aibridged.dump.render import mask_header_value, render_request, render_response_head
from aibridged.dump.taps import INCOMPLETE_NOTE
from aibridged.dump.writer import ERROR_LOG_EVERY_S, PIECE_OVERHEAD_BYTES, Piece
from aibridged.metrics import Metrics
from tests.logs import watch_logs

ID = uuid.UUID("3f1c9a52-0d3e-4b7e-9a51-7c0f2b8e6d14")
KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
HOSTILE = ["../../etc/x", "a\x00b", "/", "..", ".", "", ".hidden", "a\\b", "x/../../y", "é/ü"]

# -- paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [*HOSTILE, "." * 500, "m" * 500, "\ud800"])
def test_a_client_chosen_name_becomes_one_harmless_path_part(text: str) -> None:
    part = safe_part(text)
    assert part not in ("", ".", "..") and not part.startswith(".")
    assert "/" not in part and "\x00" not in part and "\\" not in part
    assert part.isascii() and len(part) <= MAX_PART_CHARS


@pytest.mark.parametrize("model", HOSTILE)
def test_a_dump_stays_inside_the_dump_dir_whatever_the_model(tmp_path: Path, model: str) -> None:
    stem = interception_stem(tmp_path, "openai", model, 1, ID)
    assert stem.parent.parent.parent == tmp_path
    assert os.path.realpath(stem).startswith(str(tmp_path) + os.sep)


def test_names_keep_what_they_can_of_the_model() -> None:
    assert safe_part("openai/gpt-4.1") == "openai-gpt-4.1"
    assert safe_part("llama3:8b@q4+x") == "llama3:8b@q4+x"
    assert safe_part("../../etc/x") == "_.-..-etc-x"


def test_long_names_that_differ_late_get_different_parts() -> None:
    a, b = safe_part("m" * 300 + "a"), safe_part("m" * 300 + "b")
    assert a != b and len(a) == len(b) == MAX_PART_CHARS


def test_the_file_names_follow_the_reference_layout(tmp_path: Path) -> None:
    stem = interception_stem(tmp_path, "openai", "gpt-4o", 1700000000123, ID)
    assert stem == tmp_path / "openai" / "gpt-4o" / f"1700000000123-{ID}"
    assert with_suffix(stem, ".req.txt").name == f"1700000000123-{ID}.req.txt"
    passthrough = passthrough_stem(tmp_path, "openai", "/v1/models/gpt-4o", 5, ID)
    assert passthrough == tmp_path / "openai" / "passthrough" / f"5-v1-models-gpt-4o-{ID}"
    # A model named like the passthrough folder does not share it.
    assert interception_stem(tmp_path, "p", "passthrough", 1, ID).parent.name == "_passthrough"


# -- the text ---------------------------------------------------------------------------------


def _head_and_body(dump: bytes) -> tuple[list[str], bytes]:
    head, _, body = dump.partition(b"\r\n\r\n")
    return head.decode().split("\r\n"), body


def test_a_request_is_shown_as_sent_with_sorted_headers_and_its_json_pretty() -> None:
    body = b'{"z":1,"a":{"messages":[{"role":"user","content":"hi"}]},"stream":true}'
    headers = [
        (b"x-custom", b"kept"),
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer " + KEY.encode()),
        (b"content-length", b"%d" % len(body)),
        (b"host", b"api.example.com"),
    ]
    lines, shown = _head_and_body(render_request("POST", b"/v1/chat/completions", headers, body))
    assert lines == [
        "POST /v1/chat/completions HTTP/1.1",
        "Authorization: Bearer sk-p...6789",
        f"Content-Length: {len(shown)}",
        "Content-Type: application/json",
        "Host: api.example.com",
        "X-Custom: kept",
    ]
    assert shown.startswith(b'{\n  "z": 1,\n  "a": {') and shown.endswith(b"}\n")
    assert json.loads(shown) == json.loads(body)


def test_a_body_that_is_not_json_is_shown_as_it_was_sent() -> None:
    for body in (b"plain text", b"{not json", b'{"a": 1} trailing', b"\xff\xfe{"):
        _, shown = _head_and_body(render_request("POST", b"/x", [], body))
        assert shown == body + b"\n"
    assert _head_and_body(render_request("GET", b"/v1/models", [], b""))[1] == b""


def test_pretty_printing_changes_only_the_whitespace_between_tokens() -> None:
    body = (
        b'{"big":123456789012345678901234567890,"f":1.10,"k":1,"k":2,"e":"\\u00e9 \\" ,:{[",'
        b'"s":"\\ud800","empty":[],"o":{},"n":[null,true,{"x":-1e400}]}'
    )
    _, shown = _head_and_body(render_request("POST", b"/x", [], body))
    assert shown == (
        b'{\n  "big": 123456789012345678901234567890,\n  "f": 1.10,\n  "k": 1,\n  "k": 2,\n'
        b'  "e": "\\u00e9 \\" ,:{[",\n  "s": "\\ud800",\n  "empty": [],\n  "o": {},\n'
        b'  "n": [\n    null,\n    true,\n    {\n      "x": -1e400\n    }\n  ]\n}\n'
    )


@pytest.mark.parametrize(
    "name",
    [
        b"Authorization",
        b"x-api-key",
        b"api-key",
        b"x-auth-token",
        b"cookie",
        b"proxy-authorization",
        b"x-amz-security-token",
        b"x-coder-ai-governance-token",
        b"x-coder-ai-governance-session-token",
        b"x-goog-api-key",
        b"x-custom-secret",
    ],
)
def test_a_credential_header_shows_a_masked_hint_never_the_secret(name: bytes) -> None:
    dump = render_request("POST", b"/", [(name, KEY.encode())], b"")
    assert KEY.encode() not in dump and b"sk-p...6789" in dump


def test_a_masked_hint_keeps_the_auth_scheme() -> None:
    assert mask_header_value(f"Bearer {KEY}") == "Bearer sk-p...6789"
    assert mask_header_value("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/2026, Signature=abcdef12")
    assert mask_header_value("short") == "s...t" and mask_header_value("abc") == "..."


def test_a_response_head_masks_cookies_and_keeps_rate_limit_counts() -> None:
    head = render_response_head(
        429,
        [
            (b"set-cookie", b"session=0123456789abcdefghij"),
            (b"x-ratelimit-remaining-tokens", b"1200"),
            (b"transfer-encoding", b"chunked"),
            (b"content-type", b"application/json"),
        ],
    )
    assert head == (
        b"HTTP/1.1 429 Too Many Requests\r\n"
        b"Content-Type: application/json\r\n"
        b"Set-Cookie: sess...ghij\r\n"
        b"X-Ratelimit-Remaining-Tokens: 1200\r\n"
        b"\r\n"
    )


# -- the writer -------------------------------------------------------------------------------


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry(), process_metrics=False)


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def _piece(path: Path, data: bytes, *, create: bool = True) -> Piece:
    return Piece(path, data, create, len(data) + PIECE_OVERHEAD_BYTES)


def _found(root: Path, pattern: str) -> list[Path]:
    return list(root.rglob(pattern))


def _exchange(dumps: Dumps, *, chunks: int = 3) -> None:
    """One streamed exchange through a tap, as the upstream client would report it."""
    tap = dumps.taps("openai", "gpt-demo", ID)()
    tap.request_sent("POST", b"/v1/chat/completions", [(b"authorization", b"Bearer k")], b"{}")
    tap.response_started(200, [(b"content-type", b"text/event-stream")])
    for n in range(chunks):
        tap.response_body(b"data: %d\n\n" % n)
    tap.response_body(b"")
    tap.response_closed()


async def test_the_writer_drains_what_is_queued_when_closed(
    tmp_path: Path, metrics: Metrics
) -> None:
    root = tmp_path / "dumps"
    writer = DumpWriter(root, metrics)
    _exchange(Dumps(writer))
    assert writer.statistics().queued_bytes > 0
    assert _sample(metrics, "coder_aibridged_dump_queue_bytes") > 0
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        writer.close()  # before a single piece was written: all of them still are
    (request,) = (root / "openai" / "gpt-demo").glob("*.req.txt")
    (response,) = (root / "openai" / "gpt-demo").glob("*.resp.txt")
    assert request.read_bytes().startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert response.read_bytes().endswith(b"\r\n\r\ndata: 0\n\ndata: 1\n\ndata: 2\n\n")
    assert writer.statistics().queued_bytes == 0
    assert writer.statistics().written == 5  # request, head, three chunks


async def test_files_are_0600_and_directories_0700_whatever_the_umask(
    tmp_path: Path, metrics: Metrics
) -> None:
    root = tmp_path / "dumps"
    writer = DumpWriter(root, metrics)
    _exchange(Dumps(writer))
    previous = os.umask(0)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            writer.close()
    finally:
        os.umask(previous)
    paths = [root, *root.rglob("*")]
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777 for p in paths}
    assert {m for p, m in modes.items() if p.endswith(".txt")} == {0o600}
    assert {m for p, m in modes.items() if not p.endswith(".txt")} == {0o700}
    assert len(modes) == 5  # dumps, openai, gpt-demo and the two files


async def test_a_full_queue_drops_without_waiting_and_counts_once_per_file(
    tmp_path: Path, metrics: Metrics
) -> None:
    writer = DumpWriter(tmp_path, metrics, queue_bytes=10 * PIECE_OVERHEAD_BYTES)
    dumps = Dumps(writer)
    for _ in range(20):  # nobody writes: the queue fills, and each submit returns at once
        _exchange(dumps, chunks=10)
    dropped = _sample(metrics, "coder_aibridged_dumps_dropped_total", reason="queue_full")
    assert 0 < dropped <= 2 * 20  # a file that lost a piece takes no more
    note_size = len(INCOMPLETE_NOTE) + PIECE_OVERHEAD_BYTES  # let past the limit, once
    assert writer.statistics().queued_bytes <= 10 * PIECE_OVERHEAD_BYTES + note_size


async def test_a_response_that_lost_a_chunk_takes_no_more_and_says_so(
    tmp_path: Path, metrics: Metrics
) -> None:
    writer = DumpWriter(tmp_path, metrics, queue_bytes=4 * PIECE_OVERHEAD_BYTES)
    _exchange(Dumps(writer), chunks=5)  # request, head and one chunk fit; the second does not
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        writer.close()
    (response,) = _found(tmp_path, "*.resp.txt")
    assert response.read_bytes().endswith(b"\r\n\r\ndata: 0\n\n" + INCOMPLETE_NOTE)
    assert _sample(metrics, "coder_aibridged_dumps_dropped_total", reason="queue_full") == 1


async def test_a_closed_writer_takes_nothing(tmp_path: Path, metrics: Metrics) -> None:
    writer = DumpWriter(tmp_path, metrics)
    writer.close()
    assert not writer.submit(_piece(tmp_path / "a.req.txt", b"x"))
    assert _sample(metrics, "coder_aibridged_dumps_dropped_total", reason="closed") == 1


def _block_the_provider_dir(root: Path) -> None:
    """A file where the provider's directory must go: every write under it fails (unlike a
    read-only mode, this holds for root too)."""
    root.mkdir(exist_ok=True)
    shutil.rmtree(root / "openai", ignore_errors=True)
    (root / "openai").write_text("")


def _unblock_the_provider_dir(root: Path) -> None:
    (root / "openai").unlink()


async def test_write_errors_are_counted_and_logged_once_per_burst(
    tmp_path: Path, metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    writer = DumpWriter(tmp_path, metrics)
    dumps = Dumps(writer)
    handled = 0

    async def one_exchange() -> None:
        nonlocal handled
        _exchange(dumps, chunks=0)
        handled += 2
        await writer.wait_handled(handled)

    _block_the_provider_dir(tmp_path)
    with watch_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for _ in range(3):
                await one_exchange()
            assert len(logs.matching("dump.write_failed")) == 1
            await trio.sleep(ERROR_LOG_EVERY_S)  # a burst that goes on is logged again, rarely
            await one_exchange()
            assert len(logs.matching("dump.write_failed")) == 2
            _unblock_the_provider_dir(tmp_path)
            await one_exchange()
            assert len(logs.matching("dump.writes_recovered")) == 1
            _block_the_provider_dir(tmp_path)
            await one_exchange()  # a new burst: logged at once
            assert len(logs.matching("dump.write_failed")) == 3
            writer.close()
    assert _sample(metrics, "coder_aibridged_dump_write_errors_total") == 5 * 2
    assert writer.statistics().write_errors == 10 and writer.statistics().written == 2
    assert "openai" in writer.statistics().last_error


async def test_a_symlink_in_the_dump_dir_is_never_followed(
    tmp_path: Path, metrics: Metrics
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    root = tmp_path / "dumps"
    root.mkdir()
    (root / "a.req.txt").symlink_to(outside)
    writer = DumpWriter(root, metrics)
    writer.submit(_piece(root / "a.req.txt", b"dump"))
    writer.submit(_piece(tmp_path / "escaped.req.txt", b"dump"))  # not under the dump dir
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        writer.close()
    assert outside.read_text() == "untouched" and not (tmp_path / "escaped.req.txt").exists()
    assert writer.statistics().write_errors == 2


async def test_a_hung_disk_cannot_hold_up_the_shutdown(
    tmp_path: Path, metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    release = threading.Event()
    writer = DumpWriter(tmp_path, metrics, drain_timeout_s=10.0)

    class HungDisk:
        def write(self, batch: list[Piece]) -> list[object]:
            release.wait(30)
            return []

    writer._files = HungDisk()  # type: ignore[assignment]
    for n in range(3):
        writer.submit(_piece(tmp_path / f"{n}.req.txt", b"x"))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            await trio.testing.wait_all_tasks_blocked()
            started = trio.current_time()
            writer.close()
        assert trio.current_time() - started == pytest.approx(10.0)
    finally:
        release.set()
    assert _sample(metrics, "coder_aibridged_dumps_dropped_total", reason="shutdown") == 3
    assert writer.statistics().queued_bytes == 0
