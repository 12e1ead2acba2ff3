"""Dependency graph on small CNNs: groups, masking == slicing, exact counts, handler registration, errors."""

import copy

import pytest
import torch
from graph_nets import GQAAttention, Grouped, all_nets
from torch import nn

from prunekit.graph import DependencyGraph, LayerHandler, StaleGraph, UnsupportedOperation, register_handler
from prunekit.graph.plan import apply_plan, plan_entries

NETS = all_nets()


def some_units(graph: DependencyGraph) -> dict[str, list[int]]:
    """Every third unit of every group (never all of them)."""
    return {g.name: list(range(0, g.size, 3))[: g.size - 1] for g in graph.groups if g.size > 1}


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(NETS))
def test_masking_and_slicing_give_the_same_outputs(name):
    model, x = NETS[name]
    graph = DependencyGraph.build(model, x)
    selection = some_units(graph)
    assert selection, "every test net has prunable groups"
    masked, sliced = copy.deepcopy(model), copy.deepcopy(model)
    DependencyGraph.build(masked, x).mask(selection)
    pruned_graph = DependencyGraph.build(sliced, x)
    expected = pruned_graph.estimate(selection)
    pruned_graph.prune(selection)
    with torch.no_grad():
        torch.testing.assert_close(sliced(x), masked(x), atol=1e-5, rtol=0)
        assert not torch.allclose(model(x), masked(x), atol=1e-3)  # the selection mattered
    assert params(sliced) == expected["params"] < params(model)
    assert DependencyGraph.build(sliced, x).estimate({})["macs"] == expected["macs"]


def test_residual_blocks_share_one_group_and_flatten_keeps_channel_blocks():
    model, x = NETS["residual"]
    graph = DependencyGraph.build(model, x)
    sizes = {g.name: g.size for g in graph.groups}
    assert sizes == {"stem:out": 8, "a1:out": 6, "a2:out": 6}
    assert set(graph.group("stem:out").modules) == {"stem", "bn", "b1", "b2", "a1", "a2", "head"}
    pruned = copy.deepcopy(model)
    DependencyGraph.build(pruned, x).prune({"stem:out": [0, 5]})
    assert pruned.head.in_features == 6 * 16 and pruned.b1.out_channels == pruned.b2.out_channels == 6
    assert graph.frozen == {"stem:in": "model input", "head:out": "model output"}


def test_concat_and_chunk_couple_the_right_channels():
    model, x = NETS["concat"]
    graph = DependencyGraph.build(model, x)
    sizes = {g.name: g.size for g in graph.groups}
    assert sizes == {"left:out": 10, "mix:out": 4}  # one space [left | right]; chunk(2) pairs i with i + 4
    pruned = copy.deepcopy(model)
    DependencyGraph.build(pruned, x).prune({"left:out": [5], "mix:out": [0, 3]})
    assert pruned.mix.in_channels == 9 and pruned.mix.out_channels == 4 and pruned.out.in_channels == 2


def test_grouped_and_depthwise_convs_keep_valid_group_layouts():
    x = NETS["grouped"][1]
    model = Grouped(group_norm=True).eval()
    graph = DependencyGraph.build(model, x)
    pruned = copy.deepcopy(model)
    DependencyGraph.build(pruned, x).prune(some_units(graph))
    for conv in (pruned.group, pruned.dw, pruned.dw2):
        assert conv.in_channels % conv.groups == 0 and conv.out_channels % conv.groups == 0
    assert pruned.dw.groups == pruned.dw.in_channels == pruned.dw.out_channels
    assert pruned.dw2.out_channels == 2 * pruned.dw2.groups
    assert pruned.group.groups == 2 and pruned.gn.num_channels % pruned.gn.num_groups == 0
    pruned(x)


def test_plan_replays_on_a_fresh_copy():
    model, x = NETS["residual"]
    graph = DependencyGraph.build(copy.deepcopy(model), x)
    selection = some_units(graph)
    plan = plan_entries(graph, selection)
    first, second = copy.deepcopy(model), copy.deepcopy(model)
    DependencyGraph.build(first, x).prune(selection)
    apply_plan(second, plan, x)
    torch.testing.assert_close(first(x), second(x))
    with pytest.raises(ValueError, match="example_inputs"):
        apply_plan(copy.deepcopy(model), plan)


