"""Bringing the providers and the writers up: the secrets key, seeding, the first load, live
reload; the recorder's partitions and writer; the dump writer.

`open_providers` is what `daemon.py` calls once the database is migrated: it checks the secrets
key against the database, seeds on first boot, loads the first set (a failure here stops
startup), and gives the registry the data plane reads, the reloader and the function the API
uses to describe a stored row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import structlog
import trio

from aibridged.config import Config
from aibridged.dump import Dumps, DumpWriter
from aibridged.errors import SecretsError, StartupError, UnknownSecretsKey
from aibridged.metrics import Metrics
from aibridged.providers.bedrock.credentials import AwsCredentialCache
from aibridged.providers.load import load_provider_set, provider_from_stored
from aibridged.providers.pool import Provider, ProviderRegistry, ProviderSet
from aibridged.providers.seeding import demo_seeds, seed_database, seeds_from_config
from aibridged.recorder import Recorder, ensure_partitions
from aibridged.reload import Reloader
from aibridged.retention import RetentionSweeper
from aibridged.sdnotify import SdNotifier
from aibridged.secretbox import SecretBox, load_secret_box
from aibridged.store import Store
from aibridged.store.db import Runner
from aibridged.store.listen import run_notification_listener
from aibridged.store.native import NativePool
from aibridged.store.providers import (
    CHANGED_CHANNEL,
    SECRETS_CHECK_CONTEXT,
    StoredProvider,
    check_secrets_key,
    secrets_registered,
)
from aibridged.supervisor import Writers, run_supervised

log = structlog.get_logger("aibridged.providers")

# Connections of the pool reloads may use (one is plenty: a reload is two queries).
RELOAD_CONNECTIONS = 1
RECORDER_CONNECTIONS = 1  # the batch writer's (asyncpg: store/records.py `write_batch` says why)
RECORDER_STARTS_CONNECTIONS = 1  # the group commit's (trio-native libpq: store/native.py)
RECORDER_APPLICATION_NAME = "aibridged-recorder"
# The start connection runs only the two prepared start inserts (store/records.py). Their plan
# cannot use the values (arrays of rows routed to day partitions), yet PostgreSQL's default
# keeps planning them anew: 1.7 ms a commit for the thread lookup when it still searched every
# partition, measured. A generic plan is made once per connection (and again when partitions
# are added).
STARTS_SETTINGS = {"plan_cache_mode": "force_generic_plan"}
_CHECK_VALUE = b"aibridged secrets check"


async def prepare_secret_box(store: Runner, path: Path, *, may_create: bool = True) -> SecretBox:
    """The key ring, checked against the database. It is created only for a database that has
    no secrets yet: a missing file is never silently replaced by a key that opens nothing."""
    if not _exists(path) and (not may_create or await secrets_registered(store)):
        raise StartupError(
            f"secrets key file {path} is missing, and this database holds secrets sealed with"
            " it: restore the file (from a backup, or another replica); a new key cannot open"
            " them"
        )
    try:
        box = load_secret_box(path, create=may_create)
    except SecretsError as exc:
        raise StartupError(str(exc)) from exc
    _warn_if_readable_by_others(path)
    await check_secret_box(store, box, path)
    return box


def _exists(path: Path) -> bool:
    return path.exists()  # a stat at startup: not worth a thread


def _warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o077:
        log.warning("secrets.key_file_not_private", key_file=str(path), mode=oct(mode & 0o777),
                    fix=f"chmod 600 {path}")  # fmt: skip


async def check_secret_box(store: Runner, box: SecretBox, path: Path) -> None:
    """Stop startup when `box` is not the key ring the database's secrets were sealed with."""

    def check(sealed: bytes) -> None:
        box.open(sealed, context=SECRETS_CHECK_CONTEXT)

    def seal() -> bytes:
        return box.seal(_CHECK_VALUE, context=SECRETS_CHECK_CONTEXT)

    try:
        if await check_secrets_key(store, seal, check):
            log.info("secrets.key_registered", key_file=str(path), key_id=box.key_ids[0])
    except SecretsError as exc:
        raise StartupError(
            f"secrets key file {path} does not open this database's secrets: {exc}. Use the"
            " key file this database was set up with (server.secrets_key_file)"
        ) from exc


