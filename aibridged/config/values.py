"""Configuration values: how each kind of setting is read from text and from TOML, and checked.

Each parser takes the text an operator wrote and returns the value, or raises `ConfigError` with a
message that quotes the text (never a secret); the loader prefixes where the value came from
(`"ai_gateway.retention" in /etc/aibridged/aibridged.toml`, `AIBRIDGED_...`, `--flag`).

A `Kind` bundles, for one type of setting, how to read it from text (environment, flags) and from a
TOML value, plus the checks that every value must pass.
"""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from aibridged.errors import ConfigError

Check = Callable[[Any], Any]  # returns the (possibly normalised) value or raises ConfigError

# -- durations, sizes, booleans, integers --------------------------------------------------------

_DURATION_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_DURATION_HINT = "expected e.g. 30s, 10m, 1h30m, 90d, 500ms or 0"


def parse_duration(text: str) -> float:
    """`"1h30m"` → 5400.0 seconds. Units d, h, m, s, ms, largest first, each at most once."""
    s = text.strip()
    if s == "0":
        return 0.0
    if not s:
        raise ConfigError(f'invalid duration "{text}" ({_DURATION_HINT})')
    if s.isdigit():
        raise ConfigError(f'invalid duration "{text}" (missing unit; {_DURATION_HINT})')
    total, pos, previous = 0.0, 0, math.inf
    while pos < len(s):
        match = _DURATION_PART.match(s, pos)
        if match is None:
            raise ConfigError(f'invalid duration "{text}" ({_DURATION_HINT})')
        unit = _DURATION_UNITS[match[2]]
        if unit >= previous:
            raise ConfigError(
                f'invalid duration "{text}" (units must go from largest to smallest, each once)'
            )
        total += float(match[1]) * unit
        previous, pos = unit, match.end()
    if not math.isfinite(total):
        raise ConfigError(f'invalid duration "{text}" (too large)')
    return total


_SIZE = re.compile(r"(\d+)\s*([a-z]*)", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


def parse_size(text: str) -> int:
    """`"32MiB"` → 33554432 bytes. Units B, KB, MB, GB (1000-based), KiB, MiB, GiB (1024-based)."""
    match = _SIZE.fullmatch(text.strip())
    multiplier = _SIZE_UNITS.get(match[2].lower()) if match else None
    if match is None or multiplier is None:
        raise ConfigError(f'invalid size "{text}" (expected e.g. 32MiB, 512KiB, 10MB or 1000)')
    return int(match[1]) * multiplier


_BOOLS = {
    **dict.fromkeys(("true", "1", "yes", "on"), True),
    **dict.fromkeys(("false", "0", "no", "off"), False),
}


def is_bool_word(text: str) -> bool:
    return text.strip().lower() in _BOOLS


def parse_bool(text: str) -> bool:
    value = _BOOLS.get(text.strip().lower())
    if value is None:
        raise ConfigError(f'invalid boolean "{text}" (expected true/false, 1/0, yes/no or on/off)')
    return value


def parse_int(text: str) -> int:
    if re.fullmatch(r"\s*[+-]?\d+\s*", text) is None:
        raise ConfigError(f'invalid integer "{text}"')
    return int(text)


# -- addresses and URLs ---------------------------------------------------------------------------

_ADDRESS = re.compile(r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>\d+)")
_ADDRESS_HINT = "expected host:port, e.g. 127.0.0.1:3000 or [::1]:3000"


def parse_address(text: str) -> tuple[str, int]:
    """`"127.0.0.1:3000"` → ("127.0.0.1", 3000); `"[::1]:0"` → ("::1", 0)."""
    match = _ADDRESS.fullmatch(text)
    if match is None:
        raise ConfigError(f'invalid address "{text}" ({_ADDRESS_HINT})')
    host = match["v6"] or match["host"]
    if match["v6"] is not None:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f'invalid address "{text}" ({host} is not an IPv6 address)') from None
    port = int(match["port"])
    if port > 65535:
        raise ConfigError(f'invalid address "{text}" (port must be 0-65535)')
    return host, port


