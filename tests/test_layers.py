"""The layer map of aibridged/__init__.py, enforced: a module imports only from its own layer or
layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "aibridged"

# Highest first, as in aibridged/__init__.py. A module's layer is found by its longest prefix.
LAYERS: list[tuple[str, ...]] = [
    ("cli", "admin_cli", "__main__"),
    ("daemon", "reload"),
    ("api", "proxy"),
    ("providers", "mcp", "demo"),
    ("intercept", "clients"),
    ("recorder", "dump", "auth"),
    ("store",),
    (
        "records",
        "config",
        "config_parse",
        "errors",
        "log",
        "metrics",
        "tokens",
        "sdnotify",
        "supervisor",
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


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
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


def test_modules_import_only_from_their_layer_or_below() -> None:
    violations = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if module == "__init__":
            continue
        module = module.removesuffix(".__init__")
        own = _layer(module)
        for imported in _imports(path):
            if _layer(imported) > own:
                violations.append(
                    f"{module} (layer {own}) imports {imported} (layer {_layer(imported)})"
                )
    assert violations == []


def test_the_layer_test_notices_a_violation() -> None:
    assert _layer("store.db") < _layer("api.dataplane")
    assert _layer("intercept.relay") < _layer("providers.pool")
