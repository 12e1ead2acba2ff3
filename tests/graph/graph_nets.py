"""Tiny random networks covering each coupling the dependency graph must find."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _randomise_norms(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so a wrong channel would change the outputs."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


class Residual(nn.Module):
    """Two residual blocks sharing one channel group (stem, block1, block2 outputs are added)."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.a1, self.b1 = nn.Conv2d(8, 6, 3, padding=1), nn.Conv2d(6, 8, 3, padding=1)
        self.a2, self.b2 = nn.Conv2d(8, 6, 1), nn.Conv2d(6, 8, 1)
        self.head = nn.Linear(8 * 4 * 4, 5)  # flatten of (C, H, W): each channel owns 16 features

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = x + self.b1(F.relu(self.a1(x)))
        x = x + self.b2(F.relu(self.a2(x)))
        return self.head(F.adaptive_avg_pool2d(x, 4).flatten(1))


class Concat(nn.Module):
    """Concatenation and chunk: the consumer sees [left | right] channels."""

    def __init__(self):
        super().__init__()
        self.left, self.right = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 6, 1)
        self.mix = nn.Conv2d(10, 8, 1)
        self.out = nn.Conv2d(4, 5, 1)

    def forward(self, x):
        y = torch.cat([F.relu(self.left(x)), torch.sigmoid(self.right(x))], dim=1)
        a, b = self.mix(y).chunk(2, dim=1)
        return self.out(a * torch.tanh(b)).mean((2, 3))


class Grouped(nn.Module):
    """Grouped conv (groups=2) and depthwise convs (multiplier 1 and 2) with BatchNorm; GroupNorm optional
    (its statistics run over channels, so masking and slicing differ when it is present)."""

    def __init__(self, group_norm: bool = False):
        super().__init__()
        self.c1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.group = nn.Conv2d(8, 12, 3, padding=1, groups=2)
        self.bn2 = nn.BatchNorm2d(12)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.dw2 = nn.Conv2d(12, 24, 3, padding=1, groups=12)
        self.gn = nn.GroupNorm(4, 24) if group_norm else nn.BatchNorm2d(24)
        self.pw = nn.Conv2d(24, 5, 1)

    def forward(self, x):
        x = F.relu(self.bn1(self.c1(x)))
        x = F.relu6(self.bn2(self.group(x)))
        x = self.dw2(self.dw(x) + x)
        return self.pw(F.silu(self.gn(x))).amax((2, 3))


class Sequence1d(nn.Module):
    """Conv1d + BatchNorm1d with a GLU-style gate and a residual, read by a Linear over channels."""

    def __init__(self):
        super().__init__()
        self.inp, self.bn = nn.Conv1d(3, 8, 3, padding=1), nn.BatchNorm1d(8)
        self.gate, self.up, self.down = nn.Conv1d(8, 12, 1), nn.Conv1d(8, 12, 1), nn.Conv1d(12, 8, 1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        h = F.relu(self.bn(self.inp(x.flatten(2))))  # (B, C, L)
        h = h + self.down(F.silu(self.gate(h)) * self.up(h))
        return self.head(h.transpose(1, 2)).mean(1)


class GQAAttention(nn.Module):
    """A self-written GQA attention, for the handler-registration test."""

    def __init__(self, dim=16, heads=4, kv=2):
        super().__init__()
        self.q, self.k = nn.Linear(dim, dim), nn.Linear(dim, dim // heads * kv)
        self.heads, self.kv = heads, kv

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q(x).view(b, t, self.heads, -1).transpose(1, 2)
        k = self.k(x).view(b, t, self.kv, -1).transpose(1, 2).repeat_interleave(self.heads // self.kv, 1)
        return (q @ k.transpose(-1, -2)).softmax(-1).mean(1) @ x


def all_nets() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    nets = {name: (_randomise_norms(cls()), x) for name, cls in
            (("residual", Residual), ("concat", Concat), ("grouped", Grouped), ("conv1d_glu", Sequence1d))}
    return nets