def check_address(text: str) -> str:
    parse_address(text)
    return text


def check_http_url(text: str) -> str:
    """Empty (unset) or an absolute http:// or https:// URL."""
    if text == "":
        return text
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or " " in text:
        raise ConfigError(f'invalid URL "{text}" (expected an http:// or https:// URL)')
    return text


def check_proxy_url(text: str) -> str:
    """Empty (none) or http(s)://[user:password@]host:port. It may hold a password: never
    quote it."""
    if text == "":
        return text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or port is None
        or parts.path not in ("", "/")
    ):
        raise ConfigError("invalid proxy URL (expected http(s)://[user:password@]host:port)")
    return text


def check_postgres_url(text: str) -> str:
    """Empty (embedded server) or a postgres:// URL. It may hold a password: never quote it."""
    if text and not text.startswith(("postgres://", "postgresql://")):
        raise ConfigError("invalid database URL (expected postgres://... or postgresql://...)")
    return text


# -- generic checks -------------------------------------------------------------------------------


def between(low: int, high: int | None = None) -> Check:
    def check(value: int) -> int:
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"must be {bounds}, got {value}")
        return value

    return check


def positive(value: float) -> float:
    if value <= 0:
        raise ConfigError(f"must be greater than 0, got {value:g}")
    return value


def not_empty(value: str) -> str:
    if not value.strip():
        raise ConfigError("must not be empty")
    return value


def one_of(*choices: str) -> Check:
    def check(value: str) -> str:
        if value.lower() not in choices:
            raise ConfigError(f'invalid value "{value}" (expected one of {", ".join(choices)})')
        return value.lower()

    return check


# -- kinds ----------------------------------------------------------------------------------------

_TOML_TYPE_NAMES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "float",
    bool: "boolean",
    dict: "table",
    list: "array",
    datetime.datetime: "datetime",
    datetime.date: "date",
    datetime.time: "time",
}


def toml_type_name(value: object) -> str:
    return _TOML_TYPE_NAMES.get(type(value), type(value).__name__)


def _seconds(value: int) -> float:
    if value < 0:
        raise ConfigError(f"invalid duration {value} (must not be negative)")
    return float(value)


def _bytes(value: int) -> int:
    if value < 0:
        raise ConfigError(f"invalid size {value} (must not be negative)")
    return value


def _path(text: str) -> Path:
    if not text:
        raise ConfigError("must not be empty")
    return Path(text)


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


@dataclass(frozen=True, slots=True)
class Kind:
    """How one type of setting is read from text and from TOML, and what every value must pass."""

    expected: str  # for type errors: 'expected <expected>, got string'
    metavar: str  # for --help
    from_text: Callable[[str], Any]
    from_toml: Mapping[type, Callable[[Any], Any]]  # exact TOML value type → converter
    checks: tuple[Check, ...] = ()

    def where(self, *checks: Check, metavar: str | None = None) -> Kind:
        return replace(self, checks=self.checks + checks, metavar=metavar or self.metavar)

    def parse(self, text: str) -> Any:
        return self._check(self.from_text(text))

    def coerce(self, raw: object) -> Any:
        convert = self.from_toml.get(type(raw))
        if convert is None:
            raise ConfigError(f"expected {self.expected}, got {toml_type_name(raw)}")
        return self._check(convert(raw))

    def _check(self, value: Any) -> Any:
        for check in self.checks:
            value = check(value)
        return value


def _same(value: Any) -> Any:
    return value


