"""Configuration: precedence, every error path, value parsers, Coder aliases, provider seeds, flags
and the example file."""

from __future__ import annotations

import argparse
import dataclasses
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from aibridged.config import (
    FLAG_FOR_KEY,
    KEYS,
    PROVIDER_KEYS,
    Config,
    ProviderSeed,
    add_config_flags,
    flags_from_args,
    load_config,
    parse_address,
    parse_bool,
    parse_duration,
    parse_size,
    spell_out_bool_flags,
)
from aibridged.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "aibridged.example.toml"
DAY = 86400.0


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Config:
    return load_config(path=path, env=env or {}, flags=flags or {}, search_default_path=False)


@pytest.fixture
def toml_file(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "aibridged.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def error_of(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> str:
    with pytest.raises(ConfigError) as caught:
        load(path, env, flags)
    return str(caught.value)


# ---------------------------------------------------------------------------------- precedence


def test_no_file_no_env_no_flags_gives_the_documented_defaults() -> None:
    config = load()
    assert config.source == ""
    assert config.server.http_address == "127.0.0.1:3000"
    assert config.server.state_dir == Path("/var/lib/aibridged")
    assert config.server.shutdown_grace_s == 30.0
    assert config.server.tls_cert_file is None
    assert config.database.url == ""
    assert config.database.pool_size == 10
    assert config.ai_gateway.enabled is True
    assert config.ai_gateway.retention_s == 60 * DAY
    assert config.ai_gateway.max_body_bytes == 32 * 1024 * 1024
    assert config.ai_gateway.upstream_timeout_s == 600.0
    assert config.ai_gateway.circuit_breaker.enabled is False
    assert config.ai_gateway.circuit_breaker.failure_threshold == 5
    assert config.providers == ()
    assert config.prometheus.address == "127.0.0.1:2112"
    assert config.log.level == "info"


# (dotted path, TOML value, env text, flag text, reader, expected from TOML / env / flag)
PRECEDENCE = [
    ("server.http_address", '"0.0.0.0:1"', "0.0.0.0:2", "0.0.0.0:3",
     lambda c: c.server.http_address, ("0.0.0.0:1", "0.0.0.0:2", "0.0.0.0:3")),
    ("ai_gateway.retention", '"1d"', "2d", "3d",
     lambda c: c.ai_gateway.retention_s, (DAY, 2 * DAY, 3 * DAY)),
    ("ai_gateway.max_body_size", '"1KiB"', "2KiB", "3KiB",
     lambda c: c.ai_gateway.max_body_bytes, (1024, 2048, 3072)),
    ("ai_gateway.circuit_breaker.enabled", "true", "false", "true",
     lambda c: c.ai_gateway.circuit_breaker.enabled, (True, False, True)),
    ("log.level", '"debug"', "error", "warn", lambda c: c.log.level, ("debug", "error", "warn")),
]  # fmt: skip


def _toml_setting(path: str, value: str) -> str:
    section, _, name = path.rpartition(".")
    return f"[{section}]\n{name} = {value}\n"


def _env_name(path: str) -> str:
    return "AIBRIDGED_" + path.replace(".", "_").upper()


@pytest.mark.parametrize(("path", "toml", "env", "flag", "read", "expected"), PRECEDENCE)
def test_toml_beats_default_env_beats_toml_and_flag_beats_env(
    toml_file: Callable[[str], Path],
    path: str,
    toml: str,
    env: str,
    flag: str,
    read: Callable[[Config], Any],
    expected: tuple[Any, Any, Any],
) -> None:
    file = toml_file(_toml_setting(path, toml))
    default = read(load())
    from_toml = read(load(file))
    from_env = read(load(file, env={_env_name(path): env}))
    from_flag = read(load(file, env={_env_name(path): env}, flags={path: flag}))
    assert (from_toml, from_env, from_flag) == expected
    assert default != from_toml


def test_flag_beats_default_without_file_or_env() -> None:
    config = load(flags={"server.http_address": "127.0.0.1:0", "ai_gateway.retention": "30d"})
    assert config.server.http_address == "127.0.0.1:0"
    assert config.ai_gateway.retention_s == 30 * DAY


def test_source_names_the_file_that_was_read(toml_file: Callable[[str], Path]) -> None:
    file = toml_file("")
    assert load(file).source == str(file)


def test_aibridged_config_variable_selects_the_file(toml_file: Callable[[str], Path]) -> None:
    file = toml_file('[log]\nlevel = "error"\n')
    config = load(env={"AIBRIDGED_CONFIG": str(file)})
    assert (config.source, config.log.level) == (str(file), "error")


def test_default_path_is_read_only_when_searching(
    toml_file: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    file = toml_file('[log]\nlevel = "error"\n')
    monkeypatch.setattr("aibridged.config.load.DEFAULT_CONFIG_PATH", file)
    assert load_config(env={}).log.level == "error"
    assert load_config(env={}, search_default_path=False).log.level == "info"


def test_missing_default_path_means_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aibridged.config.load.DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    assert load_config(env={}).source == ""


def test_config_tree_is_immutable() -> None:
    config = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.http_address = "0.0.0.0:1"  # type: ignore[misc]


# ------------------------------------------------------------------------------- error paths


def test_explicit_config_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert error_of(missing) == f"config file {missing} does not exist"


def test_config_file_named_by_aibridged_config_that_does_not_exist_is_an_error(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nope.toml"
    assert "does not exist" in error_of(env={"AIBRIDGED_CONFIG": str(missing)})


def test_malformed_toml_names_the_file_line_and_column(toml_file: Callable[[str], Path]) -> None:
    file = toml_file('[server]\nhttp_address = "127.0.0.1:3000\n')
    message = error_of(file)
    assert message.startswith(f"cannot parse config file {file}: ")
    assert re.search(r"line 2, column \d+", message)


def test_unknown_key_names_path_and_file_and_suggests_the_closest(
    toml_file: Callable[[str], Path],
) -> None:
    file = toml_file('[server]\nhtp_address = "127.0.0.1:3000"\n')
    assert error_of(file) == (
        f'unknown key "server.htp_address" in {file} (did you mean "server.http_address"?)'
    )


def test_unknown_key_without_a_close_match_has_no_suggestion(
    toml_file: Callable[[str], Path],
) -> None:
    file = toml_file("[database]\nzzzz = 1\n")
    assert error_of(file) == f'unknown key "database.zzzz" in {file}'


def test_unknown_section_is_named_with_a_suggestion(toml_file: Callable[[str], Path]) -> None:
    file = toml_file('[servr]\nhttp_address = "127.0.0.1:3000"\n')
    assert error_of(file) == f'unknown section "servr" in {file} (did you mean "server"?)'


def test_unknown_nested_section_is_named_with_its_dotted_path(
    toml_file: Callable[[str], Path],
) -> None:
    file = toml_file("[ai_gateway.circuit_braker]\nenabled = true\n")
    assert error_of(file) == (
        f'unknown section "ai_gateway.circuit_braker" in {file}'
        ' (did you mean "ai_gateway.circuit_breaker"?)'
    )


def test_not_yet_supported_sections_are_unknown(toml_file: Callable[[str], Path]) -> None:
    file = toml_file("[mcp]\nservers = []\n")
    assert error_of(file).startswith('unknown section "mcp"')


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[ai_gateway]\nmax_concurrency = "4"\n',
         '"ai_gateway.max_concurrency" in {file}: expected an integer, got string'),
        ("[database]\npool_size = true\n",
         '"database.pool_size" in {file}: expected an integer, got boolean'),
        ('[ai_gateway]\nenabled = "yes"\n',
         '"ai_gateway.enabled" in {file}: expected a boolean, got string'),
        ("[server]\nhttp_address = 3000\n",
         '"server.http_address" in {file}: expected a string, got integer'),
        ("[ai_gateway]\nretention = 1.5\n",
         '"ai_gateway.retention" in {file}: expected a duration (a string like "30s" or an'
         " integer of seconds), got float"),
        ("server = 1\n", '"server" in {file}: expected a table, got integer'),
        ('[providers]\ntype = "openai"\n',
         '"providers" in {file}: expected [[providers]] tables, got table'),
    ],
)  # fmt: skip
def test_wrong_toml_type_names_key_file_expected_and_actual_type(
    toml_file: Callable[[str], Path], toml: str, message: str
) -> None:
    file = toml_file(toml)
    assert error_of(file) == message.format(file=file)


