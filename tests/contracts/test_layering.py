"""prunekit's layers: a module imports only from its own layer or below, and no modules import each other in a
circle (imports inside functions count; `if TYPE_CHECKING:` imports, which never run, do not)."""

from pathlib import Path

import prunekit

from .import_graph import cycles, import_edges, layer_violations

# lowest first; a sub-package (or top-level module) may import its own layer and those before it
LAYERS = [
    ["errors", "registry", "utils", "core"],  # base vocabulary: errors, registries, typed options, masks, memory
    ["data", "graph", "calib", "importance"],  # corpora, the dependency graph, statistics, criteria
    ["models", "evaluate", "io", "train"],  # loading and adapters, measurement, saving, the training engine
    ["allocate", "runtime", "context"],  # allocators, inference-time presses, text pruners
    ["prune"],  # one-shot and structured pruning
    ["recover"],  # recovery training and the methods that prune while training
    ["methods"],  # the method catalogue
    ["recipe", "pipeline", "testing"],  # recipes and running them
    ["api", "cli", "__init__"],  # the public surface
]
ROOT = Path(prunekit.__file__).parent


def test_prunekit_respects_its_layers_and_has_no_import_circle():
    edges = import_edges(ROOT)
    assert layer_violations(edges, LAYERS, "prunekit") == []
    assert cycles(edges) == []


def test_the_check_catches_an_upward_import_and_a_circle(tmp_path):
    package = tmp_path / "pkg"
    for sub in ("low", "high"):
        (package / sub).mkdir(parents=True)
        (package / sub / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "high" / "b.py").write_text("from ..low import a\n")
    (package / "low" / "a.py").write_text("def f():\n    from ..high.b import g  # inside a function: still counts\n")
    (package / "low" / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                              "    from ..high import b\n")
    edges = import_edges(package)
    assert layer_violations(edges, [["low"], ["high"]], "pkg") == ["pkg.low.a (layer 0) imports pkg.high.b (layer 1)"]
    assert cycles(edges) == [["pkg.high.b", "pkg.low.a"]]
    assert edges["pkg.low.typed"] == set()  # type-checking imports never run


def test_no_function_is_longer_than_sixty_lines():
    import ast

    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in sorted(ROOT.rglob("*.py")) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60]
    assert long == []