def test_bad_selections_and_stale_graphs_raise():
    model, x = NETS["residual"]
    graph = DependencyGraph.build(copy.deepcopy(model), x)
    with pytest.raises(ValueError, match="keep at least one"):
        graph.prune({"stem:out": list(range(8))})
    with pytest.raises(ValueError, match=r"must be in \[0, 6\)"):
        graph.prune({"a1:out": [6]})
    with pytest.raises(Exception, match="Unknown group 'a3:out'.*a1:out"):
        graph.prune({"a3:out": [0]})
    graph.prune({"a1:out": [0]})
    with pytest.raises(StaleGraph):
        graph.prune({"a1:out": [1]})


class Scale(nn.Module):
    """A per-channel scale that prunekit does not know."""

    def __init__(self, channels: int):
        super().__init__()
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, channels))

    def forward(self, x):
        return x * self.gain.view(1, -1, 1, 1)


class ScaleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.scale, self.out = nn.Conv2d(3, 6, 1), Scale(6), nn.Conv2d(6, 2, 1)

    def forward(self, x):
        return self.out(self.scale(self.conv(x)))


def test_unknown_module_with_parameters_names_itself_and_the_fix():
    x = torch.randn(1, 3, 4, 4)
    with pytest.raises(UnsupportedOperation, match=r"'scale' \(Scale\).*register_handler\(Scale"):
        DependencyGraph.build(ScaleNet(), x)


def test_unknown_operation_raises_with_the_module_name():
    model = nn.Sequential(nn.Linear(16, 16), GQAAttention())
    with pytest.raises(UnsupportedOperation, match=r"'matmul'.*module '1' \(GQAAttention\).*register_handler"):
        DependencyGraph.build(model, torch.randn(1, 5, 16))


class Fourier(nn.Module):
    def forward(self, x):
        return torch.fft.rfft(x, dim=-1).abs()


def test_an_op_without_a_rule_raises():
    with pytest.raises(UnsupportedOperation, match="'fft_rfft'.*not known"):
        DependencyGraph.build(nn.Sequential(nn.Linear(4, 8), Fourier()), torch.randn(2, 4))


class ScaleHandler(LayerHandler):
    """Declarative: one tensor dim follows the channels; slicing and counting come for free."""

    in_dim = out_dim = 1
    coupled = True

    def get_out_channels(self, module):
        return module.gain.numel()

    def param_dims(self, module):
        return {"out": [("gain", 0, None)]}


class Shift(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.offset = nn.Parameter(torch.arange(channels, dtype=torch.float32))

    def forward(self, x):
        return x + self.offset.view(1, -1, 1, 1)


class ShiftHandler(LayerHandler):
    """Torch-Pruning style: explicit prune functions."""

    in_dim = out_dim = 1
    coupled = True

    def get_out_channels(self, module):
        return module.offset.numel()

    def prune_out_channels(self, module, idxs):
        keep = [i for i in range(module.offset.numel()) if i not in set(idxs)]
        module.offset = nn.Parameter(module.offset.data[keep])

    prune_in_channels = prune_out_channels


def test_registered_handlers_make_new_layers_prunable():
    register_handler(Scale, ScaleHandler(), replace=True)
    register_handler(Shift, ShiftHandler(), replace=True)
    model = nn.Sequential(nn.Conv2d(3, 6, 1), Scale(6), Shift(6), nn.ReLU(), nn.Conv2d(6, 2, 1)).eval()
    x = torch.randn(1, 3, 4, 4)
    graph = DependencyGraph.build(model, x)
    assert [(g.name, g.size) for g in graph.groups] == [("0:out", 6)]
    reference = copy.deepcopy(model)
    graph.prune({"0:out": [1, 4]})
    assert model[1].gain.tolist() == pytest.approx([0.5, 0.9, 1.1, 1.5])
    assert model[2].offset.tolist() == [0.0, 2.0, 3.0, 5.0]
    assert model(x).shape == (1, 2, 4, 4) and reference(x).shape == (1, 2, 4, 4)


def test_literal_slices_freeze_their_channels_with_a_reason():
    class Picks(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(3, 2)

        def forward(self, x):
            return self.b(self.a(x)[:, :3])

    graph = DependencyGraph.build(Picks(), torch.randn(2, 4))
    assert graph.groups == [] and "sliced with bounds fixed in code" in graph.frozen["a:out"]

    class Writes(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            out = torch.zeros(x.shape[0], 8)
            out[:, :] = self.a(x)
            return self.b(out)

    graph = DependencyGraph.build(Writes(), torch.randn(2, 4))
    assert graph.groups == [] and "written into by index" in graph.frozen["a:out"]
