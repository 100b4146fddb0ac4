"""Seeding on first boot, on a real PostgreSQL: every case of the seeding rules."""

from __future__ import annotations

import pytest
import trio

from aibridged.config import ProviderSeed, load_config
from aibridged.errors import ConfigError, StartupError
from aibridged.providers.sealed import open_keys, open_secret_settings
from aibridged.providers.seeding import Seed, demo_seeds, seed_database, seeds_from_config
from aibridged.providers.spec import changed_provider
from aibridged.secretbox import SecretBox
from aibridged.store import Store
from aibridged.store.providers import delete_provider, list_providers, update_provider

BOX = SecretBox.generate()


def _seed(name: str = "openai", keys: tuple[str, ...] = ("sk-seed-0123456789",), **kw: str) -> Seed:
    return Seed(
        type=kw.get("type", "openai"),
        name=name,
        display_name=name,
        base_url=kw.get("base_url", ""),
        keys=keys,
        origin=f'provider "{name}" in the configuration',
    )


async def test_a_fresh_database_gets_every_seed(store: Store) -> None:
    inserted = await seed_database(store, BOX, [_seed("a"), _seed("b", type="anthropic")])
    rows = await list_providers(store)
    assert inserted == ["a", "b"] and [r.name for r in rows] == ["a", "b"]
    assert [r.source for r in rows] == ["seed", "seed"]
    assert open_keys(BOX, rows[0]) == ("sk-seed-0123456789",)
    assert b"sk-seed" not in rows[0].keys[0].sealed  # sealed at rest


async def test_an_identical_seed_is_left_alone(store: Store) -> None:
    await seed_database(store, BOX, [_seed()])
    before = await list_providers(store)
    # Display name and enabled are not part of the canonical hash: still the same provider.
    again = Seed("openai", "openai", "Another Name", "", ("sk-seed-0123456789",), enabled=False)
    assert await seed_database(store, BOX, [again]) == []
    assert await list_providers(store) == before


async def test_a_drifted_seed_stops_startup_naming_the_provider(store: Store) -> None:
    await seed_database(store, BOX, [_seed()])
    with pytest.raises(StartupError, match=r'"openai" already exists .* remove this seed'):
        await seed_database(store, BOX, [_seed(keys=("sk-other-0123456789",))])
    with pytest.raises(StartupError, match='"openai"'):
        await seed_database(store, BOX, [_seed(base_url="https://elsewhere.example/v1")])


async def test_a_provider_edited_through_the_api_is_never_overwritten(store: Store) -> None:
    await seed_database(store, BOX, [_seed()])
    await update_provider(
        store,
        "openai",
        lambda current: changed_provider({"api_keys": ["sk-rotated-0123456789"]}, current, BOX),
    )
    with pytest.raises(StartupError, match="changed through the API"):
        await seed_database(store, BOX, [_seed(), _seed("new-one")])
    (row,) = await list_providers(store)  # nothing of that seeding was applied
    assert open_keys(BOX, row) == ("sk-rotated-0123456789",)


async def test_a_deleted_provider_is_not_brought_back(store: Store) -> None:
    await seed_database(store, BOX, [_seed()])
    await delete_provider(store, "openai")
    assert await seed_database(store, BOX, [_seed()]) == []
    assert await list_providers(store) == []


async def test_demo_providers_changed_in_the_database_are_left_as_they_are(store: Store) -> None:
    await seed_database(store, BOX, demo_seeds())
    await update_provider(
        store,
        "demo-openai",
        lambda current: changed_provider(
            {"base_url": "http://127.0.0.1:9/v1", "api_keys": ["sk-x-0123"]}, current, BOX
        ),
    )
    assert await seed_database(store, BOX, demo_seeds()) == []  # no StartupError
    names = {r.name: r.base_url for r in await list_providers(store)}
    assert names == {"demo-anthropic": "", "demo-openai": "http://127.0.0.1:9/v1"}


async def test_replicas_seeding_at_once_insert_each_provider_once(store: Store) -> None:
    results: list[list[str]] = []

    async def seed() -> None:
        results.append(await seed_database(store, BOX, [_seed("a"), _seed("b")]))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(seed)
    assert sorted(results) == [[], [], [], ["a", "b"]]
    assert [r.name for r in await list_providers(store)] == ["a", "b"]


def test_seeds_resolve_keys_from_variables_and_files(tmp_path: object) -> None:
    from pathlib import Path

    key_file = Path(str(tmp_path)) / "k"
    key_file.write_text("sk-file-1\nsk-file-2\n")
    seeds = seeds_from_config(
        [
            ProviderSeed(type="openai", name="a", display_name="", key_env="K"),
            ProviderSeed(type="openai", name="b", display_name="B", key_file=key_file),
            ProviderSeed(type="openai", name="c", display_name="", key_env="UNSET"),
            ProviderSeed(
                type="openai", name="e", display_name="", key_file=key_file.with_name("x")
            ),
            ProviderSeed(type="copilot", name="d", display_name="", key_env="K"),
        ],
        {"K": "sk-env-1 sk-env-2"},
    )
    # c and e are skipped: inserted without their keys, they would differ from their seeds once
    # the keys are there, and stop that start.
    assert [(s.name, s.keys) for s in seeds] == [
        ("a", ("sk-env-1", "sk-env-2")),
        ("b", ("sk-file-1", "sk-file-2")),
        ("d", ()),  # copilot takes none: the caller's GitHub token is used
    ]
    assert [s.display_name for s in seeds] == ["a", "B", "d"]


