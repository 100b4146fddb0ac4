"""The frozen settings tree: one slotted, keyword-only dataclass per section, units in names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    http_address: str  # host:port
    access_url: str  # "" = not set
    state_dir: Path
    shutdown_grace_s: float
    tls_cert_file: Path | None  # both or neither
    tls_key_file: Path | None
    secrets_key_file: Path | None  # None = <state_dir>/secrets.key
    dashboard_session_lifetime_s: float  # a dashboard sign-in lasts this long

    @property
    def secrets_key_path(self) -> Path:
        return self.secrets_key_file or self.state_dir / "secrets.key"


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
    recording: bool  # record interceptions to the database
    recording_synchronous_commit: bool  # each record commit waits for the WAL flush
    structured_logging: bool  # one `interception log` line per record
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
    auth_failure_limit: int  # failed authentications per client address per minute, 0 = off
    max_event_bytes: int  # an SSE event (or observed body) past this is relayed unparsed
    providers_poll_interval_s: float  # reload providers this often even without a NOTIFY
    circuit_breaker: CircuitBreakerConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderSeed:
    """A provider to insert on first boot; the key material is resolved by the seeder."""

    type: str
    name: str
    display_name: str
    base_url: str = ""  # "" = the type's default
    key_env: str = ""  # name of an environment variable holding the key
    key_file: Path | None = None
    keys: tuple[str, ...] = field(default=(), repr=False)  # only from CODER_*_PROVIDER_<N>_KEY(S)
    enabled: bool = True
    # Only from CODER_*_PROVIDER_<N>_BEDROCK_*: region and models, and the static AWS keys.
    settings: Mapping[str, str] = field(default_factory=dict)
    secret_settings: Mapping[str, str] = field(default_factory=dict, repr=False)


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
class TraceConfig:
    enable: bool  # OpenTelemetry spans for every data-plane request
    logs: bool  # log lines also become events of the span they were logged in
    otlp_endpoint: str  # OTLP/HTTP collector URL; "" = write spans to `file`
    file: str  # when there is no otlp_endpoint: JSON lines to this path, "" or "-" = stderr
    service_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyConfig:
    """`aibridged proxy` (aibridgeproxyd); the gateway reads only `ca_cert_file` (to serve it)."""

    listen_address: str  # host:port of the plain CONNECT listener
    tls_listen_address: str  # "" = no TLS listener
    tls_cert_file: Path | None  # the TLS listener's; both or neither
    tls_key_file: Path | None
    ca_cert_file: Path | None  # the MITM CA; both needed to run the proxy
    ca_key_file: Path | None
    target: str  # where decrypted requests go; "" = <access URL or http address>/api/v2/aibridge
    upstream: str = field(repr=False)  # corporate proxy for tunnelled traffic; may hold a password
    upstream_ca: Path | None  # extra CA for an https:// upstream
    allowed_private_cidrs: tuple[str, ...]
    allowed_ports: tuple[int, ...]
    header_timeout_s: float  # a client must send its CONNECT (or a request's head) within this
    metrics_address: str  # the proxy's own Prometheus listener (with prometheus.enabled)
    intercept: Mapping[str, str]  # host -> provider name, on top of the providers' base URL hosts


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    server: ServerConfig
    database: DatabaseConfig
    ai_gateway: AIGatewayConfig
    providers: tuple[ProviderSeed, ...]
    prometheus: PrometheusConfig
    log: LogConfig
    trace: TraceConfig
    proxy: ProxyConfig
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
        "trace": TraceConfig,
        "proxy": ProxyConfig,
    }
)
