"""Configuration: the frozen settings tree and its loader.

Precedence, key by key: command-line flag > environment variable > TOML file > default.

Every setting is one row of `KEYS`: dotted TOML path, kind (how to parse and check it), default,
dataclass attribute (units in the name), flag, Coder environment aliases. The TOML reader, the
`AIBRIDGED_<SECTION>_<KEY>` environment names, the command-line flags and the test that keeps
`config/aibridged.example.toml` complete are all driven by that table: a new section is a dataclass
in `SECTIONS` plus its rows. Provider seeds (`[[providers]]` and the indexed
`CODER_AI_GATEWAY_PROVIDER_<N>_*` variables) are a list and have their own small table.

Every error is a `ConfigError` naming where the value came from: `"server.http_address" in
/etc/aibridged/aibridged.toml`, `AIBRIDGED_SERVER_HTTP_ADDRESS` or `--http-address`.
"""

from __future__ import annotations

import argparse
import difflib
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aibridged.config_parse import (
    ADDRESS,
    BOOL,
    DURATION,
    HTTP_URL,
    INT,
    OPTIONAL_PATH,
    PATH,
    POSTGRES_URL,
    SIZE,
    STRING,
    Kind,
    SeedValues,
    between,
    env_seeds,
    located,
    one_of,
    positive,
    toml_seeds,
    toml_type_name,
    unknown,
)
from aibridged.config_parse import PROVIDER_KEYS as PROVIDER_KEYS
from aibridged.config_parse import PROVIDER_TYPES as PROVIDER_TYPES
from aibridged.config_parse import parse_address as parse_address
from aibridged.config_parse import parse_bool as parse_bool
from aibridged.config_parse import parse_duration as parse_duration
from aibridged.config_parse import parse_size as parse_size
from aibridged.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/aibridged/aibridged.toml")
DAY_S = 86400.0
MIB = 1024 * 1024

# ---------------------------------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    http_address: str  # host:port
    access_url: str  # "" = not set
    state_dir: Path
    shutdown_grace_s: float
    tls_cert_file: Path | None  # both or neither
    tls_key_file: Path | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseConfig:
    url: str = field(repr=False)  # "" = embedded PostgreSQL; may hold a password
    pool_size: int
    connect_timeout_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakerConfig:
    enabled: bool
    failure_threshold: int  # consecutive failures that open the breaker
    interval_s: float  # closed state: failure counts reset this often (0 = never)
    timeout_s: float  # open → half-open after this long
    max_requests: int  # requests let through while half-open


@dataclass(frozen=True, slots=True, kw_only=True)
class AIGatewayConfig:
    enabled: bool
    api_dump_dir: str  # "" = off
    retention_s: float  # 0 = keep forever
    structured_logging: bool
    max_body_bytes: int
    allow_byok: bool
    max_concurrency: int  # 0 = unlimited
    rate_limit: int  # requests/s per token, 0 = off
    send_actor_headers: bool
    stream_ping_interval_s: float
    upstream_connect_timeout_s: float
    upstream_timeout_s: float  # time without a byte from upstream before giving up
    token_cache_ttl_s: float
    request_body_timeout_s: float  # a client must send its whole request body within this
    circuit_breaker: CircuitBreakerConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderSeed:
    """A provider to insert on first boot (SPEC 5.4); the key material is resolved by the seeder."""

    type: str
    name: str
    display_name: str
    base_url: str = ""  # "" = the type's default
    key_env: str = ""  # name of an environment variable holding the key
    key_file: Path | None = None
    keys: tuple[str, ...] = field(default=(), repr=False)  # only from CODER_*_PROVIDER_<N>_KEY(S)
    enabled: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class PrometheusConfig:
    enabled: bool
    address: str  # host:port


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    human: str  # path; "" or "-" = stderr
    json: str  # path; "" = off
    level: str  # debug, info, warn, warning, error


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    server: ServerConfig
    database: DatabaseConfig
    ai_gateway: AIGatewayConfig
    providers: tuple[ProviderSeed, ...]
    prometheus: PrometheusConfig
    log: LogConfig
    source: str  # the TOML file used, or ""


