"""systemd's sd_notify protocol: READY=1, RELOADING=1, STOPPING=1, WATCHDOG=1.

A no-op when NOTIFY_SOCKET is unset (not started by systemd with Type=notify).
"""

from __future__ import annotations

import os
import socket
import time

import structlog
import trio

log = structlog.get_logger("aibridged.sdnotify")


class SdNotifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_interval_s: float | None = int(usec) / 2e6 if usec.isdigit() else None
        pid = env.get("WATCHDOG_PID", "")
        if pid.isdigit() and int(pid) != os.getpid():
            self.watchdog_interval_s = None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, state: str) -> None:
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(state.encode(), self._address)
        except OSError as exc:
            log.warning("sdnotify.failed", state=state, error=exc.strerror)

    def ready(self) -> None:
        self.notify("READY=1\nSTATUS=serving")

    def reloading(self) -> None:
        self.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    async def run_watchdog(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        if self.watchdog_interval_s is None or not self._address:
            return
        next_run = trio.current_time()
        while True:
            self.notify("WATCHDOG=1")
            next_run += self.watchdog_interval_s
            await trio.sleep_until(next_run)
