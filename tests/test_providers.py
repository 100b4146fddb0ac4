from __future__ import annotations

from pathlib import Path

import pytest

from aibridged.config import ProviderSeed
from aibridged.providers.pool import (
    ProviderRegistry,
    build_provider,
    provider_from_seed,
    provider_set,
)


def _seed(**kw: object) -> ProviderSeed:
    base: dict[str, object] = {"type": "openai", "name": "openai", "display_name": "openai"}
    return ProviderSeed(**{**base, **kw})  # type: ignore[arg-type]


def test_keys_come_from_env_or_file_and_never_show_in_repr(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file-123\n")
    from_env = provider_from_seed(_seed(key_env="K"), {"K": "sk-from-env-456"})
    from_file = provider_from_seed(_seed(key_file=key_file), {})
    assert (from_env.key, from_file.key) == ("sk-from-env-456", "sk-from-file-123")
    assert "sk-from" not in repr(from_env) + repr(from_file)
    assert from_env.status == "enabled"


@pytest.mark.parametrize(
    ("seed", "env", "reason"),
    [
        (_seed(key_env="MISSING"), {}, "MISSING"),
        (_seed(type="openai-compat", base_url=""), {}, "needs a base_url"),
        (_seed(base_url="ftp://x"), {}, "http(s)"),
        (_seed(type="bedrock", name="bedrock"), {}, "not supported"),
        (_seed(name="sessions"), {}, "reserved"),
    ],
)
def test_unusable_providers_get_status_error_with_a_reason(
    seed: ProviderSeed, env: dict[str, str], reason: str
) -> None:
    provider = provider_from_seed(seed, env)
    assert provider.status == "error" and reason in provider.error


def test_defaults_and_disabled_status() -> None:
    anthropic = build_provider(name="claude", type_name="anthropic", base_url="", keys=())
    assert anthropic.base_url == "https://api.anthropic.com"
    off = build_provider(name="x", type_name="openai", base_url="", keys=(), enabled=False)
    assert (off.status, off.base_url) == ("disabled", "https://api.openai.com/v1")


def test_snapshots_swap_whole_and_reject_duplicates() -> None:
    one = build_provider(name="a", type_name="openai", base_url="", keys=())
    registry = ProviderRegistry(provider_set([one]))
    held = registry.current
    registry.swap(
        provider_set([build_provider(name="b", type_name="openai", base_url="", keys=())], 2)
    )
    assert held.get("a") is one and registry.current.get("a") is None
    with pytest.raises(ValueError, match="duplicate"):
        provider_set([one, one])