# Dotted section path → dataclass. A nested section becomes the attribute of its parent named by its
# last component (ai_gateway.circuit_breaker → AIGatewayConfig.circuit_breaker).
SECTIONS: Mapping[str, type[Any]] = MappingProxyType(
    {
        "server": ServerConfig,
        "database": DatabaseConfig,
        "ai_gateway": AIGatewayConfig,
        "ai_gateway.circuit_breaker": CircuitBreakerConfig,
        "prometheus": PrometheusConfig,
        "log": LogConfig,
    }
)

# ------------------------------------------------------------------------------------- the keys


@dataclass(frozen=True, slots=True)
class Key:
    """One setting: where it lives in TOML, how to read it, its default and its other names."""

    path: str  # dotted TOML path
    kind: Kind
    default: Any
    attr: str = ""  # dataclass attribute, when it differs from the last path component
    flag: str = ""  # command-line option, "" = none
    aliases: tuple[str, ...] = ()  # more environment names, weaker than AIBRIDGED_<PATH>

    @property
    def section(self) -> str:
        return self.path.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]

    @property
    def attribute(self) -> str:
        return self.attr or self.name

    @property
    def env(self) -> str:
        return "AIBRIDGED_" + self.path.replace(".", "_").upper()


def coder(suffix: str) -> tuple[str, ...]:
    """Coder's names for an ai_gateway setting, newest spelling first."""
    return (f"CODER_AI_GATEWAY_{suffix}", f"CODER_AIBRIDGE_{suffix}")


_POSITIVE_DURATION = DURATION.where(positive)
_COUNT = INT.where(between(0))
_PATH_TEXT = STRING.where(metavar="PATH")  # a path kept as text: "" and "-" mean something
LOG_LEVELS = ("debug", "info", "warn", "warning", "error")
_LOG_LEVEL = STRING.where(one_of(*LOG_LEVELS), metavar="LEVEL")

# fmt: off
KEYS: tuple[Key, ...] = (
    # [server]
    Key("server.http_address", ADDRESS, "127.0.0.1:3000", flag="--http-address"),
    Key("server.access_url", HTTP_URL, "", flag="--access-url"),
    Key("server.state_dir", PATH, Path("/var/lib/aibridged"), flag="--state-dir"),
    Key("server.shutdown_grace", DURATION, 30.0, attr="shutdown_grace_s", flag="--shutdown-grace"),
    Key("server.tls_cert_file", OPTIONAL_PATH, None, flag="--tls-cert-file"),
    Key("server.tls_key_file", OPTIONAL_PATH, None, flag="--tls-key-file"),
    # [database]
    Key("database.url", POSTGRES_URL, "", flag="--database-url"),
    Key("database.pool_size", INT.where(between(1, 1000)), 10),
    Key("database.connect_timeout", _POSITIVE_DURATION, 10.0, attr="connect_timeout_s"),
    # [ai_gateway]
    Key("ai_gateway.enabled", BOOL, True, flag="--ai-gateway-enabled", aliases=coder("ENABLED")),
    Key(
        "ai_gateway.api_dump_dir", _PATH_TEXT, "",
        flag="--ai-gateway-dump-dir", aliases=coder("DUMP_DIR"),
    ),
    Key(
        "ai_gateway.retention", DURATION, 60 * DAY_S, attr="retention_s",
        flag="--ai-gateway-retention", aliases=coder("RETENTION"),
    ),
    Key(
        "ai_gateway.structured_logging", BOOL, False,
        flag="--ai-gateway-structured-logging", aliases=coder("STRUCTURED_LOGGING"),
    ),
    Key(
        "ai_gateway.max_body_size", SIZE.where(positive), 32 * MIB, attr="max_body_bytes",
        flag="--ai-gateway-max-body-size",
    ),
    Key(
        "ai_gateway.allow_byok", BOOL, True,
        flag="--ai-gateway-allow-byok", aliases=coder("ALLOW_BYOK"),
    ),
    Key(
        "ai_gateway.max_concurrency", _COUNT, 0,
        flag="--ai-gateway-max-concurrency", aliases=coder("MAX_CONCURRENCY"),
    ),
    Key(
        "ai_gateway.rate_limit", _COUNT, 0,
        flag="--ai-gateway-rate-limit", aliases=coder("RATE_LIMIT"),
    ),
    Key(
        "ai_gateway.send_actor_headers", BOOL, False,
        flag="--ai-gateway-send-actor-headers", aliases=coder("SEND_ACTOR_HEADERS"),
    ),
    Key("ai_gateway.stream_ping_interval", _POSITIVE_DURATION, 10.0, attr="stream_ping_interval_s"),
    Key(
        "ai_gateway.upstream_connect_timeout", _POSITIVE_DURATION, 10.0,
        attr="upstream_connect_timeout_s",
    ),
    Key("ai_gateway.upstream_timeout", _POSITIVE_DURATION, 600.0, attr="upstream_timeout_s"),
    Key("ai_gateway.token_cache_ttl", _POSITIVE_DURATION, 5.0, attr="token_cache_ttl_s"),
    Key(
        "ai_gateway.request_body_timeout", _POSITIVE_DURATION, 60.0,
        attr="request_body_timeout_s",
    ),
    # [ai_gateway.circuit_breaker]
    Key(
        "ai_gateway.circuit_breaker.enabled", BOOL, False,
        aliases=coder("CIRCUIT_BREAKER_ENABLED"),
    ),
    Key(
        "ai_gateway.circuit_breaker.failure_threshold", INT.where(between(1)), 5,
        aliases=coder("CIRCUIT_BREAKER_FAILURE_THRESHOLD"),
    ),
    Key(
        "ai_gateway.circuit_breaker.interval", DURATION, 10.0, attr="interval_s",
        aliases=coder("CIRCUIT_BREAKER_INTERVAL"),
    ),
    Key(
        "ai_gateway.circuit_breaker.timeout", _POSITIVE_DURATION, 30.0, attr="timeout_s",
        aliases=coder("CIRCUIT_BREAKER_TIMEOUT"),
    ),
    Key(
        "ai_gateway.circuit_breaker.max_requests", INT.where(between(1)), 3,
        aliases=coder("CIRCUIT_BREAKER_MAX_REQUESTS"),
    ),
    # [prometheus]
    Key("prometheus.enabled", BOOL, True, flag="--prometheus-enabled"),
    Key("prometheus.address", ADDRESS, "127.0.0.1:2112", flag="--prometheus-address"),
    # [log]
    Key("log.human", _PATH_TEXT, "", flag="--log-human"),
    Key("log.json", _PATH_TEXT, "", flag="--log-json"),
    Key("log.level", _LOG_LEVEL, "info", flag="--log-level"),
)
# fmt: on

