from __future__ import annotations

import logging

from structlog.testing import capture_logs

from aibridged.log import RedactSecrets, _ToStructlog, redact_text


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
