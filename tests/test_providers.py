from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from aibridged.config import ProviderSeed
from aibridged.errors import StartupError
from aibridged.providers.pool import (
    Provider,
    ProviderRegistry,
    build_provider,
    provider_set,
)
from aibridged.providers.seeding import seeds_from_config


def _seed(**kw: object) -> ProviderSeed:
    base: dict[str, object] = {"type": "openai", "name": "openai", "display_name": "openai"}
    return ProviderSeed(**{**base, **kw})  # type: ignore[arg-type]


def provider_from_seed(seed: ProviderSeed, env: dict[str, str]) -> Provider:
    """The provider a seed gives once it is in the database (as the reload loop builds it)."""
    (resolved,) = seeds_from_config([seed], env)
    return build_provider(
        name=resolved.name,
        type_name=resolved.type,
        base_url=resolved.base_url,
        keys=resolved.keys,
        enabled=resolved.enabled,
    )


def test_keys_come_from_env_or_file_and_never_show_in_repr(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file-123\n")
    from_env = provider_from_seed(_seed(key_env="K"), {"K": "sk-from-env-456"})
    from_file = provider_from_seed(_seed(key_file=key_file), {})
    assert (from_env.keys, from_file.keys) == (("sk-from-env-456",), ("sk-from-file-123",))
    assert "sk-from" not in repr(from_env) + repr(from_file)
    assert from_env.status == "enabled"


@pytest.mark.parametrize(
    ("seed", "env", "reason"),
    [
        (_seed(), {}, "needs an API key"),
        (_seed(type="openai-compat", base_url=""), {}, "needs a base_url"),
        (_seed(base_url="ftp://x", key_env="K"), {"K": "sk-1"}, "http(s)"),
        (_seed(type="bedrock", name="bedrock"), {}, "bedrock needs a region"),
    ],
)
def test_unusable_providers_get_status_error_with_a_reason(
    seed: ProviderSeed, env: dict[str, str], reason: str
) -> None:
    provider = provider_from_seed(seed, env)
    assert provider.status == "error" and reason in provider.error


def test_a_reserved_name_or_a_repeated_name_in_the_seeds_stops_startup() -> None:
    with pytest.raises(StartupError, match="reserved"):
        seeds_from_config([_seed(name="sessions")], {})
    with pytest.raises(StartupError, match="two provider seeds"):
        seeds_from_config([_seed(), _seed()], {})


def test_defaults_and_disabled_status() -> None:
    anthropic = build_provider(name="claude", type_name="anthropic", base_url="", keys=("k",))
    assert anthropic.base_url == "https://api.anthropic.com"
    off = build_provider(name="x", type_name="openai", base_url="", keys=("k",), enabled=False)
    assert (off.status, off.base_url) == ("disabled", "https://api.openai.com/v1")


def test_snapshots_swap_whole() -> None:
    one = build_provider(name="a", type_name="openai", base_url="", keys=("k",))
    registry = ProviderRegistry(provider_set([one]))
    held = registry.current
    registry.swap(
        provider_set([build_provider(name="b", type_name="openai", base_url="", keys=("k",))], 2)
    )
    assert held.get("a") is one and registry.current.get("a") is None


def test_a_duplicate_name_puts_the_second_in_error_instead_of_failing_the_build() -> None:
    first = build_provider(name="a", type_name="openai", base_url="", keys=("k1",))
    second = build_provider(name="a", type_name="anthropic", base_url="", keys=("k2",))
    built = provider_set([first, second])
    assert built.get("a") is first
    assert [p.status for p in built] == ["enabled", "error"]
    assert "duplicate" in list(built)[1].error


def test_ids_are_stable_and_revisions_follow_the_configuration() -> None:
    a1 = build_provider(name="a", type_name="openai", base_url="", keys=("k1",))
    a2 = build_provider(name="a", type_name="openai", base_url="", keys=("k1",))
    rotated = build_provider(name="a", type_name="openai", base_url="", keys=("k2",))
    assert a1.id == a2.id == rotated.id
    assert a1.revision == a2.revision != rotated.revision
    assert "k1" not in a1.revision


def test_a_provider_error_is_logged_once_per_change() -> None:
    bad = build_provider(name="x", type_name="openai-compat", base_url="", keys=())
    fixed_url = build_provider(name="x", type_name="openai-compat", base_url="ftp://h", keys=())
    with capture_logs() as logs:
        registry = ProviderRegistry(provider_set([bad]))
        registry.swap(provider_set([bad], 2))  # the same provider, the same error: quiet
        registry.swap(provider_set([fixed_url], 3))  # changed, still broken: logged again
        registry.swap(provider_set([fixed_url], 4))
    reasons = [e["reason"] for e in logs if e["event"] == "provider.error"]
    assert len(reasons) == 2
    assert "needs a base_url" in reasons[0] and "http(s)" in reasons[1]


def test_a_base_url_the_upstream_client_cannot_use_is_an_error_status() -> None:
    for url in ("http://", "http://user:pw@host/v1", "http://h/v1?x=1", "http://h:99999"):
        provider = build_provider(name="x", type_name="openai-compat", base_url=url, keys=())
        assert provider.status == "error", url


def test_keys_a_header_cannot_carry_put_the_provider_in_error() -> None:
    provider = build_provider(
        name="x", type_name="openai", base_url="", keys=("sk-ok-0123456789", "sk-bad\nline")
    )
    assert provider.status == "error" and "key 2" in provider.error
    assert "sk-bad" not in provider.error


def test_several_keys_in_one_variable_are_split_like_a_key_file() -> None:
    provider = provider_from_seed(
        _seed(key_env="K"), {"K": " sk-one-0123456789\nsk-two-0123456789 "}
    )
    assert provider.keys == ("sk-one-0123456789", "sk-two-0123456789") and not provider.error
