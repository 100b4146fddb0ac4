"""The documentation belongs to the repository: it points at nothing outside it, its links
resolve, and it lists every configuration key."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from aibridged.config import KEYS

REPO = Path(__file__).resolve().parent.parent
# How the development notes outside the repository are named; no file here may lean on them.
OUTSIDE = re.compile(r"\.\./shared|SPEC\.md|ARCHITECTURE\.md|reference/coder-ai-gateway|peers\.md")
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _tracked() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return [REPO / name for name in out.split()]


def test_nothing_in_the_repository_refers_to_files_outside_it() -> None:
    found = []
    for path in _tracked():
        if path.suffix in {".svg", ".json"} or path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        found += [f"{path.relative_to(REPO)}: {m[0]}" for m in OUTSIDE.finditer(text)]
    assert found == []


def test_relative_links_in_the_docs_resolve() -> None:
    broken = []
    for doc in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        for target in _LINK.findall(doc.read_text()):
            if "://" not in target and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(REPO)} -> {target}")
    assert broken == []


def test_the_configuration_reference_lists_every_key() -> None:
    text = (REPO / "docs" / "configuration.md").read_text()
    missing = [key.path for key in KEYS if f"`{key.path}`" not in text]
    assert missing == []
