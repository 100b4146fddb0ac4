"""Logging: structlog to a human console stream and/or a JSON-lines file.

Per line: contextvars (a request binds `interception_id`, `provider`, `initiator`), level,
timestamp, traceback text, `RedactSecrets`, the log hook (`--trace-logs` turns lines into span
events), then one render per output. `RedactSecrets` comes before anything leaves the process: a
line of defence, not the plan — code must not log secrets.

Cost matters: the data plane logs a line per request. JSON is rendered with orjson, the human
format by a small renderer of our own, and lines are not flushed one by one: the sinks flush when a
warning or error is written, when the last flush is older than `FLUSH_INTERVAL_S`, and from
`run_log_flusher` (the daemon runs it) so a quiet process still writes its last lines out promptly.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import io
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
import structlog
import trio

from aibridged.errors import ConfigError

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
REDACTED = "[REDACTED]"
# Fields bound to the request being handled (interception_id, provider, initiator): one context
# variable holding them all, so adding them to a line is one lookup (structlog's own
# merge_contextvars walks every context variable of the task).
_REQUEST_FIELDS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "aibridged_request_fields", default=None
)
FLUSH_INTERVAL_S = 0.2
_URGENT = frozenset({"warning", "error", "critical", "exception"})

# Field names whose values are secrets whatever they look like.
_SECRET_KEYS = re.compile(
    r"(^|_)(token|secret|password|passwd|api_key|apikey|authorization|cookie|key)$", re.IGNORECASE
)
# Secret-looking substrings inside any string value, as one alternation: one pass per string.
_SECRET_TEXT = re.compile(
    r"(?P<token>\b[A-Za-z0-9]{10}-[A-Za-z0-9]{22}\b)"  # our API tokens
    r"|(?P<key>sk-[A-Za-z0-9_\-]{8,})"  # OpenAI / Anthropic style keys (even in "\\nsk-...")
    r"|(?P<bearer>(?i:\bbearer\s+)[A-Za-z0-9._~+/=\-]{8,})"
    r"|(?<=://)(?P<user>[^:/@\s]+):(?P<password>\S+)(?=@)"  # passwords in URLs (may hold '@')
    r"|(?<=[?&])(?P<param>(?i:password|passfile|sslpassword|sslkey))=[^&\s'\"]*"
)
_MAX_DEPTH = 8  # nested values deeper than this are not walked (and not logged)


def _mask(match: re.Match[str]) -> str:
    if match["user"] is not None:
        return f"{match['user']}:{REDACTED}"
    if match["param"] is not None:
        return f"{match['param']}={REDACTED}"
    return REDACTED


def redact_text(text: str) -> str:
    # Every pattern needs one of these (a dash, "://", "=", "bearer"): most text has none of them,
    # and `in` is far cheaper than the regex.
    if len(text) < 8 or not ("-" in text or "=" in text or "://" in text or "earer" in text):
        return text
    return _SECRET_TEXT.sub(_mask, text)


def _redact(value: Any, depth: int = 0) -> Any:
    """`value` with secret-looking text masked, nested dicts, lists and tuples included."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if depth >= _MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, dict):
        return {
            key: REDACTED if _is_secret_field(key, item) else _redact(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_redact(item, depth + 1) for item in value]
    if isinstance(value, BaseException):
        return redact_text(repr(value))
    return value


_secret_names: dict[str, bool] = {}  # field name → is it a secret's name (a small, fixed set)


def _is_secret_field(key: object, value: object) -> bool:
    if value in (None, "", False) or not isinstance(key, str):
        return False
    known = _secret_names.get(key)
    if known is None:
        known = _secret_names[key] = bool(_SECRET_KEYS.search(key))
    return known


# Fields whose values the gateway itself makes (ids, names from its configuration, enums,
# counters, masked hints, the timestamp): no free text a secret could hide in. Everything else,
# client-chosen text and error messages above all, goes through the redaction pass.
STRUCTURED_FIELDS = frozenset(
    {
        "timestamp", "level", "event", "logger", "interception_id", "provider", "route",
        "stream", "initiator", "credential", "credential_hint", "client", "status", "bytes",
        "events", "pings", "attempts", "client_gone", "parse_abandoned", "duration_s", "task",
        "type", "version", "restart_in_s", "failures",
    }
)  # fmt: skip


def bind_request(**fields: Any) -> None:
    """Add `fields` to every line logged from here on in this task (and the tasks it starts)."""
    _REQUEST_FIELDS.set({**(_REQUEST_FIELDS.get() or {}), **fields})


def merge_request_fields(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the fields `bind_request` bound (a line's own fields win)."""
    fields = _REQUEST_FIELDS.get()
    if fields:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
    return event_dict


# What `--trace-logs` hooks in (aibridged.tracing): called with each line, after redaction.
LogHook = Callable[[str, MutableMapping[str, Any]], None]
_log_hook: LogHook | None = None


def set_log_hook(hook: LogHook | None) -> None:
    """Have every line (its level and redacted fields) also handed to `hook`; None: stop."""
    global _log_hook
    _log_hook = hook


def call_log_hook(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor, after `RedactSecrets`: the hook sees what the sinks will see."""
    hook = _log_hook
    if hook is not None:
        hook(method_name, event_dict)
    return event_dict


class RedactSecrets:
    """structlog processor: masks secret-named fields and secret-looking text, at any depth."""

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event_dict.items():
            if key in STRUCTURED_FIELDS or value is None or isinstance(value, (bool, int, float)):
                continue
            if _is_secret_field(key, value):
                event_dict[key] = REDACTED
            else:
                event_dict[key] = _redact(value)
        return event_dict


@dataclass(frozen=True, slots=True)
class LogTargets:
    human: str = ""  # "" or "-" = stderr; "off" never
    json: str = ""  # "" = off
    level: str = "info"


def render_json(event_dict: MutableMapping[str, Any]) -> bytes:
    """One JSON line. Client-chosen text may hold lone surrogates, which orjson refuses: such a
    line is rendered by the standard library with every non-ASCII character escaped."""
    try:
        return orjson.dumps(event_dict, default=str, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return (json.dumps(event_dict, default=str) + "\n").encode("ascii")


_HEAD_FIELDS = frozenset({"timestamp", "level", "event", "exception"})


def render_human(event_dict: MutableMapping[str, Any]) -> str:
    """`<timestamp> <level> <event> key=value ...`; a traceback goes on the following lines."""
    parts = [
        str(event_dict.get("timestamp", "")),
        f"[{event_dict.get('level', '')}]".ljust(9),
        str(event_dict.get("event", "")).ljust(28),
    ]
    for key, value in event_dict.items():
        if value is not None and key not in _HEAD_FIELDS:
            parts.append(f"{key}={_human_value(value)}")
    line = " ".join(parts)
    trace = event_dict.get("exception")
    return f"{line}\n{trace}" if trace else line


def _human_value(value: Any) -> str:
    if isinstance(value, str):
        plain = value and not (" " in value or "=" in value or '"' in value or "\n" in value)
        return value if plain else json.dumps(value)
    return str(value)


class Timestamp:
    """structlog processor: `timestamp` in ISO 8601, UTC, to the microsecond. The date and time
    to the second are formatted once a second, not for every line."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event_dict["timestamp"] = f"{self._prefix}.{int((now - second) * 1e6):06d}Z"
        return event_dict


class _Sink:
    """One output stream, written in blocks and flushed by time or urgency, never per line."""

    def __init__(self, out: IO[bytes], *, human: bool) -> None:
        self._out = out  # a buffered binary stream: writes collect, flush() pushes them out
        self._human = human
        self._last_flush = time.monotonic()
        self._dirty = False

    def write(self, event_dict: MutableMapping[str, Any], urgent: bool) -> None:
        if self._human:
            # A lone surrogate from a client must not break the log file.
            data = (render_human(event_dict) + "\n").encode("utf-8", "backslashreplace")
        else:
            data = render_json(event_dict)
        self._out.write(data)
        self._dirty = True
        now = time.monotonic()
        if urgent or now - self._last_flush >= FLUSH_INTERVAL_S:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        if self._dirty:
            self._dirty = False
            # A closed or full output must not make logging crash its caller.
            with contextlib.suppress(OSError, ValueError):
                self._out.flush()
        self._last_flush = time.monotonic() if now is None else now


class _Sinks:
    """The last processor: renders each event once per configured output."""

    def __init__(self, sinks: Iterable[_Sink]) -> None:
        self.sinks = list(sinks)

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> str:
        urgent = method_name in _URGENT
        for sink in self.sinks:
            sink.write(event_dict, urgent)
        raise structlog.DropEvent

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()


_active = _Sinks([])


def flush_logs() -> None:
    """Write out whatever the log sinks hold (the daemon calls this on its way out too)."""
    _active.flush()


atexit.register(flush_logs)


async def run_log_flusher(
    *,
    interval_s: float = FLUSH_INTERVAL_S,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Flush the log sinks every `interval_s`, so the last lines of a quiet moment are not held."""
    task_status.started()
    try:
        while True:
            await trio.sleep(interval_s)
            flush_logs()
    finally:
        flush_logs()


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


def _open(path: str) -> IO[bytes]:
    try:
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        return open(file, "ab", buffering=1 << 16)  # lives as long as the process
    except OSError as exc:
        raise ConfigError(f"cannot open log file {path}: {exc.strerror}") from exc


def _stderr_bytes() -> IO[bytes]:
    sys.stderr.flush()  # what was written as text so far comes first
    buffer: IO[bytes] | None = getattr(sys.stderr, "buffer", None)
    return buffer if buffer is not None else io.BytesIO()


def configure_logging(targets: LogTargets) -> None:
    global _active
    level = _LEVELS.get(targets.level.lower())
    if level is None:
        raise ConfigError(f"invalid log level {targets.level!r}")
    sinks = []
    if targets.human != "off":
        out = _stderr_bytes() if targets.human in ("", "-") else _open(targets.human)
        sinks.append(_Sink(out, human=True))
    if targets.json:
        sinks.append(_Sink(_open(targets.json), human=False))
    _active.flush()
    _active = _Sinks(sinks)
    structlog.configure(
        processors=[
            merge_request_fields,
            structlog.processors.add_log_level,
            Timestamp(),
            structlog.processors.format_exc_info,
            RedactSecrets(),
            call_log_hook,
            _active,
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
