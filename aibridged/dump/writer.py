"""The dump writer: a task that writes dump files behind the requests, in a worker thread.

The request side only queues (`DumpWriter.submit`, never blocking): the queue is bounded in
bytes (`queue_bytes`, 64 MiB by default), and what does not fit is dropped and counted
(`coder_aibridged_dumps_dropped_total{reason}`), so a slow, full or read-only disk costs a
request nothing. Rendering (pretty-printing a 100 KB body) and every file operation happen in
the writer's thread, a batch at a time: files are opened, written and closed per batch, so
thousands of open streams hold no file descriptors.

Failed writes (a read-only directory, ENOSPC) are counted
(`coder_aibridged_dump_write_errors_total`) and logged once per burst: the first failure, then
at most every `ERROR_LOG_EVERY_S` while they go on, and a line when writes work again.

Files are created 0600 and directories 0700 (dumps hold prompts and answers). A file is never
followed through a symlink.

Shutdown: `close()` refuses new pieces; `run` writes what is queued, then returns. A disk that
does not answer cannot hold the exit up: after `drain_timeout_s` the rest is dropped (reason
`shutdown`).
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
import trio

from aibridged.metrics import Metrics

log = structlog.get_logger("aibridged.dump")

DEFAULT_QUEUE_BYTES = 64 << 20
PIECE_OVERHEAD_BYTES = 256  # what a queued piece costs beyond its payload, roughly
BATCH_BYTES = 4 << 20
BATCH_PIECES = 2_000
ERROR_LOG_EVERY_S = 60.0
DROP_LOG_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class Piece:
    """One write into one dump file."""

    path: Path
    data: bytes | Callable[[], bytes]  # a callable is rendered in the writer's thread
    create: bool  # starts the file (truncating one that exists) rather than appending
    size: int  # what it holds of the queue's bytes


# A file a batch could not write to: its path, the error and how many of the batch's pieces it had.
Failure = tuple[Path, OSError, int]


@dataclass(frozen=True, slots=True)
class DumpStatistics:
    queued_bytes: int
    written: int  # pieces
    dropped: int  # pieces
    write_errors: int
    last_error: str


class DumpWriter:
    def __init__(
        self,
        root: Path,
        metrics: Metrics,
        *,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        drain_timeout_s: float = 10.0,
    ) -> None:
        self.root = root
        self._metrics = metrics
        self._limit = queue_bytes
        self._drain_timeout_s = drain_timeout_s
        self._send, self._receive = trio.open_memory_channel[Piece](math.inf)
        self._files = _Files(root)
        self._queued_bytes = 0
        self._closed = False
        self._drain: trio.CancelScope | None = None
        self._counts = {"written": 0, "dropped": 0, "errors": 0, "handled": 0}
        self._handled = trio.Event()  # set (and replaced) after each batch
        self._last_error = ""
        self._failing = False
        self._last_error_log = -math.inf
        self._last_drop_log = -math.inf
        metrics.dump_queue_bytes.set_function(lambda: self._queued_bytes)

    # -- the request side -----------------------------------------------------------------------

    def submit(self, piece: Piece, *, force: bool = False) -> bool:
        """Queue `piece`; False (counted) when it was dropped. `force` lets a small piece past
        the byte limit (the note that a dump is incomplete), never past a closed writer."""
        if self._closed:
            self._dropped("closed")
            return False
        if not force and self._queued_bytes + piece.size > self._limit:
            self._dropped("queue_full")
            return False
        self._queued_bytes += piece.size
        self._send.send_nowait(piece)
        return True

    def _dropped(self, reason: str, count: int = 1) -> None:
        self._counts["dropped"] += count
        self._metrics.dumps_dropped.labels(reason=reason).inc(count)
        now = trio.current_time()
        if now - self._last_drop_log >= DROP_LOG_EVERY_S:
            self._last_drop_log = now
            log.warning(
                "dump.dropped",
                reason=reason,
                dropped_total=self._counts["dropped"],
                queued_bytes=self._queued_bytes,
                limit_bytes=self._limit,
            )

    def statistics(self) -> DumpStatistics:
        return DumpStatistics(
            queued_bytes=self._queued_bytes,
            written=self._counts["written"],
            dropped=self._counts["dropped"],
            write_errors=self._counts["errors"],
            last_error=self._last_error,
        )

    def close(self) -> None:
        """No more pieces: `run` writes what is queued (for up to `drain_timeout_s`), then
        returns."""
        if self._closed:
            return
        self._closed = True
        self._send.close()
        if self._drain is not None:
            self._drain.deadline = trio.current_time() + self._drain_timeout_s

    # -- the writer task ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write batches until closed and drained. Restarted after a crash, it goes on with
        the same queue."""
        with trio.CancelScope() as self._drain:
            if self._closed:
                self._drain.deadline = trio.current_time() + self._drain_timeout_s
            task_status.started()
            while True:
                batch = await self._next_batch()
                if not batch:
                    return
                await self._write(batch)
        self._drop_the_rest()

    async def _next_batch(self) -> list[Piece]:
        try:
            batch = [await self._receive.receive()]
        except trio.EndOfChannel:
            return []
        size = batch[0].size
        while len(batch) < BATCH_PIECES and size < BATCH_BYTES:
            try:
                piece = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            batch.append(piece)
            size += piece.size
        return batch

    async def _write(self, batch: list[Piece]) -> None:
        failures: list[Failure] | None = None
        reason = "shutdown"  # cancelled: the drain deadline passed, or the daemon stops at once
        try:
            # Abandoned (not waited for) when cancelled: a hung disk then keeps its thread, not
            # the daemon's exit.
            failures = await trio.to_thread.run_sync(
                self._files.write, batch, abandon_on_cancel=True
            )
        except Exception:
            reason = "crashed"  # a bug; the supervisor restarts the writer
            raise
        finally:
            self._queued_bytes -= sum(piece.size for piece in batch)
            if failures is None:
                self._dropped(reason, len(batch))
        failed = sum(count for _, _, count in failures)
        self._counts["written"] += len(batch) - failed
        self._counts["handled"] += len(batch)
        self._report(failures, wrote=failed < len(batch))
        self._handled.set()
        self._handled = trio.Event()

    async def wait_handled(self, pieces: int) -> None:
        """Until at least `pieces` pieces have been written or have failed, in all."""
        while self._counts["handled"] < pieces:
            await self._handled.wait()

    def _report(self, failures: list[Failure], *, wrote: bool) -> None:
        if not failures:
            if self._failing and wrote:
                self._failing = False
                log.info("dump.writes_recovered", dump_dir=str(self.root))
            return
        self._counts["errors"] += len(failures)
        self._metrics.dump_write_errors.inc(len(failures))
        path, error, _ = failures[-1]
        self._last_error = f"{path}: {error.strerror or error}"
        now = trio.current_time()
        if not self._failing or now - self._last_error_log >= ERROR_LOG_EVERY_S:
            self._failing = True
            self._last_error_log = now
            log.warning(
                "dump.write_failed",
                dump_dir=str(self.root),
                error=self._last_error,
                errors_total=self._counts["errors"],
                reason="dumps are skipped; requests are not affected",
            )

    def _drop_the_rest(self) -> None:
        left = 0
        while True:
            try:
                piece = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            left += 1
            self._queued_bytes -= piece.size
        if left:
            self._dropped("shutdown", left)


