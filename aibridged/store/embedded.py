"""The embedded PostgreSQL server (the `pgserver` wheel ships the binaries).

`pgserver.get_server()` blocks for seconds (initdb, pg_ctl -w start): call `start_embedded_postgres`
in a thread or before `trio.run`. As root, pgserver runs the server as a dedicated `pgserver` system
user and opens read/execute on the data dir's parents, so keep the data dir out of private homes.
"""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aibridged.errors import StartupError, StoreUnavailable


@dataclass(slots=True)
class EmbeddedPostgres:
    """A running embedded server; `stop()` shuts it down (fast mode) and waits for it."""

    data_dir: Path
    uri: str
    _server: Any

    def stop(self) -> None:
        # cleanup() stops the server when this process holds the last handle to it; another
        # process sharing the same data dir keeps it running until it lets go as well.
        self._server.cleanup()

    @property
    def pid(self) -> int | None:
        pid = self._server.get_pid()
        return int(pid) if pid is not None else None


def start_embedded_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Initialise (first time) and start the server under `data_dir`; blocking."""
    data_dir = data_dir.resolve()
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create state dir {data_dir.parent}: {exc.strerror}") from exc
    if not os.access(data_dir.parent, os.W_OK | os.X_OK):
        raise StartupError(f"state dir {data_dir.parent} is not writable")
    # platformdirs warns when XDG_RUNTIME_DIR is unset (systemd services, CI); pgserver keeps its
    # lock file and sockets there, so give it a stable directory of its own.
    os.environ.setdefault("XDG_RUNTIME_DIR", _runtime_dir())
    from pgserver import get_server  # type: ignore[attr-defined]  # late: reads XDG_RUNTIME_DIR

    try:
        server = get_server(data_dir, cleanup_mode="stop")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        log_file = data_dir / "log"
        raise StoreUnavailable(
            f"embedded PostgreSQL failed to start under {data_dir} (see {log_file}): {exc}"
        ) from exc
    return EmbeddedPostgres(data_dir=data_dir, uri=server.get_uri(), _server=server)


def _runtime_dir() -> str:
    """A private directory for pgserver's lock file. Its name is predictable, so one that
    already exists is used only if it is ours: a real directory, owned by us, closed to others."""
    path = Path("/tmp") / f"aibridged-runtime-{os.geteuid()}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        info = path.lstat()
        if (
            not stat.S_ISDIR(info.st_mode)
            or info.st_uid != os.geteuid()
            or stat.S_IMODE(info.st_mode) & 0o077
        ):
            raise StartupError(
                f"{path} exists but is not a private directory of this user; remove it, or set "
                "XDG_RUNTIME_DIR to a directory only this user can write"
            ) from None
    return str(path)