@dataclass(slots=True)
class ProviderRuntime:
    registry: ProviderRegistry
    reloader: Reloader[ProviderSet]
    box: SecretBox
    demo_url: str | None
    aws: AwsCredentialCache  # Bedrock providers' credentials, refreshed in the background

    def describe(self, stored: StoredProvider) -> Provider:
        return provider_from_stored(stored, self.box, self.demo_url)

    async def run(self, store: Store, metrics: Metrics, nursery: trio.Nursery) -> None:
        """Start the reload loop and the LISTEN connection under supervision in `nursery`."""
        await nursery.start(run_supervised, "provider_reloader", self.reloader.run, metrics)
        await nursery.start(run_supervised, "aws_credentials", self.aws.run_refresher, metrics)
        await nursery.start(
            run_supervised,
            "provider_listener",
            partial(run_notification_listener, store, CHANGED_CHANNEL, self.reloader.request),
            metrics,
        )


async def open_providers(
    config: Config,
    store: Store,
    metrics: Metrics,
    notifier: SdNotifier,
    *,
    demo_url: str | None,
    environ: Mapping[str, str] | None,
) -> ProviderRuntime:
    key_path = config.server.secrets_key_path
    box = await prepare_secret_box(store, key_path)
    seeds = seeds_from_config(config.providers, environ)
    if demo_url is not None:
        seeds += demo_seeds()
    await seed_database(store, box, seeds)
    runner = store.budget("providers", RELOAD_CONNECTIONS)
    registry = ProviderRegistry(ProviderSet({}))
    reported = _Reported(metrics)
    aws = AwsCredentialCache()

    async def build(version: int) -> ProviderSet:
        return await aws.prepare(await load(version))

    async def load(version: int) -> ProviderSet:
        try:
            return await load_provider_set(runner, runtime.box, demo_url, version)
        except UnknownSecretsKey:
            # A rotation elsewhere: the key file may hold the new key by now (copied, then
            # SIGHUP or the next poll); without it the reload fails and the last set stays.
            fresh = load_secret_box(key_path, create=False)
            if fresh.key_ids == runtime.box.key_ids:
                raise
            log.info("secrets.key_file_reloaded", key_file=str(key_path), keys=fresh.key_ids)
            runtime.box = fresh
            return await load_provider_set(runner, fresh, demo_url, version)

    def apply(snapshot: ProviderSet) -> None:
        registry.swap(snapshot)
        reported.update(snapshot)

    reloader = Reloader(
        build,
        apply,
        metrics=metrics,
        notifier=notifier,
        poll_interval_s=config.ai_gateway.providers_poll_interval_s,
    )
    runtime = ProviderRuntime(registry, reloader, box, demo_url, aws)
    await reloader.load_first()
    return runtime


