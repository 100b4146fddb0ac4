from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from aibridged.errors import SecretsError, UnknownSecretsKey
from aibridged.secretbox import SecretBox, load_secret_box, parse_key_file, write_key_file


def test_a_sealed_secret_opens_in_its_context_only() -> None:
    box = SecretBox.generate()
    sealed = box.seal(b"sk-live-0123456789", context=b"row-1")
    assert b"sk-live" not in sealed
    assert box.open(sealed, context=b"row-1") == b"sk-live-0123456789"
    with pytest.raises(SecretsError, match="altered"):
        box.open(sealed, context=b"row-2")  # copied onto another row: does not open
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SecretsError, match="altered"):
        box.open(tampered, context=b"row-1")


def test_sealing_twice_gives_different_ciphertexts() -> None:
    box = SecretBox.generate()
    assert box.seal(b"k", context=b"c") != box.seal(b"k", context=b"c")


def test_a_secret_sealed_under_another_key_names_both_keys() -> None:
    mine, theirs = SecretBox.generate(), SecretBox.generate()
    sealed = theirs.seal(b"k", context=b"c")
    with pytest.raises(UnknownSecretsKey) as caught:
        mine.open(sealed, context=b"c")
    assert theirs.key_ids[0] in str(caught.value) and mine.key_ids[0] in str(caught.value)


def test_a_rotated_ring_seals_with_the_new_key_and_opens_the_old_ones() -> None:
    old = SecretBox.generate()
    sealed_before = old.seal(b"before", context=b"c")
    rotated = old.rotated()
    assert rotated.key_ids[1:] == old.key_ids and rotated.key_ids[0] != old.key_ids[0]
    assert rotated.open(sealed_before, context=b"c") == b"before"
    sealed_after = rotated.seal(b"after", context=b"c")
    assert rotated.sealed_by_current(sealed_after) and not rotated.sealed_by_current(sealed_before)
    with pytest.raises(UnknownSecretsKey):
        old.open(sealed_after, context=b"c")
    with pytest.raises(UnknownSecretsKey):
        rotated.only_current().open(sealed_before, context=b"c")


def test_the_key_file_is_created_once_with_mode_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    first = load_secret_box(path, create=True)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_secret_box(path, create=True)
    assert again.key_ids == first.key_ids
    sealed = first.seal(b"x", context=b"c")
    assert again.open(sealed, context=b"c") == b"x"


def test_processes_creating_the_key_file_at_once_end_up_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    found: list[tuple[str, ...]] = []
    threads = [
        threading.Thread(target=lambda: found.append(load_secret_box(path, create=True).key_ids))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 1 and len(found) == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no key"),
        ("# only a comment\n", "holds no key"),
        ("not-a-key\n", "line 1: not an aibridged secrets key"),
        ("aibridged-secrets-v1:!!!\n", "not valid base64"),
        ("aibridged-secrets-v1:c2hvcnQ=\n", "must be 32 bytes"),
    ],
)
def test_a_malformed_key_file_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(SecretsError, match=message):
        parse_key_file(text, "secrets.key")


def test_a_missing_key_file_is_an_error_when_it_may_not_be_created(tmp_path: Path) -> None:
    with pytest.raises(SecretsError, match="does not exist"):
        load_secret_box(tmp_path / "absent.key", create=False)


def test_the_file_round_trips_every_key_in_order(tmp_path: Path) -> None:
    ring = SecretBox.generate().rotated().rotated()
    path = tmp_path / "ring.key"
    write_key_file(path, ring)
    assert load_secret_box(path, create=False).key_ids == ring.key_ids
    assert "aibridged-secrets-v1:" in path.read_text()
