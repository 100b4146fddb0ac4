"""Configuration: the frozen settings tree and its loader.

Precedence, key by key: command-line flag > environment variable > TOML file > default.

    tree.py     the dataclasses (one per section) and SECTIONS
    keys.py     KEYS: one row per setting (path, kind, default, attribute, flag, Coder aliases)
    values.py   how each kind of value is parsed and checked
    seeds.py    provider seeds: [[providers]] and CODER_AI_GATEWAY_PROVIDER_<N>_*
    load.py     load_config, and the command-line flags (add_config_flags, flags_from_args)
"""

from aibridged.config.keys import FLAG_FOR_KEY, KEYS, Key
from aibridged.config.load import (
    DEFAULT_CONFIG_PATH,
    add_config_flags,
    flags_from_args,
    load_config,
    spell_out_bool_flags,
)
from aibridged.config.seeds import PROVIDER_KEYS, PROVIDER_TYPES
from aibridged.config.tree import (
    SECTIONS,
    AIGatewayConfig,
    CircuitBreakerConfig,
    Config,
    DatabaseConfig,
    LogConfig,
    PrometheusConfig,
    ProviderSeed,
    ProxyConfig,
    ServerConfig,
    TraceConfig,
)
from aibridged.config.values import parse_address, parse_bool, parse_duration, parse_size

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "FLAG_FOR_KEY",
    "KEYS",
    "PROVIDER_KEYS",
    "PROVIDER_TYPES",
    "SECTIONS",
    "AIGatewayConfig",
    "CircuitBreakerConfig",
    "Config",
    "DatabaseConfig",
    "Key",
    "LogConfig",
    "PrometheusConfig",
    "ProviderSeed",
    "ProxyConfig",
    "ServerConfig",
    "TraceConfig",
    "add_config_flags",
    "flags_from_args",
    "load_config",
    "parse_address",
    "parse_bool",
    "parse_duration",
    "parse_size",
    "spell_out_bool_flags",
]
