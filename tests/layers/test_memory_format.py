"""Channels-last training (:func:`to_channels_last`): the same step as NCHW, every map NHWC, no conversion.

The reference is the same network in the default (NCHW) format: loss and every parameter gradient to float32
round-off. A hook on every neuron checks the maps really are channels-last all the way through (one NCHW layer
would mean a conversion, forward and backward).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from spikevision.layers.memory_format import to_channels_last
from spikevision.layers.temporal import fold
from spikevision.models import create_model
from spikevision.neuron import LIF

CASES = {
    "ms_resnet_mini": dict(T=2, num_classes=10, in_chans=1),
    "spiking_cnn_mini": dict(T=2),
    "gac_ms_resnet_mini": dict(T=2, num_classes=10, in_chans=1),
}
# GAC's encoder neuron sees the stem's membrane directly: in float32 the two formats' round-off moves a few
# membranes across the rectangular surrogate's window edge (1-2% of the stem's gradient); in float64 the steps
# agree to 1e-15, so it is compared there.
DTYPES = {"gac_ms_resnet_mini": torch.float64}


def _step(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    return loss.item()


def _channels_last_steps(t: torch.Tensor) -> bool:
    return t[0].is_contiguous(memory_format=torch.channels_last) and not t[0].is_contiguous()


@pytest.mark.parametrize("name", list(CASES))
def test_training_step_equals_the_nchw_step_and_every_map_is_channels_last(name):
    torch.manual_seed(0)
    dtype = DTYPES.get(name, torch.float32)
    ref = create_model(name, **CASES[name]).train().to(dtype)
    for m in ref.modules():  # non-zero gammas everywhere, so every layer carries gradient
        if isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 0.7)
    net = to_channels_last(copy.deepcopy(ref))
    assert to_channels_last(net) is net  # idempotent
    seen = []
    for m in net.modules():
        if isinstance(m, LIF):
            m.register_forward_hook(lambda mod, args, out: seen.append(_channels_last_steps(args[0])))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 1, 28, 28, generator=g, dtype=dtype), torch.randint(0, 10, (8,), generator=g)
    loss_ref, loss = _step(ref, x, y), _step(net, x, y)
    assert seen and all(seen), seen
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    for (pname, p), q in zip(ref.named_parameters(), net.parameters()):
        if p.dim() == 4:
            assert q.is_contiguous(memory_format=torch.channels_last), pname
            assert q.grad.is_contiguous(memory_format=torch.channels_last), pname
        scale = p.grad.abs().max().item()
        assert (p.grad - q.grad).abs().max().item() <= 1e-4 * max(scale, 1e-6), pname
    assert net.state_dict().keys() == ref.state_dict().keys()
    fresh = create_model(name, **CASES[name])
    fresh.load_state_dict(net.state_dict())  # the values load into an NCHW model as usual


def test_fold_of_a_broadcast_channels_last_sequence_stays_channels_last():
    u = torch.randn(3, 4, 5, 6).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    folded = fold(u.expand(2, *u.shape))
    assert folded.shape == (6, 4, 5, 6) and folded.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(folded[:3], u.detach()) and torch.equal(folded[3:], u.detach())
    g = torch.randn(folded.shape, generator=torch.Generator().manual_seed(2))
    (gu,) = torch.autograd.grad((folded * g).sum(), u)
    torch.testing.assert_close(gu, g[:3] + g[3:], rtol=0, atol=1e-6)
    plain = torch.randn(2, 3, 4, 5, 6)
    assert fold(plain)._base is plain  # a contiguous sequence still folds to a view
