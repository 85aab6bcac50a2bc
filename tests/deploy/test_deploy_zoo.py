"""BN folding and the integer engine on one zoo model of every family (randomised BN, as after training)."""

from __future__ import annotations

import pytest
import torch

from deploy_nets import randomize_bn
from spikevision.deploy.engine import compile_integer
from spikevision.deploy.engine.fold import fold_bn
from spikevision.models import create_model
from test_fold import _compare

# (name, kwargs, per-sample input): small inputs keep the CPU time low; T = 2 everywhere
ZOO = [
    ("spiking_cnn_mini", {}, (1, 28, 28)),
    ("mlp_spe_mini", {"dim": 12}, (1, 28, 28)),
    ("ms_resnet20", {}, (3, 16, 16)),
    ("spiking_resnet20", {}, (3, 16, 16)),
    ("gac_ms_resnet18_cifar", {}, (3, 16, 16)),
    ("sresnet20", {"width": 8}, (3, 16, 16)),
]


def _model(name, kwargs, seed):
    torch.manual_seed(seed)
    return randomize_bn(create_model(name, T=2, num_classes=10, **kwargs), seed=seed, gamma=(0.8, 1.6))


@pytest.mark.parametrize("name,kwargs,shape", ZOO, ids=[z[0] for z in ZOO])
def test_folded_model_equals_float_model(name, kwargs, shape):
    model = _model(name, kwargs, 0)
    x = torch.rand(4, *shape)
    folded, pairs = fold_bn(model, x[:1])
    assert pairs, f"{name}: no BN was folded"
    _compare(model, folded, x, atol=1e-3)  # spikes may flip only where a membrane sits at the threshold


@pytest.mark.parametrize("name,kwargs,shape", ZOO, ids=[z[0] for z in ZOO])
def test_integer_engine_agrees_with_float_model(name, kwargs, shape):
    """Untrained deep nets on random images have many membranes at a threshold, where int16 rounding
    flips a spike and the flip propagates; so: logits close on the logit scale, and the same class
    wherever the float model's top-2 margin is clear. (Exact agreement on trained weights: the
    quickstart, 99.96% of the 10,000 Fashion-MNIST test images, docs/deploy.md; toy nets in
    test_int_engine.py.)"""
    model = _model(name, kwargs, 1)
    x = torch.rand(16, *shape)
    im = compile_integer(model, x[:1])
    with torch.no_grad():
        ref, out = model(x), im(x).float()
    assert out.shape == ref.shape
    scale = ref.abs().max()
    assert (out - ref).abs().max() < 0.2 * scale
    top2 = ref.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.1 * scale
    assert torch.equal(out.argmax(-1)[clear], ref.argmax(-1)[clear])
