"""Building provider sets from the database (what each reload swaps in)."""

from __future__ import annotations

import pytest

from aibridged.errors import UnknownSecretsKey
from aibridged.providers.load import load_provider_set
from aibridged.providers.seeding import demo_seeds, seed_database
from aibridged.providers.spec import changed_provider, new_provider
from aibridged.secretbox import SecretBox
from aibridged.store import Store
from aibridged.store.providers import insert_provider, update_provider

BOX = SecretBox.generate()


def _body(name: str) -> dict[str, object]:
    return {"type": "openai", "name": name, "api_keys": [f"sk-{name}-0123456789"]}


async def test_an_unchanged_provider_keeps_its_id_and_revision_across_reloads(
    store: Store,
) -> None:
    await insert_provider(store, new_provider(_body("steady"), BOX))
    await insert_provider(store, new_provider(_body("moving"), BOX))
    first = await load_provider_set(store, BOX, None, 1)
    await update_provider(
        store, "moving", lambda current: changed_provider({"base_url": "https://x.example/v1"},
                                                          current, BOX)
    )  # fmt: skip
    second = await load_provider_set(store, BOX, None, 2)
    for name in ("steady", "moving"):
        assert first.get(name) is not second.get(name)  # a new snapshot, built whole
    steady = (first.get("steady"), second.get("steady"))
    moving = (first.get("moving"), second.get("moving"))
    assert steady[0] and steady[1] and moving[0] and moving[1]
    assert (steady[0].id, steady[0].revision) == (steady[1].id, steady[1].revision)
    assert moving[0].id == moving[1].id and moving[0].revision != moving[1].revision


async def test_demo_providers_are_served_only_with_the_demo_upstream(store: Store) -> None:
    await seed_database(store, BOX, demo_seeds())
    with_demo = await load_provider_set(store, BOX, "http://127.0.0.1:5555", 1)
    demo_openai = with_demo.get("demo-openai")
    assert demo_openai is not None and demo_openai.base_url == "http://127.0.0.1:5555/v1"
    without = await load_provider_set(store, BOX, None, 2)
    assert without.get("demo-openai") is None
    assert {p.status for p in without} == {"error"}
    assert all("--demo" in p.error for p in without)


async def test_an_altered_secret_puts_only_its_provider_in_error(store: Store) -> None:
    await insert_provider(store, new_provider(_body("good"), BOX))
    await insert_provider(store, new_provider(_body("bad"), BOX))
    await store.run(
        lambda conn: conn.execute(
            "UPDATE ai_provider_keys SET sealed_key = overlay(sealed_key placing '\\x00'::bytea"
            " from 30 for 1) WHERE provider_id = (SELECT id FROM ai_providers WHERE name = 'bad')"
        )
    )
    built = await load_provider_set(store, BOX, None, 1)
    assert built.get("good") is not None and built.get("bad") is None
    (bad,) = [p for p in built if p.name == "bad"]
    assert bad.status == "error" and "cannot be opened" in bad.error


async def test_a_secret_sealed_under_a_key_this_ring_lacks_fails_the_whole_build(
    store: Store,
) -> None:
    await insert_provider(store, new_provider(_body("elsewhere"), SecretBox.generate()))
    with pytest.raises(UnknownSecretsKey):
        await load_provider_set(store, BOX, None, 1)