def test_invalid_duration_in_toml_names_key_and_file(toml_file: Callable[[str], Path]) -> None:
    file = toml_file('[ai_gateway]\nretention = "5 parsecs"\n')
    assert error_of(file).startswith(
        f'"ai_gateway.retention" in {file}: invalid duration "5 parsecs"'
    )


def test_negative_integer_duration_in_toml_is_an_error(toml_file: Callable[[str], Path]) -> None:
    file = toml_file("[server]\nshutdown_grace = -1\n")
    assert error_of(file).startswith(f'"server.shutdown_grace" in {file}: invalid duration -1')


def test_invalid_duration_in_env_names_the_variable() -> None:
    message = error_of(env={"AIBRIDGED_AI_GATEWAY_RETENTION": "x"})
    assert message.startswith('AIBRIDGED_AI_GATEWAY_RETENTION: invalid duration "x"')


def test_invalid_duration_in_flags_names_the_flag() -> None:
    message = error_of(flags={"ai_gateway.retention": "forever"})
    assert message.startswith('--ai-gateway-retention: invalid duration "forever"')


def test_invalid_value_of_a_key_without_flag_names_the_key() -> None:
    message = error_of(flags={"database.pool_size": "many"})
    assert message == 'flag "database.pool_size": invalid integer "many"'


