from __future__ import annotations

import io
import json
import logging

from structlog.testing import capture_logs

from aibridged.log import RedactSecrets, _Sink, _ToStructlog, redact_text, render_json


def test_library_errors_keep_their_traceback() -> None:
    logger = logging.getLogger("test.library")
    logger.addHandler(_ToStructlog())
    logger.propagate = False
    with capture_logs() as logs:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("Error in ASGI Framework")
    [event] = logs
    assert event["message"] == "Error in ASGI Framework"
    assert event["exc_info"][0] is ValueError


def test_redaction_masks_tokens_keys_and_passwords() -> None:
    text = (
        "token AbCdEfGhIj-0123456789abcdefghijKL key sk-ant-api03-secretvalue "
        "Authorization: Bearer eyJhbGciOi.payload.sig "
        "db postgresql://app:p@ss@db.internal/x?sslmode=require&password=hunter2"
    )
    out = redact_text(text)
    for secret in ("0123456789abcdefghijKL", "secretvalue", "eyJhbGciOi", "p@ss", "hunter2"):
        assert secret not in out
    assert "db.internal" in out and "sslmode=require" in out


def test_secret_named_fields_are_masked_whatever_their_value() -> None:
    event = RedactSecrets()(
        None, "info", {"event": "x", "api_key": "abc", "token_id": "AbCdEfGhIj"}
    )
    assert event["api_key"] == "[REDACTED]" and event["token_id"] == "AbCdEfGhIj"


def test_secrets_nested_in_lists_and_dicts_are_masked() -> None:
    event = RedactSecrets()(
        None,
        "info",
        {
            "event": "x",
            "headers": [("authorization", "Bearer sk-live-abcdefghijklmnop")],
            "context": {"api_key": "plain", "notes": ["token AbCdEfGhIj-0123456789abcdefghijKL"]},
        },
    )
    text = repr(event)
    assert "abcdefghijklmnop" not in text and "0123456789abcdefghijKL" not in text
    assert event["context"]["api_key"] == "[REDACTED]"


def test_redaction_is_one_pass_that_keeps_the_rest_of_the_text() -> None:
    text = "a sk-secretsecret b postgres://u:pw@h/db c ?password=x&y=1"
    assert (
        redact_text(text)
        == "a [REDACTED] b postgres://u:[REDACTED]@h/db c ?password=[REDACTED]&y=1"
    )


class _Out(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_lines_are_not_flushed_one_by_one_but_warnings_are_at_once() -> None:
    out = _Out()
    sink = _Sink(out, human=False)
    for i in range(50):
        sink.write({"event": "interception.finished", "n": i}, urgent=False)
    assert out.flushes <= 1
    sink.write({"event": "store.ping_failed"}, urgent=True)
    assert out.flushes >= 1
    lines = out.getvalue().splitlines()
    assert len(lines) == 51 and json.loads(lines[0]) == {"event": "interception.finished", "n": 0}


def test_a_lone_surrogate_from_a_client_cannot_break_either_log_format() -> None:
    event = {"event": "interception.finished", "model": "\ud800x"}
    assert json.loads(render_json(event))["model"] == "\ud800x"
    out = _Out()
    _Sink(out, human=True).write(event, urgent=True)
    assert b"\\ud800x" in out.getvalue()
