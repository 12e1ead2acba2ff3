"""ONNX export of a pruned CNN, checked with onnxruntime (skipped without the optional extra)."""

import warnings

import pytest
from graph_nets import all_nets

from prunekit.graph import DependencyGraph
from prunekit.graph.export import export_onnx, onnx_max_difference


def test_pruned_cnn_exports_and_matches_onnxruntime(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model, x = all_nets()["grouped"]
    graph = DependencyGraph.build(model, x)
    graph.prune({g.name: [0] for g in graph.groups if g.size > 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = export_onnx(model, x, tmp_path / "pruned.onnx")
    assert path.is_file() and not (tmp_path / "pruned.onnx.tmp").exists()
    assert onnx_max_difference(path, model, x) < 1e-4