def test_invalid_size_names_where_it_came_from(toml_file: Callable[[str], Path]) -> None:
    file = toml_file('[ai_gateway]\nmax_body_size = "32 parsecs"\n')
    assert error_of(file).startswith(
        f'"ai_gateway.max_body_size" in {file}: invalid size "32 parsecs"'
    )
    assert error_of(env={"AIBRIDGED_AI_GATEWAY_MAX_BODY_SIZE": "lots"}).startswith(
        'AIBRIDGED_AI_GATEWAY_MAX_BODY_SIZE: invalid size "lots"'
    )


def test_zero_max_body_size_is_rejected() -> None:
    message = error_of(flags={"ai_gateway.max_body_size": "0"})
    assert message == "--ai-gateway-max-body-size: must be greater than 0, got 0"


def test_invalid_boolean_in_env_is_an_error_not_false() -> None:
    message = error_of(env={"AIBRIDGED_AI_GATEWAY_ENABLED": "nope"})
    assert message.startswith('AIBRIDGED_AI_GATEWAY_ENABLED: invalid boolean "nope"')


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("localhost", 'invalid address "localhost" (expected host:port'),
        ("127.0.0.1:65536", 'invalid address "127.0.0.1:65536" (port must be 0-65535)'),
        ("::1:3000", 'invalid address "::1:3000" (expected host:port'),
        ("[nothost]:3000", 'invalid address "[nothost]:3000" (nothost is not an IPv6 address)'),
        (":3000", 'invalid address ":3000" (expected host:port'),
    ],
)
def test_bad_listen_address_is_rejected(text: str, problem: str) -> None:
    assert error_of(flags={"server.http_address": text}).startswith(f"--http-address: {problem}")
    assert error_of(env={"AIBRIDGED_PROMETHEUS_ADDRESS": text}).startswith(
        f"AIBRIDGED_PROMETHEUS_ADDRESS: {problem}"
    )


def test_integer_below_its_range_is_rejected(toml_file: Callable[[str], Path]) -> None:
    file = toml_file("[database]\npool_size = 0\n")
    assert error_of(file) == f'"database.pool_size" in {file}: must be between 1 and 1000, got 0'
    file = toml_file("[ai_gateway]\nmax_concurrency = -1\n")
    assert error_of(file) == (f'"ai_gateway.max_concurrency" in {file}: must be at least 0, got -1')


def test_zero_timeout_is_rejected_where_it_must_be_positive() -> None:
    message = error_of(env={"AIBRIDGED_AI_GATEWAY_TOKEN_CACHE_TTL": "0"})
    assert message == "AIBRIDGED_AI_GATEWAY_TOKEN_CACHE_TTL: must be greater than 0, got 0"


def test_access_url_must_be_http_or_https() -> None:
    message = error_of(flags={"server.access_url": "ftp://gateway.example"})
    assert message.startswith('--access-url: invalid URL "ftp://gateway.example"')
    good = load(flags={"server.access_url": "https://ai.example.com"})
    assert good.server.access_url == "https://ai.example.com"


def test_database_url_must_be_postgres_and_is_not_echoed() -> None:
    message = error_of(env={"AIBRIDGED_DATABASE_URL": "mysql://u:hunter2@db/x"})
    assert message.startswith("AIBRIDGED_DATABASE_URL: invalid database URL")
    assert "hunter2" not in message


def test_unknown_log_level_is_rejected() -> None:
    message = error_of(flags={"log.level": "verbose"})
    assert message.startswith('--log-level: invalid value "verbose" (expected one of debug, info')


def test_log_level_is_case_insensitive() -> None:
    assert load(env={"AIBRIDGED_LOG_LEVEL": "WARNING"}).log.level == "warning"


@pytest.mark.parametrize("given", ["tls_cert_file", "tls_key_file"])
def test_tls_cert_and_key_must_be_set_together(
    toml_file: Callable[[str], Path], given: str
) -> None:
    file = toml_file(f'[server]\n{given} = "/etc/aibridged/tls.pem"\n')
    missing = {"tls_cert_file": "tls_key_file", "tls_key_file": "tls_cert_file"}[given]
    assert error_of(file) == (
        f"server.{given} is set but server.{missing} is not: set both or neither"
    )


def test_tls_cert_and_key_together_are_accepted() -> None:
    config = load(flags={"server.tls_cert_file": "/c.pem", "server.tls_key_file": "/k.pem"})
    assert (config.server.tls_cert_file, config.server.tls_key_file) == (
        Path("/c.pem"),
        Path("/k.pem"),
    )


def test_unknown_aibridged_variable_is_an_error_with_a_suggestion() -> None:
    message = error_of(env={"AIBRIDGED_SERVER_HTTP_ADDRES": "127.0.0.1:1"})
    assert message == (
        "unknown environment variable AIBRIDGED_SERVER_HTTP_ADDRES"
        " (did you mean AIBRIDGED_SERVER_HTTP_ADDRESS?)"
    )


