"""Building the provider set from the database's rows: what the reload loop swaps in.

A row that cannot be served (a secret that was altered, a demo provider outside `serve --demo`, a
missing key) becomes a provider in status "error", never a failed build: one bad row must not
keep every other change from applying. The exception is a secret sealed under a key this
replica's key ring does not hold (a rotation done elsewhere): the build fails and the replica
keeps serving its previous set until it has the new key file.
"""

from __future__ import annotations

from aibridged.errors import SecretsError, UnknownSecretsKey
from aibridged.providers.pool import Provider, ProviderSet, build_provider, provider_set
from aibridged.providers.sealed import open_keys, open_secret_settings
from aibridged.providers.types import TYPES
from aibridged.secretbox import SecretBox
from aibridged.store.db import Runner
from aibridged.store.providers import StoredProvider, list_providers


def provider_from_stored(
    stored: StoredProvider, box: SecretBox, demo_url: str | None = None
) -> Provider:
    problem = ""
    try:
        keys, secrets = open_keys(box, stored), open_secret_settings(box, stored)
    except UnknownSecretsKey:
        raise  # another key ring sealed it: fail the whole reload, keep serving the last set
    except (SecretsError, UnicodeDecodeError) as exc:
        keys, secrets, problem = (), {}, f"its secrets cannot be opened: {exc}"
    base_url = stored.base_url
    if stored.source == "demo" and not base_url:
        # The demo upstream listens on a new port at every start: its providers point at it.
        if demo_url is None:
            problem = problem or "a demo provider, served only by `aibridged serve --demo`"
        else:
            base_url = demo_url + TYPES[stored.type].family.prefix_in_base_url
    return build_provider(
        id=stored.id,
        name=stored.name,
        type_name=stored.type,
        base_url=base_url,
        keys=keys,
        enabled=stored.enabled,
        problem=problem,
        display_name=stored.display_name,
        settings=stored.settings,
        secrets=secrets,
        source=stored.source,
    )


def providers_from_stored(
    rows: list[StoredProvider], box: SecretBox, demo_url: str | None, version: int
) -> ProviderSet:
    return provider_set((provider_from_stored(row, box, demo_url) for row in rows), version)


async def load_provider_set(
    runner: Runner, box: SecretBox, demo_url: str | None, version: int
) -> ProviderSet:
    return providers_from_stored(await list_providers(runner), box, demo_url, version)