STRING = Kind("a string", "TEXT", _same, {str: _same})
PATH = Kind("a string (a path)", "PATH", _path, {str: _path})
OPTIONAL_PATH = Kind("a string (a path, or empty)", "PATH", _optional_path, {str: _optional_path})
BOOL = Kind("a boolean", "BOOL", parse_bool, {bool: _same})
INT = Kind("an integer", "N", parse_int, {int: _same})
DURATION = Kind(
    'a duration (a string like "30s" or an integer of seconds)',
    "DURATION",
    parse_duration,
    {str: parse_duration, int: _seconds},
)
SIZE = Kind(
    'a size (a string like "32MiB" or an integer of bytes)',
    "SIZE",
    parse_size,
    {str: parse_size, int: _bytes},
)
ADDRESS = STRING.where(check_address, metavar="HOST:PORT")
HTTP_URL = STRING.where(check_http_url, metavar="URL")
POSTGRES_URL = STRING.where(check_postgres_url, metavar="URL")
PROXY_URL = STRING.where(check_proxy_url, metavar="URL")


# -- lists and tables (the proxy's) ---------------------------------------------------------------


def _text_items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _cidr(text: object) -> str:
    if not isinstance(text, str):
        raise ConfigError(f"expected a CIDR string, got {toml_type_name(text)}")
    try:
        return ipaddress.ip_network(text.strip(), strict=False).compressed
    except ValueError:
        raise ConfigError(f'invalid CIDR "{text}" (expected e.g. 10.0.0.0/8 or fd00::/8)') from None


def _cidrs(items: Iterable[object]) -> tuple[str, ...]:
    return tuple(_cidr(item) for item in items)


def _port(value: object) -> int:
    if isinstance(value, str):
        value = parse_int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ConfigError(f"invalid port {value!r} (expected 1-65535)")
    return value


def _ports(items: Iterable[object]) -> tuple[int, ...]:
    return tuple(_port(item) for item in items)


def _host_map_pairs(pairs: Iterable[tuple[object, object]]) -> Mapping[str, str]:
    mapped: dict[str, str] = {}
    for host, name in pairs:
        if not isinstance(host, str) or not host.strip() or not isinstance(name, str) or not name:
            raise ConfigError('expected host = "provider-name" entries')
        mapped[host.strip().lower().rstrip(".")] = name.strip()
    return MappingProxyType(mapped)


def _host_map_text(text: str) -> Mapping[str, str]:
    pairs = []
    for item in _text_items(text):
        host, sep, name = item.partition("=")
        if not sep:
            raise ConfigError(f'invalid entry "{item}" (expected host=provider-name)')
        pairs.append((host, name))
    return _host_map_pairs(pairs)


def _host_map_table(table: Mapping[str, object]) -> Mapping[str, str]:
    return _host_map_pairs(table.items())


# Comma-separated in the environment and on flags, arrays (a table for the map) in TOML.
CIDR_LIST = Kind(
    "an array of CIDR strings", "CIDR,...", lambda t: _cidrs(_text_items(t)), {list: _cidrs}
)
PORT_LIST = Kind(
    "an array of port numbers", "PORT,...", lambda t: _ports(_text_items(t)), {list: _ports}
)
HOST_MAP = Kind(
    'a table of host = "provider-name"', "HOST=NAME,...", _host_map_text, {dict: _host_map_table}
)


# -- locating errors ------------------------------------------------------------------------------


def located(where: str, parse: Callable[[Any], Any], raw: Any) -> Any:
    """`parse(raw)`, with `where` ("key" in file, variable, flag) put in front of any error."""
    try:
        return parse(raw)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def unknown(what: str, path: str, candidates: Iterable[str], source: str) -> ConfigError:
    """`unknown key "server.htp_address" in /x.toml (did you mean "server.http_address"?)`."""
    prefix, _, name = path.rpartition(".")
    close = difflib.get_close_matches(name, list(candidates), n=1)
    hint = f' (did you mean "{prefix + "." if prefix else ""}{close[0]}"?)' if close else ""
    return ConfigError(f'unknown {what} "{path}" in {source}{hint}')
