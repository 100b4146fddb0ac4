"""Provider seeds: `[[providers]]` tables and `CODER_AI_GATEWAY_PROVIDER_<N>_*` variables.

Readers return (field values, origin) pairs; the loader turns them into `ProviderSeed`s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from aibridged.config.values import (
    BOOL,
    HTTP_URL,
    OPTIONAL_PATH,
    STRING,
    Kind,
    located,
    one_of,
    toml_type_name,
    unknown,
)
from aibridged.errors import ConfigError

PROVIDER_TYPES = ("openai", "anthropic", "copilot", "azure", "google", "openrouter", "vercel",
                  "openai-compat", "bedrock")  # fmt: skip
_PROVIDER_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_provider_name(name: str) -> str:
    if _PROVIDER_NAME.fullmatch(name) is None:
        raise ConfigError(
            f'invalid provider name "{name}" (lowercase letters and digits, single dashes between'
            ' them, e.g. "openai-prod")'
        )
    return name


def check_env_name(name: str) -> str:
    if name and _ENV_NAME.fullmatch(name) is None:
        raise ConfigError(f'invalid environment variable name "{name}"')
    return name


PROVIDER_KEYS: Mapping[str, Kind] = MappingProxyType(
    {
        "type": STRING.where(one_of(*PROVIDER_TYPES)),
        "name": STRING.where(check_provider_name),
        "display_name": STRING,
        "base_url": HTTP_URL,
        "key_env": STRING.where(check_env_name),
        "key_file": OPTIONAL_PATH,
        "enabled": BOOL,
    }
)
_LITERAL_KEY_NAMES = frozenset({"key", "keys", "api_key", "api_keys"})
_SEED_VAR = re.compile(r"(CODER_AI_GATEWAY|CODER_AIBRIDGE)_PROVIDER_(\d+)_([A-Z0-9_]+)")
_SEED_SUFFIXES = {"TYPE": "type", "NAME": "name", "BASE_URL": "base_url", "KEY": "", "KEYS": ""}
# Coder's Bedrock variables → (the field or setting they give, whether it is secret). Their
# presence makes the seed a bedrock provider (an "anthropic" one becomes one, as in Coder).
_BEDROCK_SUFFIXES = {
    "BEDROCK_BASE_URL": ("base_url", False),
    "BEDROCK_REGION": ("region", False),
    "BEDROCK_MODEL": ("model", False),
    "BEDROCK_SMALL_FAST_MODEL": ("small_fast_model", False),
    "BEDROCK_ACCESS_KEY": ("access_key", True),
    "BEDROCK_ACCESS_KEYS": ("access_key", True),
    "BEDROCK_ACCESS_KEY_SECRET": ("access_key_secret", True),
    "BEDROCK_ACCESS_KEY_SECRETS": ("access_key_secret", True),
}
SeedValues = tuple[dict[str, Any], str]  # field values, origin (for messages)


def toml_seeds(raw: object, source: str) -> list[SeedValues]:
    """The `[[providers]]` tables. Literal keys are refused: secrets are referenced, not written."""
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        got = toml_type_name(raw)
        raise ConfigError(f'"providers" in {source}: expected [[providers]] tables, got {got}')
    seeds = []
    for index, table in enumerate(raw):
        label, values = f"providers[{index}]", {}
        for name, value in table.items():
            path = f"{label}.{name}"
            if name in _LITERAL_KEY_NAMES:
                raise ConfigError(
                    f'"{path}" in {source}: API keys are not written in the config file; set'
                    ' key_env = "ENV_VAR_NAME" or key_file = "/path/to/key" instead'
                )
            if name not in PROVIDER_KEYS:
                raise unknown("key", path, PROVIDER_KEYS, source)
            values[name] = located(f'"{path}" in {source}', PROVIDER_KEYS[name].coerce, value)
        if "type" not in values:
            raise ConfigError(f'"{label}" in {source}: missing required key "type"')
        if values.get("key_env") and values.get("key_file"):
            raise ConfigError(f'"{label}" in {source}: set key_env or key_file, not both')
        seeds.append((values, f"{label} in {source}"))
    return seeds


def env_seeds(env: Mapping[str, str]) -> list[SeedValues]:
    """`CODER_AI_GATEWAY_PROVIDER_<N>_{TYPE,NAME,KEY,KEYS,BASE_URL,BEDROCK_*}` (or
    `CODER_AIBRIDGE_...`)."""
    found = [(name, match) for name in sorted(env) if (match := _SEED_VAR.fullmatch(name))]
    if len({match[1] for _, match in found}) > 1:
        raise ConfigError(
            "cannot mix CODER_AIBRIDGE_PROVIDER_* and CODER_AI_GATEWAY_PROVIDER_* environment"
            " variables, please consolidate onto CODER_AI_GATEWAY_PROVIDER_*"
        )
    by_index: dict[int, dict[str, str]] = {}  # index → suffix → variable name
    for name, match in found:
        suffix = match[3]
        if suffix not in _SEED_SUFFIXES and suffix not in _BEDROCK_SUFFIXES:
            known = ", ".join([*_SEED_SUFFIXES, *_BEDROCK_SUFFIXES])
            raise ConfigError(f"unknown provider seed variable {name} (known suffixes: {known})")
        by_index.setdefault(int(match[2]), {})[suffix] = name
    seeds = []
    for expected, index in enumerate(sorted(by_index)):
        prefix = f"{found[0][1][1]}_PROVIDER_{expected}_"
        if index != expected:
            raise ConfigError(
                f"provider num {expected} skipped ({prefix}TYPE is not set;"
                " indexes must be contiguous from 0)"
            )
        variables = by_index[index]
        if "TYPE" not in variables:
            raise ConfigError(f"{prefix}TYPE is required")
        values: dict[str, Any] = {}
        for suffix, attr in _SEED_SUFFIXES.items():
            if attr and suffix in variables:
                variable = variables[suffix]
                values[attr] = located(variable, PROVIDER_KEYS[attr].parse, env[variable])
        texts = [env[variables[s]] for s in ("KEY", "KEYS") if s in variables]
        keys = (key.strip() for text in texts for key in text.split(","))
        values["keys"] = tuple(dict.fromkeys(key for key in keys if key))  # ordered, no repeats
        _bedrock_values(values, variables, env, prefix)
        seeds.append((values, f"{prefix}*"))
    return seeds


def _bedrock_values(
    values: dict[str, Any], variables: Mapping[str, str], env: Mapping[str, str], prefix: str
) -> None:
    """The BEDROCK_* variables of one seed, into its base URL, settings and secret settings."""
    given = {s: variables[s] for s in _BEDROCK_SUFFIXES if s in variables}
    if not given:
        return
    if values["type"] not in ("bedrock", "anthropic"):
        raise ConfigError(f"{prefix}BEDROCK_* variables need {prefix}TYPE=bedrock")
    values["type"] = "bedrock"
    settings: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for suffix, variable in given.items():
        name, secret = _BEDROCK_SUFFIXES[suffix]
        text = env[variable].strip()
        if name == "base_url":
            if "base_url" in values:
                raise ConfigError(f"{variable}: set {prefix}BASE_URL or this, not both")
            values["base_url"] = located(variable, HTTP_URL.parse, text)
        elif (secrets if secret else settings).setdefault(name, text) != text:
            raise ConfigError(f"{variable}: another variable of this seed gives {name} already")
    values["settings"], values["secret_settings"] = settings, secrets