class _Reported:
    """The provider_info series (reset on each successful reload) and a log line for each
    provider that appeared or changed (not on every 30 s poll)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._revisions: dict[str, str] = {}

    def update(self, snapshot: ProviderSet) -> None:
        self._metrics.provider_info.clear()
        revisions: dict[str, str] = {}
        for provider in snapshot:
            self._metrics.provider_info.labels(
                provider.name, provider.type.name, provider.status
            ).set(1)
            revisions[provider.name] = provider.revision
            if self._revisions.get(provider.name) != provider.revision:
                log.info(
                    "provider.loaded",
                    provider=provider.name,
                    type=provider.type.name,
                    status=provider.status,
                    base_url=provider.base_url,
                )
        for name in self._revisions.keys() - revisions.keys():
            log.info("provider.removed", provider=name)
        self._revisions = revisions


async def open_recorder(
    config: Config, store: Store, metrics: Metrics, writers: Writers
) -> Recorder | None:
    """The recorder, a writer: it drains after the listener stops, before the store closes."""
    if not config.ai_gateway.recording:
        log.warning("recorder.off", reason="ai_gateway.recording = false: nothing is recorded")
        return None
    created = await ensure_partitions(store)
    if created.partitions:
        log.info("recorder.partitions_created", count=created.partitions)
    if created.blocked:
        log.warning("recorder.partitions_blocked", days=[str(d) for d in created.blocked],
                    reason="rows of these days are in a DEFAULT partition already")  # fmt: skip
    runner, starts = await recorder_connections(
        store, synchronous_commit=config.ai_gateway.recording_synchronous_commit
    )
    recorder = Recorder(
        runner,
        metrics,
        structured_logging=config.ai_gateway.structured_logging,
        starts_runner=starts,
    )
    await writers.start_task("recorder", recorder.run, recorder.close)
    return recorder


async def open_dumps(config: Config, metrics: Metrics, writers: Writers) -> Dumps | None:
    """The API dumps (None when `ai_gateway.api_dump_dir` is empty). The dump writer is a
    writer: it drains after the listener stops. A directory that cannot be used is logged and
    counted on every write, and never stops the gateway or a request."""
    if not config.ai_gateway.api_dump_dir:
        return None
    root = _prepare_dump_dir(config.ai_gateway.api_dump_dir)
    writer = DumpWriter(root, metrics)
    await writers.start_task("dump_writer", writer.run, writer.close)
    log.warning(
        "dump.on",
        dump_dir=str(root),
        reason="every upstream request and response is written to files (prompts included)",
    )
    return Dumps(writer)


def _prepare_dump_dir(configured: str) -> Path:
    """The dump directory, made (0700) if missing; a startup stat and mkdir: no thread."""
    root = Path(configured).absolute()
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = root.stat().st_mode
    except OSError as exc:
        log.warning("dump.dir_unusable", dump_dir=str(root), error=exc.strerror or str(exc))
        return root
    if mode & 0o077:
        log.warning("dump.dir_not_private", dump_dir=str(root), mode=oct(mode & 0o777),
                    fix=f"chmod 700 {root}")  # fmt: skip
    return root


async def recorder_connections(
    store: Store, *, synchronous_commit: bool
) -> tuple[Runner, NativePool]:
    """The batch writer's runner and the start commits' native pool, closed with the store."""
    settings: dict[str, str] = {}
    if not synchronous_commit:
        # A commit then returns before its WAL reaches the disk: a PostgreSQL crash (not the
        # gateway's) may lose the last ~0.6 s of records; a flush per commit costs ~5 ms here.
        settings = {"synchronous_commit": "off"}
    runner: Runner = store.budget("recorder", RECORDER_CONNECTIONS)
    if settings:
        runner = await store.side_pool(RECORDER_CONNECTIONS, settings)
    # Starts are on the request's path: their commit skips trio-asyncio (docs/recording.md).
    starts = await store.native_pool(
        RECORDER_STARTS_CONNECTIONS,
        {**settings, **STARTS_SETTINGS},
        application_name=RECORDER_APPLICATION_NAME,
    )
    return runner, starts


def statistics_for_readiness(
    providers: ProviderRuntime, recorder: Recorder | None, sweeper: RetentionSweeper
) -> dict[str, object]:
    reload = providers.reloader.statistics()
    found: dict[str, object] = {
        "providers": {
            "version": reload.version,
            "reload_failures": reload.failures,
            "last_reload_error": reload.last_error,
        },
    }
    if recorder is not None:
        found["recorder"] = asdict(recorder.statistics())
    found["aws_credentials"] = asdict(providers.aws.statistics())
    found["retention"] = asdict(sweeper.statistics())
    return found
