"""Seeding on first boot: `[[providers]]`, `CODER_AI_GATEWAY_PROVIDER_<N>_*` and `--demo` put
providers into the database, which is what the gateway serves from then on.

Under an advisory lock (replicas starting together seed one after the other), for each seed:
- no provider of that name: inserted;
- a live one with the same canonical hash (type, base URL, keys, Bedrock credentials): left alone;
- a live one that differs (edited through the API, or the configuration changed): startup stops
  and says to remove the seed; the database copy is never overwritten;
- a deleted one: skipped, deletion is sticky.
Demo providers are the exception to the third rule: a demo provider edited through the API is
left as it is, since `--demo` cannot be told to drop its seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from aibridged.config import ProviderSeed
from aibridged.errors import SecretsError, StartupError, UnknownSecretsKey
from aibridged.providers.pool import RESERVED_NAMES
from aibridged.providers.sealed import (
    open_keys,
    open_secret_settings,
    seal_key,
    seal_secret_settings,
)
from aibridged.providers.types import MAX_KEYS, TYPES, Keys
from aibridged.secretbox import SecretBox
from aibridged.store.db import Runner
from aibridged.store.providers import ProviderWrite, StoredProvider, seed_providers

log = structlog.get_logger("aibridged.providers")

DEMO_KEY = "demo-key"


@dataclass(frozen=True, slots=True)
class Seed:
    type: str
    name: str
    display_name: str
    base_url: str
    keys: tuple[str, ...] = field(repr=False)
    enabled: bool = True
    origin: str = ""  # where it was configured, for messages
    source: str = "seed"
    settings: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


def seeds_from_config(
    configured: Iterable[ProviderSeed], environ: Mapping[str, str] | None = None
) -> list[Seed]:
    """The seeds of the configuration, their keys read from the variables and files they name
    (a seed whose variable or file gives no key is skipped, with a warning)."""
    env = os.environ if environ is None else environ
    seeds: list[Seed] = []
    names: set[str] = set()
    for item in configured:
        if item.name in names:
            raise StartupError(f'two provider seeds are named "{item.name}": names are unique')
        names.add(item.name)
        keys = _seed_keys(item, env)
        if keys is None:
            continue  # its key is missing: inserted once it is there, at a later start
        if keys and TYPES[item.type].keys is Keys.NONE:
            log.warning("provider.seed_keys_ignored", provider=item.name, type=item.type)
            keys = []
        _check_seed(item.name, keys)
        _check_settings(item)
        seeds.append(
            Seed(
                type=item.type,
                name=item.name,
                display_name=item.display_name or item.name,
                base_url=item.base_url.rstrip("/"),
                keys=tuple(dict.fromkeys(keys)),
                enabled=item.enabled,
                origin=f'provider "{item.name}" in the configuration',
                settings=dict(item.settings),
                secrets=dict(item.secret_settings),
            )
        )
    return seeds


def _check_seed(name: str, keys: list[str]) -> None:
    if name in RESERVED_NAMES:
        raise StartupError(f'provider name "{name}" is reserved for the management API')
    if len(dict.fromkeys(keys)) > MAX_KEYS:
        raise StartupError(f'provider "{name}": at most {MAX_KEYS} keys')


def _check_settings(item: ProviderSeed) -> None:
    """The seed's settings as the providers API would check them (choices, patterns)."""
    ptype = TYPES[item.type]
    for name, value in {**item.settings, **item.secret_settings}.items():
        spec = ptype.setting(name)
        if spec is None or (spec.secret != (name in item.secret_settings)):
            raise StartupError(f'provider "{item.name}": type {item.type} has no setting {name}')
        if spec.choices and value not in spec.choices:
            raise StartupError(f'provider "{item.name}": {name} must be one of {spec.choices}')
        if spec.pattern and re.fullmatch(spec.pattern, value) is None:
            raise StartupError(f'provider "{item.name}": {name} {value!r} is not valid')


def _skipped(item: ProviderSeed, reason: str) -> None:
    log.warning("provider.seed_skipped", provider=item.name, reason=reason + "; set it and restart")


