"""The import graph flows one way: no cycles (module- or function-level imports alike), the
samplers package imports nothing of gnnsys, and the storage/feature/loader layers import neither
the models nor training."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOWER = ("gnnsys.data", "gnnsys.features", "gnnsys.loader")
UPPER = ("gnnsys.models", "gnnsys.train", "gnnsys.cli", "gnnsys.launch")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in ("gnnsys", "samplers"):
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = path
    return mods


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Every project module ``name`` imports, wherever the import statement is."""
    found = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                       for a in node.names]
        for target in targets:
            owner = _owner(target, mods)
            if owner and owner != name:
                found.add(owner)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), ignoring a package's
    imports of its own submodules (a package re-exporting its children is not a cycle)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w.startswith(v + "."):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles(graph):
    assert _cycles(graph) == []


def test_cycle_finder_sees_function_level_imports():
    # The checker itself can fail: two modules importing each other inside functions are a cycle.
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_samplers_import_no_gnnsys(graph):
    bad = {m: sorted(d for d in deps if d.startswith("gnnsys"))
           for m, deps in graph.items() if m.startswith("samplers")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_lower_layers_import_no_models_or_training(graph):
    bad = {m: sorted(d for d in deps if d.startswith(UPPER))
           for m, deps in graph.items() if m.startswith(LOWER)}
    assert {m: d for m, d in bad.items() if d} == {}