class _Files:
    """The file side, used only from the writer's thread (one batch at a time)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._dirs: set[Path] = set()  # made (or found) already: no mkdir per write

    def write(self, batch: list[Piece]) -> list[Failure]:
        """Write `batch` (in order per file); the failures, one per file that failed."""
        by_file: dict[Path, list[Piece]] = {}
        for piece in batch:
            by_file.setdefault(piece.path, []).append(piece)
        failures: list[Failure] = []
        for path, pieces in by_file.items():
            try:
                self._write_file(path, pieces)
            except OSError as exc:
                failures.append((path, exc, len(pieces)))
        return failures

    def _write_file(self, path: Path, pieces: list[Piece]) -> None:
        if not path.is_relative_to(self._root) or ".." in path.parts:
            raise OSError(errno.EINVAL, "not inside the dump directory")
        data = b"".join(p.data if isinstance(p.data, bytes) else p.data() for p in pieces)
        create = pieces[0].create
        flags = os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW
        flags |= os.O_CREAT | os.O_TRUNC if create else os.O_APPEND
        if create:
            self._make_dirs(path.parent)
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            if not create:
                raise  # its start was never written (or was removed): nothing to append to
            self._dirs.discard(path.parent)  # removed under us: make it again
            self._make_dirs(path.parent)
            fd = os.open(path, flags, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def _make_dirs(self, folder: Path) -> None:
        if folder in self._dirs:
            return
        if not self._root.is_dir():
            self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        current = self._root
        for part in folder.relative_to(self._root).parts:
            current = current / part
            current.mkdir(mode=0o700, exist_ok=True)
        self._dirs.add(folder)