def test_aibridged_variables_of_other_components_are_not_errors() -> None:
    load(env={"AIBRIDGED_URL": "http://127.0.0.1:3000", "AIBRIDGED_TOKEN": "x"})


def test_unknown_flag_key_is_an_error() -> None:
    assert error_of(flags={"server.nope": "1"}) == (
        'unknown configuration key "server.nope" given as a flag'
    )


# --------------------------------------------------------------------------------- parsers


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0), ("0s", 0.0), ("30s", 30.0), ("10m", 600.0), ("1h30m", 5400.0),
        ("90d", 90 * DAY), ("500ms", 0.5), ("1.5h", 5400.0), ("1d2h3m4s5ms", 93784.005),
        (" 45s ", 45.0),
    ],
)  # fmt: skip
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", " ", "-5s", "30", "5 parsecs", "1m1h", "1h1h", "s", "1.s", "abc", "1h 30m", "5S", "5sec",
     "1w", "+5s"],
)  # fmt: skip
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f'invalid duration "{text}"')):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("32MiB", 32 * 1024**2), ("512KiB", 512 * 1024), ("1GiB", 1024**3), ("10MB", 10**7),
        ("1000", 1000), ("2kb", 2000), ("3B", 3), ("7 kib", 7 * 1024), ("1gb", 10**9),
    ],
)  # fmt: skip
def test_parse_size_accepts(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "-1", "1.5MiB", "10 parsecs", "MiB", "1TiB", "1e6"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f'invalid size "{text}"')):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("On", True),
     ("false", False), ("0", False), ("no", False), ("OFF", False)],
)  # fmt: skip
def test_parse_bool_accepts(text: str, value: bool) -> None:
    assert parse_bool(text) is value


@pytest.mark.parametrize("text", ["", "2", "enabled", "t", "nah"])
def test_parse_bool_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid boolean"):
        parse_bool(text)


@pytest.mark.parametrize(
    ("text", "parts"),
    [("127.0.0.1:3000", ("127.0.0.1", 3000)), ("[::1]:0", ("::1", 0)),
     ("localhost:65535", ("localhost", 65535)), ("0.0.0.0:80", ("0.0.0.0", 80))],
)  # fmt: skip
def test_parse_address_accepts(text: str, parts: tuple[str, int]) -> None:
    assert parse_address(text) == parts


def test_toml_durations_and_sizes_may_be_integers(toml_file: Callable[[str], Path]) -> None:
    file = toml_file("[ai_gateway]\nretention = 0\nmax_body_size = 1024\nupstream_timeout = 90\n")
    gateway = load(file).ai_gateway
    assert (gateway.retention_s, gateway.max_body_bytes, gateway.upstream_timeout_s) == (
        0.0,
        1024,
        90.0,
    )


# ---------------------------------------------------------------------------- Coder aliases

# (Coder suffix, text, reader, expected)
ALIASES = [
    ("ENABLED", "false", lambda c: c.ai_gateway.enabled, False),
    ("DUMP_DIR", "/tmp/dumps", lambda c: c.ai_gateway.api_dump_dir, "/tmp/dumps"),
    ("RETENTION", "7d", lambda c: c.ai_gateway.retention_s, 7 * DAY),
    ("STRUCTURED_LOGGING", "true", lambda c: c.ai_gateway.structured_logging, True),
    ("ALLOW_BYOK", "false", lambda c: c.ai_gateway.allow_byok, False),
    ("MAX_CONCURRENCY", "8", lambda c: c.ai_gateway.max_concurrency, 8),
    ("RATE_LIMIT", "4", lambda c: c.ai_gateway.rate_limit, 4),
    ("SEND_ACTOR_HEADERS", "true", lambda c: c.ai_gateway.send_actor_headers, True),
    ("CIRCUIT_BREAKER_ENABLED", "true", lambda c: c.ai_gateway.circuit_breaker.enabled, True),
    ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "9",
     lambda c: c.ai_gateway.circuit_breaker.failure_threshold, 9),
    ("CIRCUIT_BREAKER_INTERVAL", "1m", lambda c: c.ai_gateway.circuit_breaker.interval_s, 60.0),
    ("CIRCUIT_BREAKER_TIMEOUT", "2m", lambda c: c.ai_gateway.circuit_breaker.timeout_s, 120.0),
    ("CIRCUIT_BREAKER_MAX_REQUESTS", "7",
     lambda c: c.ai_gateway.circuit_breaker.max_requests, 7),
]  # fmt: skip


@pytest.mark.parametrize("prefix", ["CODER_AI_GATEWAY_", "CODER_AIBRIDGE_"])
@pytest.mark.parametrize(("suffix", "text", "read", "expected"), ALIASES)
def test_coder_alias_sets_the_key(
    prefix: str, suffix: str, text: str, read: Callable[[Config], Any], expected: Any
) -> None:
    assert read(load()) != expected
    assert read(load(env={prefix + suffix: text})) == expected


