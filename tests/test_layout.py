"""The layout's rules, checked on the source: imports flow one way, and a render worker
imports only what renders."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

# Lowest first: a subpackage may import those before it, never one after it.
LAYERS: list[set[str]] = [
    {"core.kinds", "core.config", "core.errors", "core.metrics", "core.progress"},
    {"core.media"},
    {"core.faces"},
    {"core.engines"},
    {"core.packs"},
    {"core.render"},
    {"core.jobs", "core.storage"},
    {"core.service"},
]
# Within a layer, these may not import each other either.
SIBLINGS_APART = [{"core.jobs", "core.storage"}]


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every FaceCast module ``path`` imports, at any depth (lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _graph(package: str) -> dict[str, set[str]]:
    modules = {_module(p): p for p in (REPO / package).rglob("*.py")}
    return {name: _imports(path) & modules.keys() for name, path in modules.items()}


def _layer(module: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if any(module == top or module.startswith(top + ".") for top in layer):
            return index
    return None


def _group(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_core_imports_flow_one_way() -> None:
    upward = []
    for module, targets in _graph("core").items():
        own = _layer(module)
        if own is None:  # core/__init__ itself
            assert not targets, f"core/__init__ must stay light, imports {targets}"
            continue
        for target in targets:
            other = _layer(target)
            if other is None:
                continue
            if other > own:
                upward.append(f"{module} -> {target}")
            if other == own and _group(module) != _group(target):
                pair = {_group(module), _group(target)}
                if any(pair <= apart for apart in SIBLINGS_APART):
                    upward.append(f"{module} -> {target}")
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


@pytest.mark.parametrize("package", ["core", "bots", "facecast"])
def test_no_import_cycles(package: str) -> None:
    graph = _graph(package) if package == "core" else {**_graph("core"), **_graph(package)}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_core_never_imports_a_chat_library_or_an_adapter() -> None:
    banned = ("bots", "facecast", "telegram", "discord", "aiohttp")
    for module, path in {_module(p): p for p in (REPO / "core").rglob("*.py")}.items():
        for name in _imports(path):
            assert not name.startswith(banned), f"{module} imports {name}"


def test_adapters_never_import_each_other() -> None:
    adapters = {"bots.web", "bots.telegram_bot", "bots.discord_bot"}
    for module, targets in _graph("bots").items():
        assert not (targets & (adapters - {module})), module


def test_a_render_worker_imports_only_what_renders() -> None:
    code = (
        "import sys, core.render.tasks; "
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sqlalchemy', 'aiohttp', 'telegram', 'discord', 'asyncpg', 'prometheus_client', "
        "'scipy') or m.startswith(('core.service', 'core.storage', 'core.jobs', 'bots')))))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert run.stdout.strip() == ""


def test_every_public_name_exists() -> None:
    for path in sorted((REPO / "core").rglob("*.py")):
        module = importlib.import_module(_module(path))
        for name in getattr(module, "__all__", ()):
            assert hasattr(module, name), f"{module.__name__}.{name}"
