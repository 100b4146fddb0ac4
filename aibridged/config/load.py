"""Loading the configuration: TOML file, environment, flags, key by key, into a `Config`.

Precedence, key by key: command-line flag > environment variable > TOML file > default. Every
error is a `ConfigError` naming where the value came from: `"server.http_address" in
/etc/aibridged/aibridged.toml`, `AIBRIDGED_SERVER_HTTP_ADDRESS` or `--http-address`.
"""

from __future__ import annotations

import argparse
import difflib
import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aibridged.config.keys import _KEY_BY_PATH, _OTHER_AIBRIDGED_VARS, FLAG_FOR_KEY, KEYS
from aibridged.config.seeds import SeedValues, env_seeds, toml_seeds
from aibridged.config.tree import SECTIONS, Config, ProviderSeed
from aibridged.config.values import BOOL, is_bool_word, located, toml_type_name, unknown
from aibridged.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/aibridged/aibridged.toml")


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
    pairs = (
        ("server", "tls_cert_file", "tls_key_file"),
        ("proxy", "tls_cert_file", "tls_key_file"),
        ("proxy", "ca_cert_file", "ca_key_file"),
    )
    for section, cert_name, key_name in pairs:
        cert, key = values[f"{section}.{cert_name}"], values[f"{section}.{key_name}"]
        if (cert is None) != (key is None):
            given, missing = (cert_name, key_name) if key is None else (key_name, cert_name)
            raise ConfigError(
                f"{section}.{given} is set but {section}.{missing} is not: set both or neither"
            )
    if values["proxy.tls_listen_address"] and values["proxy.tls_cert_file"] is None:
        raise ConfigError(
            "proxy.tls_listen_address is set but proxy.tls_cert_file and proxy.tls_key_file"
            " are not: the TLS listener needs its certificate"
        )


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


def spell_out_bool_flags(argv: Sequence[str]) -> list[str]:
    """`argv` with each bare boolean flag written `--flag=true` unless a boolean word follows it,
    so `aibridged users --trace create` keeps `create` as the action instead of reading it as
    the flag's value (and failing on it)."""
    flags = {key.flag for key in KEYS if key.flag and key.kind is BOOL}
    out: list[str] = []
    for index, arg in enumerate(argv):
        following = argv[index + 1] if index + 1 < len(argv) else None
        if arg in flags and (following is None or not is_bool_word(following)):
            arg = arg + "=true"
        out.append(arg)
    return out


def add_config_flags(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """Add one `--option VALUE` per flagged key; read them back with `flags_from_args`.

    `suppress` leaves a flag that is not given out of the namespace: for a subcommand's own
    copy of the flags, which must not reset what was given before the subcommand's name."""
    group = parser.add_argument_group("configuration (overrides the file and the environment)")
    for key in KEYS:
        if key.flag:
            # A boolean flag alone means true (`--trace`); `--trace false` works too.
            switch: dict[str, Any] = {"nargs": "?", "const": "true"} if key.kind is BOOL else {}
            group.add_argument(
                key.flag,
                dest=_dest(key.path),
                metavar=key.kind.metavar,
                default=argparse.SUPPRESS if suppress else None,
                help=f"{key.path} (env {key.env})",
                **switch,
            )


def flags_from_args(ns: argparse.Namespace) -> dict[str, str]:
    """The flags that were given, as {dotted key path: text} for `load_config(flags=...)`."""
    given = {path: getattr(ns, _dest(path), None) for path in FLAG_FOR_KEY}
    return {path: str(value) for path, value in given.items() if value is not None}
