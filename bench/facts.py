"""What was measured and where: the machine, the tools, and the state of the code."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("aibridged", "trio", "hypercorn", "httpx2", "httpcore2", "h11", "structlog")


def _first_line_value(path: str, prefix: str) -> str | None:
    try:
        with open(path) as file:
            for line in file:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return None
    return out.stdout.rstrip() if out.returncode == 0 else None


def source_state(repo: Path) -> dict[str, Any]:
    """What code is measured: the commit, the uncommitted changes, and a hash of the package's
    files as they are on disk (the tree may change while others work in it)."""
    digest = hashlib.sha256()
    package = repo / "aibridged"
    for path in sorted(package.rglob("*")):
        if path.suffix in (".py", ".sql") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes())
    dirty = _git("status", "--porcelain") or ""
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "uncommitted": dirty.splitlines(),
        "aibridged_sha256": digest.hexdigest(),
    }


def machine_facts(tools: dict[str, str | None]) -> dict[str, Any]:
    mem_total = _first_line_value("/proc/meminfo", "MemTotal")
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _first_line_value("/proc/cpuinfo", "model name") or platform.processor(),
        "ram_mib": int(mem_total.split()[0]) // 1024 if mem_total else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "tools": tools,
    }