def _seed_keys(item: ProviderSeed, env: Mapping[str, str]) -> list[str] | None:
    """The seed's keys, or None when the variable or file it names gives none: such a seed is
    skipped with a warning rather than inserted without its key (which would then differ from
    the seed once the key is there, and stop the next start)."""
    keys = list(item.keys)
    if item.key_env:
        found = env.get(item.key_env, "").split()  # whitespace-separated, as in key_file
        if not found:
            _skipped(item, f"environment variable {item.key_env} (key_env) is not set")
            return None
        keys += found
    if item.key_file:
        try:
            found = item.key_file.read_text().split()
        except OSError as exc:
            found, why = [], exc.strerror
        else:
            why = "it holds no key"
        if not found:
            _skipped(item, f"cannot read a key from {item.key_file} (key_file): {why}")
            return None
        keys += found
    return keys


def demo_seeds() -> list[Seed]:
    """`serve --demo`'s providers; their base URL is the demo upstream of each start."""
    return [
        Seed(
            "openai-compat",
            "demo-openai",
            "Demo (OpenAI format)",
            "",
            (DEMO_KEY,),
            origin="the --demo provider demo-openai",
            source="demo",
        ),
        Seed(
            "anthropic",
            "demo-anthropic",
            "Demo (Anthropic format)",
            "",
            (DEMO_KEY,),
            origin="the --demo provider demo-anthropic",
            source="demo",
        ),
    ]


def canonical_hash(
    type_name: str,
    base_url: str,
    keys: Iterable[str],
    secrets: Mapping[str, str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> str:
    """What decides whether a seed and a stored provider are the same (display names, models
    and the enabled flag are not part of it, as in Coder's AI Gateway; Bedrock's region and
    static keys are)."""
    secrets = secrets or {}
    document = {
        "type": type_name,
        "base_url": base_url.rstrip("/"),
        "keys": hashlib.sha256("\0".join(sorted(keys)).encode()).hexdigest(),
        "bedrock": [secrets.get("access_key", ""), secrets.get("access_key_secret", "")],
        "bedrock_region": str((settings or {}).get("region", "")),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


async def seed_database(runner: Runner, box: SecretBox, seeds: list[Seed]) -> list[str]:
    """Insert the seeds that are new; returns their names. StartupError on a drifted seed."""

    def decide(existing: list[StoredProvider]) -> list[ProviderWrite]:
        return [w for seed in seeds if (w := _decide(seed, _match(seed, existing), box))]

    if not seeds:
        return []
    inserted = await seed_providers(runner, decide)
    for stored in inserted:
        log.info("provider.seeded", provider=stored.name, type=stored.type, source=stored.source)
    return [stored.name for stored in inserted]


def _match(seed: Seed, existing: list[StoredProvider]) -> StoredProvider | None:
    """The provider a seed stands for: the one seeded under its name (even if renamed since),
    else the one of that name; live ones first (`existing` is ordered so)."""
    for provider in existing:
        if provider.seed_name == seed.name:
            return provider
    return next((p for p in existing if p.name == seed.name), None)


def _decide(seed: Seed, stored: StoredProvider | None, box: SecretBox) -> ProviderWrite | None:
    if stored is None:
        return _write(seed, box)
    if stored.deleted:
        log.info("provider.seed_skipped", provider=seed.name, reason="deleted in the database")
        return None
    wanted = canonical_hash(seed.type, seed.base_url, seed.keys, seed.secrets, seed.settings)
    try:
        keys, secrets = open_keys(box, stored), open_secret_settings(box, stored)
    except UnknownSecretsKey:
        raise
    except SecretsError as exc:  # served as status "error" anyway; it cannot be compared
        log.warning("provider.seed_skipped", provider=seed.name,
                    reason=f"its stored secrets cannot be opened: {exc}")  # fmt: skip
        return None
    have = canonical_hash(stored.type, stored.base_url, keys, secrets, stored.settings)
    if wanted == have:
        return None
    if seed.source == "demo":
        log.info("provider.seed_skipped", provider=seed.name, reason="changed in the database")
        return None
    raise StartupError(
        f'AI provider "{seed.name}" already exists in the database and differs from'
        f" {seed.origin} (it was changed through the API, or the configuration changed)."
        " The database copy is what is served: remove this seed from the configuration"
        " (or make it match) and start again"
    )


def _write(seed: Seed, box: SecretBox) -> ProviderWrite:
    provider_id = uuid.uuid4()
    return ProviderWrite(
        id=provider_id,
        type=seed.type,
        name=seed.name,
        display_name=seed.display_name,
        enabled=seed.enabled,
        base_url=seed.base_url,
        settings=dict(seed.settings),
        secret_settings=seal_secret_settings(box, provider_id, seed.secrets),
        keys=tuple(seal_key(box, key) for key in seed.keys),
        source=seed.source,
        seed_name=seed.name,
    )
