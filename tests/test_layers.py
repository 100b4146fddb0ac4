"""The layer map of aibridged/__init__.py, enforced: a module imports only from its own layer or
layers below it."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "aibridged"

# Highest first, as in aibridged/__init__.py. A module's layer is found by its longest prefix.
LAYERS: list[tuple[str, ...]] = [
    ("cli", "admin_cli", "remote", "__main__"),
    ("daemon", "reload", "startup", "proxyd"),
    ("api", "dashboard", "proxy"),
    ("providers", "mcp", "demo", "tracing"),
    ("intercept", "clients"),
    ("recorder", "group_commit", "retention", "dump", "auth"),
    ("store",),
    (
        "records",
        "config",
        "errors",
        "log",
        "metrics",
        "safe",
        "tokens",
        "sdnotify",
        "supervisor",
        "secretbox",
    ),
]


def _layer(module: str) -> int:
    parts = module.split(".")
    for depth in range(len(parts), 0, -1):
        prefix = ".".join(parts[:depth])
        for index, names in enumerate(LAYERS):
            if prefix in names:
                return len(LAYERS) - index
    raise AssertionError(f"module {module!r} is in no layer: add it to LAYERS and the docstring")


def _imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("aibridged.")
        ):
            found.append(node.module.removeprefix("aibridged."))
        elif isinstance(node, ast.Import):
            found += [
                a.name.removeprefix("aibridged.")
                for a in node.names
                if a.name.startswith("aibridged.")
            ]
    return found


def violations(sources: Mapping[str, str]) -> list[str]:
    """`module (layer) imports other (higher layer)` for each upward import in `sources`."""
    found = []
    for module, source in sources.items():
        own = _layer(module)
        for imported in _imports(source):
            if _layer(imported) > own:
                found.append(
                    f"{module} (layer {own}) imports {imported} (layer {_layer(imported)})"
                )
    return found


def _package_sources() -> dict[str, str]:
    sources = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if module != "__init__":
            sources[module.removesuffix(".__init__")] = path.read_text()
    return sources


def test_modules_import_only_from_their_layer_or_below() -> None:
    assert violations(_package_sources()) == []


def test_an_upward_import_is_reported() -> None:
    sources = {
        "store.db": "from aibridged.api.dataplane import DataPlane\n",
        "intercept.relay": "import aibridged.providers.pool\nfrom aibridged.errors import X\n",
        "api.dataplane": "from aibridged.intercept.relay import relay_response\n",
    }
    assert violations(sources) == [
        "store.db (layer 2) imports api.dataplane (layer 6)",
        "intercept.relay (layer 4) imports providers.pool (layer 5)",
    ]
