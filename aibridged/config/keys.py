"""Every setting as one row of `KEYS`: dotted TOML path, kind, default, attribute, flag, aliases.

The TOML reader, the `AIBRIDGED_<SECTION>_<KEY>` environment names, the command-line flags and the
test that keeps `config/aibridged.example.toml` complete are all driven by this table: a new
setting is a row here and a field in `tree.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aibridged.config.values import (
    ADDRESS,
    BOOL,
    CIDR_LIST,
    DURATION,
    HOST_MAP,
    HTTP_URL,
    INT,
    OPTIONAL_PATH,
    PATH,
    PORT_LIST,
    POSTGRES_URL,
    PROXY_URL,
    SIZE,
    STRING,
    Kind,
    between,
    check_address,
    not_empty,
    one_of,
    positive,
)
from aibridged.errors import ConfigError

DAY_S = 86400.0
MIB = 1024 * 1024


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
_OPTIONAL_ADDRESS = STRING.where(
    lambda text: check_address(text) if text else text, metavar="HOST:PORT"
)


def _at_least_one(values: tuple[int, ...]) -> tuple[int, ...]:
    if not values:
        raise ConfigError("must list at least one port")
    return values


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
    Key("server.secrets_key_file", OPTIONAL_PATH, None, flag="--secrets-key-file"),
    Key("server.dashboard_session_lifetime", _POSITIVE_DURATION, 12 * 3600.0,
        attr="dashboard_session_lifetime_s"),
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
    Key("ai_gateway.recording", BOOL, True, flag="--ai-gateway-recording"),
    Key("ai_gateway.recording_synchronous_commit", BOOL, False),
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
    Key("ai_gateway.auth_failure_limit", _COUNT, 60, flag="--ai-gateway-auth-failure-limit"),
    Key("ai_gateway.max_event_size", SIZE.where(positive), 16 * MIB, attr="max_event_bytes"),
    Key(
        "ai_gateway.providers_poll_interval", _POSITIVE_DURATION, 30.0,
        attr="providers_poll_interval_s",
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
    # [trace]
    Key("trace.enable", BOOL, False, flag="--trace", aliases=("CODER_TRACE_ENABLE",)),
    Key("trace.logs", BOOL, False, flag="--trace-logs", aliases=("CODER_TRACE_LOGS",)),
    Key("trace.otlp_endpoint", HTTP_URL, "", flag="--trace-otlp-endpoint"),
    Key("trace.file", _PATH_TEXT, "", flag="--trace-file"),
    Key("trace.service_name", STRING.where(not_empty), "aibridged"),
    # [proxy]
    Key(
        "proxy.listen_address", ADDRESS, "127.0.0.1:8888",
        flag="--proxy-listen-address", aliases=coder("PROXY_LISTEN_ADDR"),
    ),
    Key("proxy.tls_listen_address", _OPTIONAL_ADDRESS, ""),
    Key("proxy.tls_cert_file", OPTIONAL_PATH, None, aliases=coder("PROXY_TLS_CERT_FILE")),
    Key("proxy.tls_key_file", OPTIONAL_PATH, None, aliases=coder("PROXY_TLS_KEY_FILE")),
    Key("proxy.ca_cert_file", OPTIONAL_PATH, None, aliases=coder("PROXY_CERT_FILE")),
    Key("proxy.ca_key_file", OPTIONAL_PATH, None, aliases=coder("PROXY_KEY_FILE")),
    Key("proxy.target", HTTP_URL, "", flag="--proxy-target", aliases=coder("PROXY_TARGET")),
    Key("proxy.upstream", PROXY_URL, "", aliases=coder("PROXY_UPSTREAM")),
    Key("proxy.upstream_ca", OPTIONAL_PATH, None, aliases=coder("PROXY_UPSTREAM_CA")),
    Key(
        "proxy.allowed_private_cidrs", CIDR_LIST, (),
        aliases=coder("PROXY_ALLOWED_PRIVATE_CIDRS"),
    ),
    Key("proxy.allowed_ports", PORT_LIST.where(_at_least_one), (80, 443)),
    Key("proxy.header_timeout", _POSITIVE_DURATION, 10.0, attr="header_timeout_s"),
    Key("proxy.metrics_address", ADDRESS, "127.0.0.1:2113"),
    Key("proxy.intercept", HOST_MAP, MappingProxyType({})),
)
# fmt: on

_KEY_BY_PATH: Mapping[str, Key] = MappingProxyType({key.path: key for key in KEYS})
FLAG_FOR_KEY: Mapping[str, str] = MappingProxyType({k.path: k.flag for k in KEYS if k.flag})
# AIBRIDGED_* names read by other parts of the program (cli, admin commands).
_OTHER_AIBRIDGED_VARS = frozenset({"AIBRIDGED_CONFIG", "AIBRIDGED_URL", "AIBRIDGED_TOKEN"})