_KEY_BY_PATH: Mapping[str, Key] = MappingProxyType({key.path: key for key in KEYS})
FLAG_FOR_KEY: Mapping[str, str] = MappingProxyType({k.path: k.flag for k in KEYS if k.flag})
# AIBRIDGED_* names read by other parts of the program (cli, admin commands).
_OTHER_AIBRIDGED_VARS = frozenset({"AIBRIDGED_CONFIG", "AIBRIDGED_URL", "AIBRIDGED_TOKEN"})

# ------------------------------------------------------------------------------------ the loader


def load_config(
    *,
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
    search_default_path: bool = True,
) -> Config:
    """Read the TOML file, the environment (default `os.environ`) and flags into a `Config`.

    `path=None` → `$AIBRIDGED_CONFIG` if set, else `/etc/aibridged/aibridged.toml` when it exists
    (and `search_default_path`), else defaults only. An explicit file that is missing is an error.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {key.path: key.default for key in KEYS}
    seeds: list[SeedValues] = []
    file = _choose_file(path, env, search_default_path)
    if file is not None:
        file_values, file_seeds = _from_toml(_read_toml(file), str(file))
        values.update(file_values)
        seeds += file_seeds
    values.update(_from_env(env))
    seeds += env_seeds(env)
    values.update(_from_flags(flags or {}))
    _check_unique_names(seeds)
    _check_tls(values)
    return _build(values, tuple(_seed(v) for v, _ in seeds), "" if file is None else str(file))


def _choose_file(path: Path | None, env: Mapping[str, str], search_default: bool) -> Path | None:
    if path is not None:
        return path
    if env.get("AIBRIDGED_CONFIG"):
        return Path(env["AIBRIDGED_CONFIG"])
    if search_default and DEFAULT_CONFIG_PATH.exists():
        return DEFAULT_CONFIG_PATH
    return None


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {file} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {file} is a directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse config file {file}: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot parse config file {file}: not UTF-8 text") from None


def _from_toml(data: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[SeedValues]]:
    values: dict[str, Any] = {}
    seeds: list[SeedValues] = []

    def walk(table: Mapping[str, Any], section: str) -> None:
        for name, raw in table.items():
            path = f"{section}.{name}" if section else name
            key = _KEY_BY_PATH.get(path)
            if path == "providers":
                seeds.extend(toml_seeds(raw, source))
            elif path in SECTIONS:
                if not isinstance(raw, dict):
                    got = toml_type_name(raw)
                    raise ConfigError(f'"{path}" in {source}: expected a table, got {got}')
                walk(raw, path)
            elif key is not None:
                values[path] = located(f'"{path}" in {source}', key.kind.coerce, raw)
            else:
                what = "section" if isinstance(raw, dict) else "key"
                raise unknown(what, path, _children(section), source)

    walk(data, "")
    return values, seeds


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    known = {key.env for key in KEYS} | _OTHER_AIBRIDGED_VARS
    for name in sorted(env):
        if name.startswith("AIBRIDGED_") and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown environment variable {name}{hint}")
    values: dict[str, Any] = {}
    for key in KEYS:
        var = next((n for n in (key.env, *key.aliases) if n in env), None)
        if var is not None:
            values[key.path] = located(var, key.kind.parse, env[var])
    return values


def _from_flags(flags: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path, text in flags.items():
        key = _KEY_BY_PATH.get(path)
        if key is None:
            raise ConfigError(f'unknown configuration key "{path}" given as a flag')
        values[path] = located(key.flag or f'flag "{path}"', key.kind.parse, text)
    return values


def _seed(values: Mapping[str, Any]) -> ProviderSeed:
    name = values.get("name") or values["type"]
    return ProviderSeed(
        **{**values, "name": name, "display_name": values.get("display_name") or name}
    )


def _check_unique_names(seeds: Iterable[SeedValues]) -> None:
    seen: dict[str, str] = {}
    for values, origin in seeds:
        name = values.get("name") or values["type"]
        if name in seen:
            raise ConfigError(
                f'duplicate provider name "{name}" ({seen[name]} and {origin});'
                " set a distinct name on one of them"
            )
        seen[name] = origin


def _check_tls(values: Mapping[str, Any]) -> None:
    cert, key = values["server.tls_cert_file"], values["server.tls_key_file"]
    if (cert is None) != (key is None):
        given, missing = (
            ("tls_cert_file", "tls_key_file") if key is None else ("tls_key_file", "tls_cert_file")
        )
        raise ConfigError(f"server.{given} is set but server.{missing} is not: set both or neither")


def _build(values: Mapping[str, Any], seeds: tuple[ProviderSeed, ...], source: str) -> Config:
    built: dict[str, Any] = {}
    for section in sorted(SECTIONS, key=lambda s: -s.count(".")):  # children before parents
        kwargs = {key.attribute: values[key.path] for key in KEYS if key.section == section}
        for child in SECTIONS:
            parent, _, attr = child.rpartition(".")
            if parent == section:
                kwargs[attr] = built[child]
        built[section] = SECTIONS[section](**kwargs)
    top = {name: built[name] for name in SECTIONS if "." not in name}
    return Config(**top, providers=seeds, source=source)


def _children(section: str) -> list[str]:
    names = [key.name for key in KEYS if key.section == section]
    names += [s.rpartition(".")[2] for s in SECTIONS if s.rpartition(".")[0] == section]
    return [*names, "providers"] if section == "" else names


# ------------------------------------------------------------------------------------- the flags


def _dest(path: str) -> str:
    return "cfg__" + path.replace(".", "__")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Add one `--option VALUE` per flagged key; read them back with `flags_from_args`."""
    group = parser.add_argument_group("configuration (overrides the file and the environment)")
    for key in KEYS:
        if key.flag:
            group.add_argument(
                key.flag,
                dest=_dest(key.path),
                metavar=key.kind.metavar,
                default=None,
                help=f"{key.path} (env {key.env})",
            )


def flags_from_args(ns: argparse.Namespace) -> dict[str, str]:
    """The flags that were given, as {dotted key path: text} for `load_config(flags=...)`."""
    given = {path: getattr(ns, _dest(path), None) for path in FLAG_FOR_KEY}
    return {path: str(value) for path, value in given.items() if value is not None}