def test_aibridged_variable_beats_its_coder_alias() -> None:
    config = load(env={"AIBRIDGED_AI_GATEWAY_RETENTION": "1d", "CODER_AI_GATEWAY_RETENTION": "2d"})
    assert config.ai_gateway.retention_s == DAY


def test_coder_ai_gateway_spelling_beats_coder_aibridge_spelling() -> None:
    config = load(env={"CODER_AIBRIDGE_RETENTION": "2d", "CODER_AI_GATEWAY_RETENTION": "3d"})
    assert config.ai_gateway.retention_s == 3 * DAY


def test_bad_alias_value_names_the_alias() -> None:
    message = error_of(env={"CODER_AIBRIDGE_ALLOW_BYOK": "maybe"})
    assert message.startswith('CODER_AIBRIDGE_ALLOW_BYOK: invalid boolean "maybe"')


def test_coder_trace_variables_set_tracing_and_aibridged_names_win() -> None:
    config = load(env={"CODER_TRACE_ENABLE": "true", "CODER_TRACE_LOGS": "on"})
    assert config.trace.enable and config.trace.logs
    config = load(env={"CODER_TRACE_ENABLE": "true", "AIBRIDGED_TRACE_ENABLE": "false"})
    assert not config.trace.enable


# ---------------------------------------------------------------------------- provider seeds

SEEDS_TOML = """
[[providers]]
type = "openai"
key_env = "OPENAI_API_KEY"

[[providers]]
type = "anthropic"
name = "claude-prod"
display_name = "Claude (prod)"
base_url = "https://llm.example.com/anthropic/"
key_file = "/etc/aibridged/anthropic.key"
enabled = false
"""


def test_toml_provider_seeds_fill_name_and_display_name_defaults(
    toml_file: Callable[[str], Path],
) -> None:
    openai, claude = load(toml_file(SEEDS_TOML)).providers
    assert openai == ProviderSeed(
        type="openai", name="openai", display_name="openai", key_env="OPENAI_API_KEY"
    )
    assert claude == ProviderSeed(
        type="anthropic",
        name="claude-prod",
        display_name="Claude (prod)",
        base_url="https://llm.example.com/anthropic/",
        key_file=Path("/etc/aibridged/anthropic.key"),
        enabled=False,
    )


def test_env_provider_seeds_are_appended_after_toml_seeds(
    toml_file: Callable[[str], Path],
) -> None:
    env = {
        "CODER_AI_GATEWAY_PROVIDER_0_TYPE": "openai-compat",
        "CODER_AI_GATEWAY_PROVIDER_0_NAME": "vllm",
        "CODER_AI_GATEWAY_PROVIDER_0_BASE_URL": "http://10.0.0.5:8000/v1",
        "CODER_AI_GATEWAY_PROVIDER_0_KEY": "sk-one, sk-two",
        "CODER_AI_GATEWAY_PROVIDER_0_KEYS": "sk-three,,sk-one",
        "CODER_AI_GATEWAY_PROVIDER_1_TYPE": "copilot",
    }
    providers = load(toml_file(SEEDS_TOML), env=env).providers
    assert [p.name for p in providers] == ["openai", "claude-prod", "vllm", "copilot"]
    vllm = providers[2]
    assert vllm.base_url == "http://10.0.0.5:8000/v1"
    assert vllm.keys == ("sk-one", "sk-two", "sk-three")
    assert providers[3] == ProviderSeed(type="copilot", name="copilot", display_name="copilot")


def test_coder_aibridge_prefix_seeds_providers_too() -> None:
    env = {"CODER_AIBRIDGE_PROVIDER_0_TYPE": "anthropic", "CODER_AIBRIDGE_PROVIDER_0_KEY": "k"}
    (seed,) = load(env=env).providers
    assert (seed.type, seed.name, seed.keys) == ("anthropic", "anthropic", ("k",))


def test_provider_keys_never_appear_in_repr() -> None:
    env = {"CODER_AI_GATEWAY_PROVIDER_0_TYPE": "openai", "CODER_AI_GATEWAY_PROVIDER_0_KEY": "sk-x1"}
    config = load(env=env)
    assert config.providers[0].keys == ("sk-x1",)
    assert "sk-x1" not in repr(config)
    assert "sk-x1" not in str(config.providers[0])


def test_database_url_never_appears_in_repr() -> None:
    config = load(env={"AIBRIDGED_DATABASE_URL": "postgres://u:hunter2@db:5432/gw"})
    assert config.database.url == "postgres://u:hunter2@db:5432/gw"
    assert "hunter2" not in repr(config)


@pytest.mark.parametrize("name", ["key", "keys", "api_key"])
def test_literal_key_in_toml_is_refused_with_the_way_to_reference_it(
    toml_file: Callable[[str], Path], name: str
) -> None:
    file = toml_file(f'[[providers]]\ntype = "openai"\n{name} = "sk-secret"\n')
    message = error_of(file)
    assert message.startswith(f'"providers[0].{name}" in {file}: API keys are not written')
    assert "key_env" in message and "key_file" in message
    assert "sk-secret" not in message


