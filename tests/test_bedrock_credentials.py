"""Bedrock providers' AWS credentials: resolved when a reload brings the provider, refreshed in
the background before they expire, kept across reloads that do not change the provider; and
botocore's default chain. Timing under trio's autojump_clock, lookups called inline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from aibridged.errors import CredentialError
from aibridged.providers.bedrock.credentials import (
    REFRESH_MARGIN_S,
    AwsCredentialCache,
    AwsCredentials,
)
from aibridged.providers.bedrock.settings import BedrockSettings
from aibridged.providers.bedrock.signing import AwsKeys
from aibridged.providers.bedrock.sources import DefaultChain, Resolved, Source
from aibridged.providers.pool import Provider, ProviderSet, build_provider, provider_set
from tests.fakes_bedrock import isolate_aws

EPOCH = 1_800_000_000.0
ROLE = "arn:aws:iam::123456789012:role/bedrock"
LIFETIME_S = 3600.0
MAX_WAIT_S = 300.0  # the longest retry backoff


def _wall() -> float:
    return EPOCH + trio.current_time()


async def _inline(source: Source) -> Resolved:
    return source()


class ScriptedSource:
    """Temporary credentials of `lifetime_s`; fails while `failing`; records when it is asked."""

    def __init__(self, lifetime_s: float = LIFETIME_S) -> None:
        self.asked: list[float] = []
        self.failing = False
        self.lifetime_s = lifetime_s

    def __call__(self) -> Resolved:
        self.asked.append(trio.current_time())
        if self.failing:
            raise CredentialError("STS is down")
        expires_at = _wall() + self.lifetime_s
        keys = AwsKeys(f"ASIA{len(self.asked):016d}", "secret", "token", expires_at)
        return Resolved(keys, changing=True)


def _cache(source: Source, **kw: Any) -> AwsCredentialCache:
    def sources(settings: BedrockSettings, session_name: str) -> Source:
        return source

    return AwsCredentialCache(run_sync=_inline, wall=_wall, sources=sources, **kw)


def _providers(**settings: str) -> ProviderSet:
    provider = build_provider(
        name="br",
        type_name="bedrock",
        base_url="",
        keys=(),
        settings={"region": "us-east-1", "role_arn": ROLE, **settings},
    )
    return provider_set([provider])


def _holder(providers: ProviderSet) -> AwsCredentials:
    provider = providers.get("br")
    assert provider is not None and provider.aws_credentials is not None
    return provider.aws_credentials


async def test_temporary_credentials_are_renewed_a_margin_before_they_expire(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    source = ScriptedSource()
    cache = _cache(source)
    holder = _holder(await cache.prepare(_providers()))
    assert source.asked == [0.0] and holder.current() is not None  # resolved by the reload
    await nursery.start(cache.run_refresher)
    renew = LIFETIME_S - REFRESH_MARGIN_S
    await trio.sleep(2 * renew + 1)
    assert source.asked == [0.0, renew, 2 * renew]
    keys = holder.current()
    assert keys is not None and keys.access_key == "ASIA0000000000000003"


async def test_short_lived_credentials_are_renewed_halfway_through(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    source = ScriptedSource(lifetime_s=1200.0)  # shorter than twice the margin
    cache = _cache(source)
    await cache.prepare(_providers())
    await nursery.start(cache.run_refresher)
    await trio.sleep(1201)
    assert source.asked == [0.0, 600.0, 1200.0]


async def test_a_failed_renewal_is_retried_with_backoff_while_the_old_keys_sign(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    source = ScriptedSource()
    cache = _cache(source)
    holder = _holder(await cache.prepare(_providers()))
    await nursery.start(cache.run_refresher)
    renew = LIFETIME_S - REFRESH_MARGIN_S
    source.failing = True
    await trio.sleep(renew + 5 + 10 + 1)
    assert source.asked == [0.0, renew, renew + 5, renew + 15]
    assert holder.current() is not None and holder.error == "STS is down"
    await trio.sleep(LIFETIME_S - trio.current_time())  # the old keys expire: none to sign with
    assert holder.current() is None
    source.failing = False
    before = len(source.asked)
    await trio.sleep(MAX_WAIT_S)
    assert len(source.asked) == before + 1 and holder.current() is not None
    assert cache.statistics().failures >= 3


async def test_a_reload_keeps_the_credentials_of_an_unchanged_provider(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = ScriptedSource()
    cache = _cache(source)
    first = _holder(await cache.prepare(_providers()))
    again = _holder(await cache.prepare(_providers()))
    assert again is first and source.asked == [0.0]
    changed = _holder(await cache.prepare(_providers(model="us.anthropic.claude-opus-4-5-v1:0")))
    assert changed is not first and len(source.asked) == 2
    assert (await cache.prepare(provider_set([]))).everything == ()
    assert cache.statistics().providers == 0


async def test_a_slow_lookup_delays_the_reload_by_the_prepare_timeout_at_most(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    release = trio.Event()

    async def slow(source: Source) -> Resolved:
        await release.wait()
        return source()

    source = ScriptedSource()

    def sources(settings: BedrockSettings, session_name: str) -> Source:
        return source

    cache = AwsCredentialCache(run_sync=slow, wall=_wall, sources=sources, prepare_timeout_s=5)
    holder = _holder(await cache.prepare(_providers()))
    assert trio.current_time() == 5.0 and holder.current() is None
    assert "not resolved yet" in holder.error
    await nursery.start(cache.run_refresher)
    await trio.sleep(1)
    release.set()
    await trio.sleep(0.1)
    assert holder.current() is not None and source.asked == [6.0]


async def test_disabled_and_other_providers_get_no_lookup() -> None:
    source = ScriptedSource()
    cache = _cache(source)
    off = build_provider(
        name="br",
        type_name="bedrock",
        base_url="",
        keys=(),
        enabled=False,
        settings={"region": "us-east-1"},
    )
    other = build_provider(name="oa", type_name="openai", base_url="", keys=("sk-0123456789",))
    prepared = await cache.prepare(provider_set([off, other]))
    assert all(p.aws_credentials is None for p in prepared) and source.asked == []


def _static_provider() -> Provider:
    return build_provider(
        name="br",
        type_name="bedrock",
        base_url="",
        keys=(),
        settings={"region": "us-east-1"},
        secrets={"access_key": "AKIASTATIC0000000001", "access_key_secret": "static-secret"},
    )


async def test_static_keys_are_used_as_they_are_and_never_looked_up_again(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    cache = AwsCredentialCache(run_sync=_inline, wall=_wall)
    prepared = await cache.prepare(provider_set([_static_provider()]))
    holder = _holder(prepared)
    await nursery.start(cache.run_refresher)
    await trio.sleep(10 * LIFETIME_S)
    keys = holder.current()
    assert keys is not None and keys.access_key == "AKIASTATIC0000000001"
    assert holder.next_refresh == float("inf")


def test_the_default_chain_reads_keys_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENV000000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token")
    resolved = DefaultChain("us-east-1")()
    assert resolved.keys == AwsKeys("AKIAFROMENV000000001", "env-secret", "env-token")
    assert not resolved.changing and "env-secret" not in repr(resolved)


def test_the_default_chain_without_credentials_says_where_it_looked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_aws(monkeypatch, tmp_path)
    with pytest.raises(CredentialError, match="found no credentials"):
        DefaultChain("us-east-1")()


def test_a_shared_credentials_file_is_part_of_the_chain(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_aws(monkeypatch, tmp_path)
    shared = tmp_path / "credentials"
    shared.write_text(
        "[default]\naws_access_key_id = AKIAFROMFILE00000001\naws_secret_access_key = file-secret\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))
    assert DefaultChain("us-east-1")().keys.access_key == "AKIAFROMFILE00000001"
