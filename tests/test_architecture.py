"""The layers of ARCHITECTURE.md, read from the source with ``ast``: imports go one way, only the
Dagster layer imports dagster, modules never import each other in a circle, and only the settings
modules read or write the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYER = {"recsys_runtime": 0, "recsys_registry": 0, "recsys_training": 1, "recsys_service": 1, "recsys_delivery": 1,
         "recsys_assets": 2}
SETTINGS_MODULES = {"recsys_service.settings", "recsys_assets.settings"}


def _modules() -> dict[str, ast.Module]:
    found = {}
    for package in LAYER:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = ast.parse(path.read_text(), filename=str(path))
    return found


MODULES = _modules()


def _imports(name: str, tree: ast.Module) -> set[str]:
    """Every module ``name`` imports, at the top or inside a function (both are dependencies)."""
    package = name if _is_package(name) else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return out


def _is_package(name: str) -> bool:
    return (ROOT / name.replace(".", "/") / "__init__.py").exists()


def _local(imported: str) -> str | None:
    """The project module an import refers to (its longest known prefix), or None."""
    parts = imported.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


GRAPH = {name: {m for m in map(_local, _imports(name, tree)) if m and m != name} for name, tree in MODULES.items()}


def test_every_layer_is_present() -> None:
    assert {name.split(".")[0] for name in MODULES} == set(LAYER)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers(name: str) -> None:
    package = name.split(".")[0]
    upward = sorted(m for m in GRAPH[name] if m.split(".")[0] != package
                    and LAYER[m.split(".")[0]] >= LAYER[package])
    assert not upward, f"{name} imports {upward}: a layer imports only the layers below it"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.startswith("recsys_assets")))
def test_only_the_dagster_layer_imports_dagster(name: str) -> None:
    dagster = sorted(i for i in _imports(name, MODULES[name]) if i.split(".")[0].startswith("dagster"))
    assert not dagster, f"{name} imports {dagster}"


def test_no_import_cycles() -> None:
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    # a package's __init__ importing its own modules is not a cycle worth failing on
    cycles = [c for c in cycles if not all(m == c[0] or m.startswith(c[0] + ".") for m in c)]
    assert not cycles, f"modules import each other in a circle: {cycles}"


def _environment_uses(tree: ast.Module) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv", "unsetenv"):
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(alias.name in ("environ", "getenv", "putenv") for alias in node.names):
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n not in SETTINGS_MODULES))
def test_only_settings_modules_touch_the_environment(name: str) -> None:
    lines = _environment_uses(MODULES[name])
    assert not lines, f"{name} reads or writes os.environ at lines {lines}: go through a settings module"


def test_the_checks_see_a_violation(tmp_path) -> None:
    """The cycle and layer checks work on a graph that breaks them."""
    tree = ast.parse("import os\nfrom recsys_assets import settings\nx = os.environ.get('A')\n")
    assert _environment_uses(tree) == [3]
    assert "recsys_assets" in {m.split(".")[0] for m in map(_local, _imports("recsys_runtime.bundle", tree)) if m}