def test_bad_provider_name_is_rejected(toml_file: Callable[[str], Path]) -> None:
    file = toml_file('[[providers]]\ntype = "openai"\nname = "OpenAI_Prod"\n')
    assert error_of(file).startswith(
        f'"providers[0].name" in {file}: invalid provider name "OpenAI_Prod"'
    )
    env = {"CODER_AI_GATEWAY_PROVIDER_0_TYPE": "openai", "CODER_AI_GATEWAY_PROVIDER_0_NAME": "a--b"}
    assert error_of(env=env).startswith("CODER_AI_GATEWAY_PROVIDER_0_NAME: invalid provider name")


def test_unknown_provider_type_is_rejected(toml_file: Callable[[str], Path]) -> None:
    file = toml_file('[[providers]]\ntype = "openia"\n')
    assert error_of(file).startswith(f'"providers[0].type" in {file}: invalid value "openia"')


def test_provider_without_type_is_rejected(toml_file: Callable[[str], Path]) -> None:
    file = toml_file('[[providers]]\nname = "x"\n')
    assert error_of(file) == f'"providers[0]" in {file}: missing required key "type"'


def test_unknown_provider_key_suggests_the_closest(toml_file: Callable[[str], Path]) -> None:
    file = toml_file('[[providers]]\ntype = "openai"\nbase_ur = "https://x.example"\n')
    assert error_of(file) == (
        f'unknown key "providers[0].base_ur" in {file} (did you mean "providers[0].base_url"?)'
    )


def test_provider_with_both_key_env_and_key_file_is_rejected(
    toml_file: Callable[[str], Path],
) -> None:
    file = toml_file('[[providers]]\ntype = "openai"\nkey_env = "K"\nkey_file = "/k"\n')
    assert error_of(file) == f'"providers[0]" in {file}: set key_env or key_file, not both'


def test_duplicate_provider_names_in_toml_are_rejected(toml_file: Callable[[str], Path]) -> None:
    file = toml_file('[[providers]]\ntype = "openai"\n[[providers]]\ntype = "openai"\n')
    assert error_of(file).startswith(
        f'duplicate provider name "openai" (providers[0] in {file} and providers[1] in {file})'
    )


def test_duplicate_provider_names_across_toml_and_env_are_rejected(
    toml_file: Callable[[str], Path],
) -> None:
    file = toml_file('[[providers]]\ntype = "anthropic"\nname = "main"\n')
    env = {"CODER_AI_GATEWAY_PROVIDER_0_TYPE": "openai", "CODER_AI_GATEWAY_PROVIDER_0_NAME": "main"}
    assert error_of(file, env=env).startswith(
        f'duplicate provider name "main" (providers[0] in {file} and CODER_AI_GATEWAY_PROVIDER_0_*)'
    )


def test_mixing_seed_variable_prefixes_is_rejected() -> None:
    env = {"CODER_AI_GATEWAY_PROVIDER_0_TYPE": "openai", "CODER_AIBRIDGE_PROVIDER_1_TYPE": "openai"}
    assert error_of(env=env) == (
        "cannot mix CODER_AIBRIDGE_PROVIDER_* and CODER_AI_GATEWAY_PROVIDER_* environment"
        " variables, please consolidate onto CODER_AI_GATEWAY_PROVIDER_*"
    )


def test_gap_in_seed_indexes_is_rejected() -> None:
    env = {
        "CODER_AI_GATEWAY_PROVIDER_0_TYPE": "openai",
        "CODER_AI_GATEWAY_PROVIDER_2_TYPE": "vercel",
    }
    assert error_of(env=env).startswith("provider num 1 skipped")


def test_seed_indexes_must_start_at_zero() -> None:
    assert error_of(env={"CODER_AI_GATEWAY_PROVIDER_1_TYPE": "openai"}).startswith(
        "provider num 0 skipped"
    )


def test_seed_without_type_is_rejected() -> None:
    env = {"CODER_AI_GATEWAY_PROVIDER_0_KEY": "sk-x"}
    assert error_of(env=env) == "CODER_AI_GATEWAY_PROVIDER_0_TYPE is required"


