"""The import graph of a package, read from its source: every import (module level or inside a function) except
those under `if TYPE_CHECKING:`, which never run. Used by the layering test."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path


def module_names(root: Path) -> dict[str, Path]:
    """{dotted module name: file} for the package whose folder is `root`."""
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _targets(module: str, is_package: bool, node: ast.AST, known: dict[str, Path]) -> Iterable[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]


def import_edges(root: Path) -> dict[str, set[str]]:
    """{module: modules of the same package it imports}."""
    known = module_names(root)
    edges: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in skip:
                for target in _targets(module, path.name == "__init__.py", node, known):
                    while target and target not in known:  # `import a.b.c` of a package attribute
                        target = target.rpartition(".")[0]
                    if target in known and target != module:
                        edges[module].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer_violations(edges: dict[str, set[str]], layers: list[list[str]], package: str) -> list[str]:
    """Imports from a lower layer of sub-packages (or top-level modules) into a higher one."""
    level = {name: i for i, names in enumerate(layers) for name in names}

    def layer_of(module: str) -> int:
        part = module.split(".")[1] if "." in module else "__init__"
        if part not in level:
            raise KeyError(f"{module}: '{part}' is in no layer of {package}")
        return level[part]

    return sorted(f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
                  for a, targets in edges.items() for b in targets if layer_of(b) > layer_of(a))
