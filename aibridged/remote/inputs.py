"""Secrets and values the remote commands read: API keys, settings, the login token.

Keys and tokens never come from a plain argument: argv lands in shell history and in `ps` for
every user of the machine. They come from the environment, a file, or stdin.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aibridged.errors import InvalidInput
from aibridged.providers.types import TYPES

SECRET_SETTINGS = frozenset(s.name for t in TYPES.values() for s in t.settings if s.secret)


@dataclass(frozen=True, slots=True)
class KeySource:
    kind: str  # "env", "file" or "stdin"
    value: str  # the variable's name, the file's path, "" for stdin


class KeySourceAction(argparse.Action):
    """Appends every --key-env/--key-file/--key-stdin to one list, so keys keep the order in
    which they were given across the three options."""

    def __init__(self, option_strings: Sequence[str], dest: str, kind: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.kind = kind

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        value = values if isinstance(values, str) else ""
        # A new list each time: argparse shares the default between parses.
        setattr(namespace, self.dest, [*getattr(namespace, self.dest), KeySource(self.kind, value)])


def read_keys(sources: Sequence[KeySource], env: Mapping[str, str]) -> list[str]:
    """The plaintext keys, in the order their sources were given."""
    if sum(s.kind == "stdin" for s in sources) > 1:
        raise InvalidInput("--key-stdin can be given once")
    keys: list[str] = []
    for source in sources:
        if source.kind == "env":
            keys.append(_key_from_env(source.value, env))
        elif source.kind == "file":
            keys.extend(_keys_from_file(Path(source.value)))
        else:
            keys.extend(_keys_from_stdin())
    return keys


def _key_from_env(name: str, env: Mapping[str, str]) -> str:
    key = env.get(name, "").strip()
    if not key:
        raise InvalidInput(f"--key-env {name}: the environment variable is not set or empty")
    return key


def _keys_from_file(path: Path) -> list[str]:
    try:
        keys = path.read_text().split()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not text"
        raise InvalidInput(f"--key-file {path}: cannot read it ({why})") from exc
    if not keys:
        raise InvalidInput(f"--key-file {path}: the file holds no key")
    return keys


def _keys_from_stdin() -> list[str]:
    if sys.stdin.isatty():
        # On a terminal, ask without echo: the keys should not stay on the screen.
        text = getpass.getpass("API keys (separated by spaces): ")
    else:
        text = sys.stdin.read()
    keys = text.split()
    if not keys:
        raise InvalidInput("--key-stdin: no key on stdin")
    return keys


def read_token(token_file: Path | None, url: str) -> str:
    """The login token from --token-file, else stdin (asked for without echo on a terminal)."""
    if token_file is not None:
        try:
            return token_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not text"
            raise InvalidInput(f"--token-file {token_file}: cannot read it ({why})") from exc
    if sys.stdin.isatty():
        return getpass.getpass(f"token for {url}: ").strip()
    return sys.stdin.read().strip()


def parse_settings(
    pairs: Sequence[str],
    unset: Sequence[str] = (),
    *,
    from_env: Sequence[str] = (),
    from_files: Sequence[str] = (),
) -> dict[str, Any]:
    """Settings as an object of strings (settings are strings; a value is never reinterpreted,
    so `model=null` is the model "null"). Secret settings (Bedrock's AWS keys) come from an
    environment variable (`KEY=VAR`) or a file (`KEY=PATH`), never from the command line. Each
    unset key maps to None, which the API takes as "remove"."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, raw = _pair("--setting", pair, "KEY=VALUE")
        if key in SECRET_SETTINGS:
            raise InvalidInput(
                f"setting {key!r} is secret: use --setting-env {key}=VAR or"
                f" --setting-file {key}=PATH (arguments land in shell history and ps)"
            )
        settings[key] = raw
    for pair in from_env:
        key, variable = _pair("--setting-env", pair, "KEY=VAR")
        value = os.environ.get(variable, "").strip()
        if not value:
            raise InvalidInput(f"--setting-env {key}: environment variable {variable} is not set")
        settings[key] = value
    for pair in from_files:
        key, name = _pair("--setting-file", pair, "KEY=PATH")
        try:
            settings[key] = Path(name).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"--setting-file {key}: cannot read {name}") from exc
    for key in unset:
        if key in settings:
            raise InvalidInput(f"setting {key!r} is both set and unset")
        settings[key] = None
    return settings


def _pair(option: str, pair: str, form: str) -> tuple[str, str]:
    key, equals, value = pair.partition("=")
    if not equals or not key:
        raise InvalidInput(f"{option} takes {form}")  # not echoed: it may hold a secret
    return key, value


def confirm(prompt: str, expected: str) -> bool:
    """True when the user types `expected` on the terminal. The prompt goes to stderr so stdout
    holds only results."""
    print(prompt, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip() == expected