def test_bedrock_seed_variables_give_settings_and_make_an_anthropic_seed_bedrock() -> None:
    prefix = "CODER_AI_GATEWAY_PROVIDER_0_"
    env = {f"{prefix}TYPE": "anthropic", f"{prefix}BEDROCK_REGION": "eu-west-1",
           f"{prefix}BEDROCK_MODEL": "eu.anthropic.claude-sonnet-4-5-v1:0",
           f"{prefix}BEDROCK_ACCESS_KEYS": "AKIA0000000000000001",
           f"{prefix}BEDROCK_ACCESS_KEY_SECRET": "aws-secret",
           f"{prefix}BEDROCK_BASE_URL": "https://vpce.example.com"}  # fmt: skip
    (seed,) = load(None, env, None).providers
    assert (seed.type, seed.name, seed.base_url) == (
        "bedrock",
        "bedrock",
        "https://vpce.example.com",
    )
    assert seed.settings == {"region": "eu-west-1", "model": "eu.anthropic.claude-sonnet-4-5-v1:0"}
    assert seed.secret_settings == {"access_key": "AKIA0000000000000001",
                                    "access_key_secret": "aws-secret"}  # fmt: skip
    assert "aws-secret" not in repr(seed)


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"TYPE": "openai"}, "BEDROCK_* variables need CODER_AI_GATEWAY_PROVIDER_0_TYPE=bedrock"),
        ({"TYPE": "bedrock", "BASE_URL": "https://a.example"}, "not both"),
        ({"TYPE": "bedrock", "BEDROCK_ACCESS_KEYS": "AKIA2"}, "gives access_key already"),
    ],
)
def test_bedrock_seed_variables_that_contradict_each_other_are_refused(
    extra: dict[str, str], error: str
) -> None:
    prefix = "CODER_AI_GATEWAY_PROVIDER_0_"
    env = {f"{prefix}BEDROCK_ACCESS_KEY": "AKIA1", f"{prefix}BEDROCK_BASE_URL": "https://b.example"}
    env.update({prefix + k: v for k, v in extra.items()})
    assert error in error_of(env=env)


def test_unknown_seed_variable_suffix_is_rejected() -> None:
    env = {"CODER_AI_GATEWAY_PROVIDER_0_TYPE": "openai", "CODER_AI_GATEWAY_PROVIDER_0_MODEL": "x"}
    assert error_of(env=env).startswith(
        "unknown provider seed variable CODER_AI_GATEWAY_PROVIDER_0_MODEL"
    )


# ------------------------------------------------------------------------------------ flags

EXPECTED_FLAGS = {
    "--http-address", "--access-url", "--state-dir", "--shutdown-grace", "--tls-cert-file",
    "--tls-key-file",
    "--secrets-key-file", "--database-url", "--ai-gateway-enabled", "--ai-gateway-dump-dir",
    "--ai-gateway-recording",
    "--ai-gateway-retention", "--ai-gateway-structured-logging", "--ai-gateway-allow-byok",
    "--ai-gateway-max-body-size", "--ai-gateway-max-concurrency", "--ai-gateway-rate-limit",
    "--ai-gateway-auth-failure-limit",
    "--ai-gateway-send-actor-headers", "--prometheus-enabled", "--prometheus-address",
    "--log-human", "--log-json", "--log-level",
    "--trace", "--trace-logs", "--trace-otlp-endpoint", "--trace-file",
    "--proxy-listen-address", "--proxy-target",
}  # fmt: skip


def test_flag_table_has_the_documented_flags() -> None:
    assert set(FLAG_FOR_KEY.values()) == EXPECTED_FLAGS
    assert FLAG_FOR_KEY["ai_gateway.api_dump_dir"] == "--ai-gateway-dump-dir"


def test_parsed_flags_come_back_as_dotted_keys_and_unset_ones_are_left_out() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name")  # options of the command itself do not clash
    add_config_flags(parser)
    ns = parser.parse_args(
        ["--http-address", "127.0.0.1:0", "--ai-gateway-dump-dir", "/d", "--name", "x"]
    )
    flags = flags_from_args(ns)
    assert flags == {"server.http_address": "127.0.0.1:0", "ai_gateway.api_dump_dir": "/d"}
    assert ns.cfg__server__http_address == "127.0.0.1:0"
    assert load(flags=flags).ai_gateway.api_dump_dir == "/d"


def test_every_flag_round_trips_through_argparse() -> None:
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    argv = [part for flag in FLAG_FOR_KEY.values() for part in (flag, "v")]
    assert flags_from_args(parser.parse_args(argv)) == dict.fromkeys(FLAG_FOR_KEY, "v")


# ------------------------------------------------------------------------------ example file


def test_example_file_loads_and_equals_the_defaults() -> None:
    example = load(EXAMPLE)
    assert example.source == str(EXAMPLE)
    assert dataclasses.replace(example, source="") == load()


