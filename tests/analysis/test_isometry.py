"""Gradient-flow probes: block discovery, gradient norms vs a plain retain_grad loop, phi(JJ^T), figure."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikevision.analysis import block_grad_norms, block_phi, blockwise_phi, depth_comparison, residual_blocks
from spikevision.analysis.plots import plot_depth_comparison, plot_firing_rates
from spikevision.layers import TimeFolded
from spikevision.neuron import LIF


class ToyBlock(nn.Module):
    """A residual block: x + conv(LIF(x))."""

    def __init__(self, c, scale=1.0):
        super().__init__()
        self.lif = LIF(v_th=0.5)
        self.conv = TimeFolded(nn.Conv2d(c, c, 3, padding=1))
        self.shortcut = nn.Identity()
        nn.init.normal_(self.conv.module.weight, std=scale)

    def forward(self, x):
        return self.conv(self.lif(x)) + self.shortcut(x)


class ToyNet(nn.Module):
    def __init__(self, depth=3, c=3, classes=4, T=2):
        super().__init__()
        self.T = T
        self.blocks = nn.Sequential(*[ToyBlock(c) for _ in range(depth)])
        self.fc = nn.Linear(c, classes)

    def residual_blocks(self):
        return {f"blocks.{i}": b for i, b in enumerate(self.blocks)}

    def forward(self, x):  # [B, C, H, W]
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        return self.fc(self.blocks(x).mean(dim=(0, 3, 4)))


def test_residual_blocks_come_from_the_model():
    net = ToyNet()
    assert list(residual_blocks(net)) == ["blocks.0", "blocks.1", "blocks.2"]
    with pytest.raises(TypeError, match="residual_blocks"):
        residual_blocks(nn.Linear(2, 2))
    from spikevision.models import create_model

    with pytest.raises(ValueError, match="no residual block"):
        residual_blocks(create_model("spiking_cnn_mini"))  # a plain CNN: no shortcut


def test_grad_norms_match_plain_retain_grad():
    torch.manual_seed(0)
    net = ToyNet(depth=3)
    x, y = torch.randn(4, 3, 5, 5), torch.tensor([0, 1, 2, 3])
    norms = block_grad_norms(net, x, y)
    # reference: the same forward written out, with retain_grad on each block input
    h = x.unsqueeze(0).repeat(2, 1, 1, 1, 1)
    inputs = []
    for b in net.blocks:
        if h.requires_grad:
            h.retain_grad()
            inputs.append(h)
        h = b(h)
    F.cross_entropy(net.fc(h.mean(dim=(0, 3, 4))), y).backward()
    ref = [float(t.grad.norm()) for t in inputs]  # the first input is data: no gradient
    assert list(norms) == ["blocks.1", "blocks.2"]
    assert list(norms.values()) == pytest.approx(ref)
    assert all(len(b._forward_pre_hooks) == 0 for b in net.blocks)


def test_phi_exact_for_orthogonal_and_scaled_maps():
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    mean, std = block_phi(lambda x: x @ q.T, torch.randn(3, 6, dtype=torch.float64), n_vectors=5)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)
    mean, _ = block_phi(lambda x: 3 * x, torch.randn(2, 4), n_vectors=3)
    assert mean == pytest.approx(9.0)
    # a general linear map: E ||A^T v||^2 / ||v||^2 ~ ||A||_F^2 / m
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 5, dtype=torch.float64, generator=g)
    mean, _ = block_phi(lambda x: x @ a.T, torch.randn(1, 5, dtype=torch.float64), n_vectors=3000, generator=g)
    assert mean == pytest.approx(float(a.pow(2).sum() / 8), rel=0.1)


def test_blockwise_phi_residual_identity_is_one():
    net = ToyNet(depth=2)
    for b in net.blocks:
        nn.init.zeros_(b.conv.module.weight)  # branch contributes nothing: J = I
    phis = blockwise_phi(net, torch.randn(2, 3, 4, 4), n_vectors=4)
    assert list(phis) == ["blocks.0", "blocks.1"]
    for mean, std in phis.values():
        assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-6)


def test_depth_comparison_figure(tmp_path):
    data = depth_comparison((2, 4), families=("toy",), T=2, batch=4, img_size=5, num_classes=4, steps=2,
                            builder=lambda fam, d: ToyNet(depth=d))
    assert set(data["toy"]) == {2, 4} and len(data["toy"][4]) == 3
    assert all(math.isfinite(v) and v > 0 for v in data["toy"][4].values())
    fig = plot_depth_comparison(data)
    fig.savefig(tmp_path / "depth.png")
    plot_firing_rates({"a": 0.1, "b": 0.2}).savefig(tmp_path / "rates.png")
    assert (tmp_path / "depth.png").stat().st_size > 1000


def test_ms_resnet_identity_at_init_equal_norms_within_stage():
    from spikevision.models import create_model

    torch.manual_seed(0)
    model = create_model("ms_resnet20", T=2, num_classes=4)
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 3])
    norms = block_grad_norms(model, x, y)
    # every block is the identity at init (last BN gamma 0): equal norms up to each projection
    groups = [["stages.0.1", "stages.0.2", "stages.1.0"], ["stages.1.1", "stages.1.2", "stages.2.0"],
              ["stages.2.1", "stages.2.2"]]
    for g in groups:
        vals = [norms[n] for n in g]
        assert vals == pytest.approx([vals[0]] * len(vals), rel=1e-5)
    assert norms["stages.0.1"] != pytest.approx(norms["stages.1.1"], rel=1e-3)
