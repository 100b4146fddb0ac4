"""The secrets key against a real database: a wrong key stops startup clearly; rotation and
pruning through the CLI keep every stored secret readable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from aibridged.cli import main
from aibridged.errors import StartupError
from aibridged.providers.sealed import open_keys
from aibridged.providers.spec import new_provider
from aibridged.secretbox import SecretBox, load_secret_box, write_key_file
from aibridged.startup import check_secret_box
from aibridged.store import Store, open_store
from aibridged.store.providers import all_sealed, insert_provider, list_providers

KEY = "sk-sealed-at-rest-0123456789"


async def test_a_key_file_that_is_not_the_databases_stops_startup(
    store: Store, tmp_path: Path
) -> None:
    await check_secret_box(store, SecretBox.generate(), tmp_path / "first.key")  # registers
    with pytest.raises(StartupError, match="does not open this database's secrets"):
        await check_secret_box(store, SecretBox.generate(), tmp_path / "other.key")


def _config(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "aibridged.toml"
    path.write_text(
        f'[server]\nstate_dir = "{tmp_path}"\nhttp_address = "127.0.0.1:0"\n'
        f'[database]\nurl = "{database_url}"\n[prometheus]\nenabled = false\n'
    )
    return path


def test_serve_with_the_wrong_key_file_exits_with_a_message_not_a_traceback(
    tmp_path: Path, database_url: str
) -> None:
    config = _config(tmp_path, database_url)
    key_file = tmp_path / "secrets.key"

    async def register() -> None:
        async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
            from aibridged.store import apply_migrations

            await apply_migrations(store)
            await check_secret_box(store, load_secret_box(key_file, create=True), key_file)

    trio.run(register)
    write_key_file(key_file, SecretBox.generate())  # someone replaced the key file
    done = subprocess.run(
        [sys.executable, "-m", "aibridged", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "does not open this database's secrets" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


async def test_rotate_then_prune_keeps_every_secret_readable(
    tmp_path: Path,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In-process CLI runs would point the whole test session's logging at a captured stream.
    monkeypatch.setattr("aibridged.cli.configure_logging", lambda targets: None)
    config = _config(tmp_path, database_url)
    key_file = tmp_path / "secrets.key"
    old = load_secret_box(key_file, create=True)
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        await check_secret_box(store, old, key_file)
        body = {"type": "openai", "name": "p", "api_keys": [KEY]}
        await insert_provider(store, new_provider(body, old))

        def cli(*args: str) -> int:
            return main([args[0], "--config", str(config), *args[1:]])

        assert await trio.to_thread.run_sync(cli, "secrets", "rotate") == 0
        rotated = load_secret_box(key_file, create=False)
        assert rotated.key_ids[1:] == old.key_ids
        assert all(rotated.sealed_by_current(v) for v in await all_sealed(store))
        # A replica still on the old key ring writes meanwhile: pruning must refuse.
        await insert_provider(store, new_provider({**body, "name": "late"}, old))
        assert await trio.to_thread.run_sync(cli, "secrets", "prune") == 1
        assert "sealed under older keys" in capsys.readouterr().err
        assert await trio.to_thread.run_sync(cli, "secrets", "rotate") == 0
        assert await trio.to_thread.run_sync(cli, "secrets", "prune") == 0
        pruned = load_secret_box(key_file, create=False)
        assert len(pruned.key_ids) == 1
        rows = await list_providers(store)
        assert [open_keys(pruned, row) for row in rows] == [(KEY,), (KEY,)]
        await check_secret_box(store, pruned, key_file)  # the check value was resealed too


async def test_a_missing_key_file_on_a_database_with_secrets_stops_startup(
    store: Store, tmp_path: Path
) -> None:
    from aibridged.startup import prepare_secret_box

    path = tmp_path / "secrets.key"
    await prepare_secret_box(store, path)  # first boot: created and registered
    path.unlink()
    with pytest.raises(StartupError, match=r"is missing.*restore the file"):
        await prepare_secret_box(store, path)
    assert not path.exists()  # no stray new key left behind


async def test_a_running_gateway_picks_up_a_rotated_key_file_on_its_next_reload(
    nursery: trio.Nursery,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx2

    from tests.gateway import start_gateway

    monkeypatch.setattr("aibridged.cli.configure_logging", lambda targets: None)
    gw = await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)
    config = tmp_path / "aibridged.toml"
    argv = ["secrets", "rotate", "--config", str(config), "--database-url", database_url]
    assert await trio.to_thread.run_sync(main, argv) == 0
    async with httpx2.AsyncClient(base_url=gw.url, timeout=10) as api:
        headers = {"authorization": f"Bearer {gw.token}"}
        # The rotation notified: this replica's reload re-reads the key file and serves on.
        body = {"type": "openai", "name": "after", "api_keys": [KEY],
                "base_url": gw.upstream_url + "/v1"}  # fmt: skip
        created = await api.post("/api/v2/ai/providers", json=body, headers=headers)
        assert created.status_code == 201 and created.json()["status"] == "enabled"
        listed = await api.get("/api/v2/ai/providers", headers=headers)
        assert listed.status_code == 200
        chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        served = await api.post("/api/v2/aibridge/after/v1/chat/completions", json=chat,
                                headers=headers)  # fmt: skip
        assert served.status_code == 200
    rotated = load_secret_box(tmp_path / "secrets.key", create=False)
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        assert all(rotated.sealed_by_current(v) for v in await all_sealed(store))
