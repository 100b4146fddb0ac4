"""The embedded PostgreSQL as a normal user (the session fixture already covers root)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from aibridged.store.embedded import EmbeddedPostgres
from tests.conftest import process_alive

SCRIPT = textwrap.dedent(
    """
    import asyncio, os, pwd, sys
    from pathlib import Path
    import asyncpg
    import aibridged.store.embedded as embedded
    # The interpreter lives in root's home, out of that user's reach: load now what pgserver
    # needs, all but pgserver itself (it fixes its lock-file directory when imported).
    import atexit, datetime, fasteners, glob, hashlib, json, logging, platform, platformdirs
    import psutil, shutil, socket, stat, subprocess, time
    user = pwd.getpwnam(sys.argv[2])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    state = Path(sys.argv[1])
    # As a service would have it: the user's own runtime dir (pgserver keeps its lock file there).
    os.environ["XDG_RUNTIME_DIR"] = str(state)
    server = embedded.start_embedded_postgres(state / "postgres")
    async def ask():
        conn = await asyncpg.connect(server.uri)
        print("answer", await conn.fetchval("SELECT 41 + 1"))
        print("owner", (state / "postgres" / "PG_VERSION").stat().st_uid)
        await conn.close()
    asyncio.run(ask())
    pid = server.pid
    server.stop()
    print("stopped", pid)
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_embedded_postgres_runs_as_a_normal_user(postgres_server: EmbeddedPostgres) -> None:
    # pgserver created its `pgserver` system user when the session's server started as root.
    user = pwd.getpwnam("pgserver")
    # Not under pytest's tmp_path: its parents are private to root.
    state = Path(tempfile.mkdtemp(prefix="aibridged-user-"))
    os.chown(state, user.pw_uid, user.pw_gid)
    try:
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(state), "pgserver"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(state, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    assert "answer 42" in result.stdout
    assert f"owner {user.pw_uid}" in result.stdout
    pid = int(result.stdout.split("stopped")[1])
    deadline = time.monotonic() + 10
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(pid), "the embedded server outlived its stop()"