def _flatten(table: Mapping[str, Any], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for name, value in table.items():
        path = f"{prefix}{name}"
        table = isinstance(value, dict) and path not in {key.path for key in KEYS}
        paths |= _flatten(value, path + ".") if table else {path}
    return paths


def test_example_file_documents_every_key() -> None:
    documented = _flatten(tomllib.loads(EXAMPLE.read_text(encoding="utf-8")))
    assert documented == {key.path for key in KEYS}


def test_every_key_in_the_example_file_has_a_comment_line_above_it() -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if re.match(r"\w+ = ", line):  # a key
            above_ok = lines[number - 1].startswith("# ")
        elif re.match(r"# \w+ = ", line):  # a key of the commented-out [[providers]] example
            above_ok = lines[number - 1].startswith("# # ")
        else:
            continue
        assert above_ok, f"line {number + 1} ({line!r}) has no comment line above it"


def test_example_providers_block_documents_every_provider_key_and_loads(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    block = text[text.index("# [[providers]]") :].split("\n\n")[0]
    uncommented = "\n".join(line.removeprefix("# ") for line in block.splitlines())
    tables = tomllib.loads(uncommented)["providers"]
    assert set(tables[0]) == set(PROVIDER_KEYS)
    file = tmp_path / "providers.toml"
    file.write_text(uncommented, encoding="utf-8")
    (seed,) = load(file).providers
    assert (seed.type, seed.key_env) == ("openai", "OPENAI_API_KEY")


def test_every_key_has_its_own_environment_name() -> None:
    assert len({key.env for key in KEYS}) == len(KEYS)


def test_empty_state_dir_is_rejected() -> None:
    assert error_of(env={"AIBRIDGED_SERVER_STATE_DIR": ""}) == (
        "AIBRIDGED_SERVER_STATE_DIR: must not be empty"
    )


@pytest.mark.parametrize(
    ("argv", "spelled"),
    [
        (["--trace"], ["--trace=true"]),
        (["--trace", "false"], ["--trace", "false"]),
        (["--trace", "create", "bob"], ["--trace=true", "create", "bob"]),
        (["--trace=off", "x"], ["--trace=off", "x"]),
        (["--log-level", "info", "--trace-logs"], ["--log-level", "info", "--trace-logs=true"]),
    ],
)
def test_a_bare_boolean_flag_never_takes_the_next_argument_as_its_value(
    argv: list[str], spelled: list[str]
) -> None:
    assert spell_out_bool_flags(argv) == spelled
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    parser.add_argument("rest", nargs="*")
    ns = parser.parse_args(spelled)
    assert ns.rest == [a for a in argv if not a.startswith("--") and a not in ("false", "info")]


# ---------------------------------------------------------------------------------- [proxy]


def test_proxy_lists_and_host_map_read_from_toml_and_from_the_environment(
    toml_file: Callable[[str], Path],
) -> None:
    file = toml_file(
        '[proxy]\nallowed_private_cidrs = ["10.1.2.3/8", "fd00::/8"]\nallowed_ports = [443]\n'
        'intercept = { "API.Anthropic.com" = "anthropic" }\n'
    )
    proxy = load(file).proxy
    assert proxy.allowed_private_cidrs == ("10.0.0.0/8", "fd00::/8")
    assert proxy.allowed_ports == (443,)
    assert dict(proxy.intercept) == {"api.anthropic.com": "anthropic"}
    env = load(env={
        "CODER_AI_GATEWAY_PROXY_ALLOWED_PRIVATE_CIDRS": "127.0.0.0/8, 192.168.0.0/16",
        "AIBRIDGED_PROXY_ALLOWED_PORTS": "80,8443",
        "AIBRIDGED_PROXY_INTERCEPT": "api.openai.com=openai",
    }).proxy  # fmt: skip
    assert env.allowed_private_cidrs == ("127.0.0.0/8", "192.168.0.0/16")
    assert env.allowed_ports == (80, 8443)
    assert dict(env.intercept) == {"api.openai.com": "openai"}


def test_proxy_bad_values_name_the_key_and_never_quote_an_upstream_password(
    toml_file: Callable[[str], Path],
) -> None:
    assert error_of(env={"AIBRIDGED_PROXY_ALLOWED_PRIVATE_CIDRS": "10.0.0.0/33"}) == (
        'AIBRIDGED_PROXY_ALLOWED_PRIVATE_CIDRS: invalid CIDR "10.0.0.0/33"'
        " (expected e.g. 10.0.0.0/8 or fd00::/8)"
    )
    assert error_of(env={"AIBRIDGED_PROXY_ALLOWED_PORTS": ""}) == (
        "AIBRIDGED_PROXY_ALLOWED_PORTS: must list at least one port"
    )
    assert "70000" in error_of(toml_file("[proxy]\nallowed_ports = [70000]\n"))
    message = error_of(env={"AIBRIDGED_PROXY_UPSTREAM": "ftp://u:hunter2@corp:3128"})
    assert "hunter2" not in message and message.startswith("AIBRIDGED_PROXY_UPSTREAM:")
    assert load(env={"AIBRIDGED_PROXY_UPSTREAM": "http://u:p@corp:3128"}).proxy.upstream
    assert error_of(flags={"proxy.ca_cert_file": "/x/ca.pem"}) == (
        "proxy.ca_cert_file is set but proxy.ca_key_file is not: set both or neither"
    )
    assert error_of(env={"AIBRIDGED_PROXY_TLS_LISTEN_ADDRESS": "127.0.0.1:8889"}).startswith(
        "proxy.tls_listen_address is set but proxy.tls_cert_file"
    )
