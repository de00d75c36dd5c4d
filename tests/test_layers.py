"""The package's layers, read from the source: which part may import which, and no circles.

``explorer`` is built in layers, each importing only those below it (README, "Layout"):

0. ``errors``, ``validation`` — the one exception type and argument checks
1. ``attacks/`` — the core: every attack, its maths (losses, prox), registry
2. ``metrics``, ``targets`` — evaluation and target maps
3. ``data/`` — datasets, splits, samples, worlds, file decoding, benchmark image sources
4. ``models/`` — registry, wrapper, loaders, architectures, shipped weights
5. ``live/`` — the framework-free engine of the app and the notebooks
6. ``ui``, ``bench/``, ``tools/`` — the tops; they do not import each other

These tests read every module with :mod:`ast` (no import is executed), so they also see
imports hidden inside functions — there should be none of the package's own modules.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "explorer"

#: (prefix, layer, part) — the first matching prefix names a module's layer
LAYERS: List[Tuple[str, int, str]] = [
    ("explorer.errors", 0, "base"), ("explorer.validation", 0, "base"),
    ("explorer.attacks", 1, "attacks"),
    ("explorer.metrics", 2, "evaluation"), ("explorer.targets", 2, "evaluation"),
    ("explorer.data", 3, "data"),
    ("explorer.models", 4, "models"),
    ("explorer.live", 5, "live"),
    ("explorer.ui", 6, "ui"), ("explorer.bench", 6, "bench"), ("explorer.tools", 6, "tools"),
]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> Tuple[int, str]:
    for prefix, layer, part in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer, part
    if module == "explorer":
        return 7, "package"
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS (and to the README's Layout)")


def own_imports(path: Path, root: Path = PACKAGE) -> List[Tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import of the package in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        own = isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "explorer"
        if own:
            for alias in node.names:  # `from explorer.live import render` imports the module explorer.live.render
                candidate = f"{node.module}.{alias.name}"
                is_module = (root.parent / Path(*candidate.split("."))).with_suffix(".py").exists() or \
                    (root.parent / Path(*candidate.split("."))).is_dir()
                found.append((candidate if is_module else node.module, node.lineno, id(node) in top))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "explorer":
                    found.append((alias.name, node.lineno, id(node) in top))
    return found


def modules(root: Path = PACKAGE) -> Dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def layer_violations(root: Path = PACKAGE) -> List[str]:
    """Every import that runs up the layers or sideways between the tops, and every
    function-local import of the package's own modules."""
    problems = []
    for name, path in modules(root).items():
        own_layer, own_part = layer_of(name)
        for imported, line, at_top in own_imports(path, root):
            where = f"{path.relative_to(root.parent)}:{line}"
            if not at_top:
                problems.append(f"{where}: {imported} imported inside a function (import it at the top)")
            if imported == "explorer" or name == "explorer":
                continue
            layer, part = layer_of(imported)
            if layer > own_layer:
                problems.append(f"{where}: {own_part} (layer {own_layer}) imports {imported} (layer {layer})")
            elif layer == own_layer == 6 and part != own_part:
                problems.append(f"{where}: {own_part} imports {imported}: the tops do not import each other")
    return problems


def import_cycles(root: Path = PACKAGE) -> List[List[str]]:
    """Circles in the graph of imports between the package's modules (those inside
    functions included: they only postpone a circle to the first call)."""
    mods = modules(root)
    graph: Dict[str, Set[str]] = {}
    for name, path in mods.items():
        targets = set()
        for imported, _, _ in own_imports(path, root):
            while imported not in mods and "." in imported:
                imported = imported.rsplit(".", 1)[0]
            if imported in mods and imported != name and not name.startswith(imported + "."):
                targets.add(imported)  # a package's __init__ re-exporting its modules is not a circle
        graph[name] = targets
    cycles, state = [], {}

    def visit(node: str, stack: List[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return cycles


def test_imports_go_down_the_layers_only():
    problems = layer_violations()
    assert not problems, "\n".join(problems)


def test_no_import_circles():
    cycles = import_cycles()
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("library, allowed", [
    ("gradio", {"explorer.ui"}),
    ("matplotlib", {"explorer.bench", "explorer.data.worlds.figures", "explorer.live.render"}),
])
def test_only_the_tops_import_front_end_libraries(library, allowed):
    users = set()
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == library for n in names):
                users.add(name)
    assert all(any(u == a or u.startswith(a + ".") for a in allowed) for u in users), sorted(users)


def test_the_layer_rules_can_fail(tmp_path):
    """The checks above would see a violation: a miniature package with a circle, an import
    up the layers and an import hidden in a function."""
    root = tmp_path / "explorer"
    (root / "attacks").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "attacks" / "__init__.py").write_text("from explorer.live import x\n")
    (root / "live").mkdir()
    (root / "live" / "__init__.py").write_text("")
    (root / "live" / "x.py").write_text("import explorer.live.y\n\ndef f():\n    from explorer.attacks import z\n")
    (root / "live" / "y.py").write_text("import explorer.live.x\n")
    problems = layer_violations(root)
    assert any("attacks (layer 1) imports explorer.live.x" in p for p in problems)
    assert any("inside a function" in p for p in problems)
    assert ["explorer.live.x", "explorer.live.y", "explorer.live.x"] in import_cycles(root)
