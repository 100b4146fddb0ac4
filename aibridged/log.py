"""Logging: structlog to a human console stream and/or a JSON-lines file.

`RedactSecrets` is the last processor before rendering: a line of defence, not the plan — code must
not log secrets in the first place.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import structlog

from aibridged.errors import ConfigError

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
REDACTED = "[REDACTED]"

# Field names whose values are secrets whatever they look like.
_SECRET_KEYS = re.compile(
    r"(^|_)(token|secret|password|passwd|api_key|apikey|authorization|cookie|key)$", re.IGNORECASE
)
# Secret-looking substrings inside any string value.
_SECRET_PATTERNS = [
    re.compile(r"\b[A-Za-z0-9]{10}-[A-Za-z0-9]{22}\b"),  # our API tokens
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),  # OpenAI / Anthropic style keys
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"(?<=://)([^:/@\s]+):(\S+)(?=@)"),  # passwords in URLs (may hold '@')
    re.compile(r"(?i)(?<=[?&])(password|passfile|sslpassword|sslkey)=[^&\s'\"]*"),
]


def redact_text(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        if pattern.groups == 2:
            text = pattern.sub(lambda m: f"{m[1]}:{REDACTED}", text)
        elif pattern.groups == 1:
            text = pattern.sub(lambda m: f"{m[1]}={REDACTED}", text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


class RedactSecrets:
    """structlog processor: masks secret-named fields and secret-looking substrings."""

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event_dict.items():
            if _SECRET_KEYS.search(key) and value not in (None, "", False):
                event_dict[key] = REDACTED
            elif isinstance(value, str):
                event_dict[key] = redact_text(value)
            elif isinstance(value, BaseException):
                event_dict[key] = redact_text(repr(value))
        return event_dict


@dataclass(frozen=True, slots=True)
class LogTargets:
    human: str = ""  # "" or "-" = stderr; "off" never
    json: str = ""  # "" = off
    level: str = "info"


class _Sinks:
    """Renders each event once per configured output."""

    def __init__(self, human: TextIO | None, json_out: TextIO | None) -> None:
        self._human = human
        self._json = json_out
        self._console = structlog.dev.ConsoleRenderer(colors=bool(human and human.isatty()))
        self._json_renderer = structlog.processors.JSONRenderer()

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> str:
        if self._json is not None:
            self._json.write(str(self._json_renderer(logger, method_name, dict(event_dict))) + "\n")
            self._json.flush()
        if self._human is not None:
            self._human.write(str(self._console(logger, method_name, event_dict)) + "\n")
            self._human.flush()
        raise structlog.DropEvent


class _ToStructlog(logging.Handler):
    """Library logs (hypercorn, pgserver, asyncpg) go through the same pipeline."""

    def emit(self, record: logging.LogRecord) -> None:
        log = structlog.get_logger(record.name)
        log.log(
            record.levelno,
            "library.log",
            message=record.getMessage(),
            logger=record.name,
            exc_info=record.exc_info or False,
        )


def _open(path: str) -> TextIO:
    try:
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        return open(file, "a", encoding="utf-8", buffering=1)
    except OSError as exc:
        raise ConfigError(f"cannot open log file {path}: {exc.strerror}") from exc


def configure_logging(targets: LogTargets) -> None:
    level = _LEVELS.get(targets.level.lower())
    if level is None:
        raise ConfigError(f"invalid log level {targets.level!r}")
    human = sys.stderr if targets.human in ("", "-") else _open(targets.human)
    json_out = _open(targets.json) if targets.json else None
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            RedactSecrets(),
            _Sinks(human, json_out),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers[:] = [_ToStructlog()]
    root.setLevel(max(level, logging.INFO))
    # hypercorn logs every request at INFO through its access logger; we log requests ourselves.
    logging.getLogger("hypercorn.access").disabled = True
    # Libraries that narrate routine work at INFO (every pg_ctl call, every upstream request).
    for name in ("pgserver", "httpx2", "httpcore2", "httpx", "httpcore", "asyncio", "trio_asyncio"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