def _env_config(env: dict[str, str]) -> list[ProviderSeed]:
    config = load_config(path=None, env=env, flags={}, search_default_path=False)
    return list(config.providers)


def test_indexed_variables_seed_with_either_prefix_but_not_both() -> None:
    coder = _env_config(
        {
            "CODER_AIBRIDGE_PROVIDER_0_TYPE": "anthropic",
            "CODER_AIBRIDGE_PROVIDER_0_KEY": "sk-ant-1",
            "CODER_AIBRIDGE_PROVIDER_1_TYPE": "openai",
            "CODER_AIBRIDGE_PROVIDER_1_NAME": "openai-prod",
            "CODER_AIBRIDGE_PROVIDER_1_KEYS": "sk-1,sk-2",
        }
    )
    assert [(s.name, s.keys) for s in seeds_from_config(coder, {})] == [
        ("anthropic", ("sk-ant-1",)),
        ("openai-prod", ("sk-1", "sk-2")),
    ]
    with pytest.raises(ConfigError, match="cannot mix"):
        _env_config(
            {
                "CODER_AIBRIDGE_PROVIDER_0_TYPE": "openai",
                "CODER_AI_GATEWAY_PROVIDER_1_TYPE": "openai",
            }
        )


def test_a_gap_in_the_indexes_stops_startup() -> None:
    with pytest.raises(ConfigError, match="provider num 1 skipped"):
        _env_config(
            {
                "CODER_AI_GATEWAY_PROVIDER_0_TYPE": "openai",
                "CODER_AI_GATEWAY_PROVIDER_2_TYPE": "anthropic",
            }
        )


async def test_a_renamed_seeded_provider_is_not_seeded_again(store: Store) -> None:
    await seed_database(store, BOX, [_seed()])
    await update_provider(
        store, "openai", lambda current: changed_provider({"name": "openai-main"}, current, BOX)
    )
    assert await seed_database(store, BOX, [_seed()]) == []
    assert [r.name for r in await list_providers(store)] == ["openai-main"]


async def test_a_seeded_provider_whose_secret_was_altered_does_not_stop_startup(
    store: Store,
) -> None:
    await seed_database(store, BOX, [_seed("a"), _seed("b")])
    await store.run(
        lambda conn: conn.execute(
            "UPDATE ai_provider_keys SET sealed_key = overlay(sealed_key placing '\\x00'::bytea"
            " from 30 for 1) WHERE provider_id = (SELECT id FROM ai_providers WHERE name = 'a')"
        )
    )
    assert await seed_database(store, BOX, [_seed("a"), _seed("b"), _seed("c")]) == ["c"]


def _bedrock_seed(**settings: str) -> list[Seed]:
    env = {"CODER_AI_GATEWAY_PROVIDER_0_TYPE": "bedrock",
           "CODER_AI_GATEWAY_PROVIDER_0_BEDROCK_ACCESS_KEY": "AKIA0000000000000001",
           "CODER_AI_GATEWAY_PROVIDER_0_BEDROCK_ACCESS_KEY_SECRET": "aws-secret-one"}  # fmt: skip
    env.update({f"CODER_AI_GATEWAY_PROVIDER_0_BEDROCK_{k.upper()}": v for k, v in settings.items()})
    return seeds_from_config(_env_config(env), {})


async def test_bedrock_seeds_store_their_settings_and_seal_their_keys(store: Store) -> None:
    assert await seed_database(store, BOX, _bedrock_seed(region="us-east-1")) == ["bedrock"]
    (row,) = await list_providers(store)
    assert (row.type, row.settings) == ("bedrock", {"region": "us-east-1"})
    assert row.secret_settings is not None and b"aws-secret-one" not in row.secret_settings
    assert open_secret_settings(BOX, row) == {"access_key": "AKIA0000000000000001",
                                              "access_key_secret": "aws-secret-one"}  # fmt: skip
    # Models are not part of the canonical hash; the region and the keys are.
    assert await seed_database(store, BOX, _bedrock_seed(region="us-east-1", model="m")) == []
    with pytest.raises(StartupError, match='"bedrock" already exists'):
        await seed_database(store, BOX, _bedrock_seed(region="us-west-2"))
    with pytest.raises(StartupError, match='"bedrock" already exists'):
        changed = _bedrock_seed(region="us-east-1", access_key_secret="aws-secret-two")
        await seed_database(store, BOX, changed)


def test_a_bedrock_seed_with_a_bad_region_stops_startup() -> None:
    with pytest.raises(StartupError, match="region 'mars' is not valid"):
        _bedrock_seed(region="mars")
