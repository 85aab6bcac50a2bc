"""A time-broadcast input ``u.expand(T, ...)``: frame-wise layers and TDBatchNorm2d run once, on ``u``.

The reference is the same call with :func:`use_time_broadcast` off (every step folded into the batch, as
before): outputs, input gradients and running statistics to float32 round-off, and whole training steps of
the models that meet such inputs to float64 round-off.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from spikevision.layers.norm import TDBatchNorm2d
from spikevision.layers.temporal import TimeFolded, use_time_broadcast
from spikevision.models import create_model


def _broadcast(B=4, C=6, H=5, T=3, seed=0):
    u = torch.randn(B, C, H, H, generator=torch.Generator().manual_seed(seed)).requires_grad_(True)
    return u, u.expand(T, *u.shape)


def test_a_framewise_module_runs_once_on_the_step_and_matches_the_folded_call():
    conv = TimeFolded(nn.Conv2d(6, 8, 3, stride=2, padding=1))
    seen = []
    conv.module.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    u, x = _broadcast()
    y = conv(x)
    assert seen == [(4, 6, 5, 5)] and y.shape == (3, 4, 8, 3, 3) and y.stride(0) == 0
    with use_time_broadcast(False):
        ref = conv(x)
    assert seen[-1] == (12, 6, 5, 5)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-6)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (gu,) = torch.autograd.grad((y * g).sum(), u)
    (gu_ref,) = torch.autograd.grad((ref * g).sum(), u)
    torch.testing.assert_close(gu, gu_ref, rtol=1e-5, atol=1e-6)


def test_a_module_that_draws_per_element_is_still_folded():
    drop = TimeFolded(nn.Dropout(0.5)).train()
    u, x = _broadcast()
    y = drop(x)
    assert y.stride(0) != 0 and not torch.equal(y[0], y[1])  # each step its own mask, as before


def test_a_plain_sequence_is_folded():
    conv = TimeFolded(nn.Conv2d(6, 8, 1))
    x = torch.randn(3, 4, 6, 5, 5)
    torch.testing.assert_close(conv(x), conv.module(x.flatten(0, 1)).unflatten(0, (3, 4)))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_once_matches_the_folded_batch_norm_and_its_running_statistics(momentum):
    bn = TDBatchNorm2d(6, weight_init=0.7, momentum=momentum)
    ref = copy.deepcopy(bn)
    for seed in range(3):
        u, x = _broadcast(seed=seed)
        y = bn(x)
        with use_time_broadcast(False):
            y_ref = ref(x)
        assert y.stride(0) == 0
        torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-5)
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(10 + seed))
        (gu,) = torch.autograd.grad((y * g).sum(), u)
        (gu_ref,) = torch.autograd.grad((y_ref * g).sum(), u)
        torch.testing.assert_close(gu, gu_ref, rtol=1e-5, atol=1e-5)
    # running statistics as if T * B * H * W values had been counted (unbiased factor included)
    torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(bn.running_var, ref.running_var, rtol=1e-6, atol=1e-6)
    assert int(bn.num_batches_tracked) == int(ref.num_batches_tracked) == 3


def test_eval_mode_folds_every_step_as_the_analysis_tools_count_them():
    conv = TimeFolded(nn.Conv2d(6, 8, 3, padding=1)).eval()
    seen = []
    conv.module.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    bn = TDBatchNorm2d(8).eval()
    with torch.no_grad():
        y = bn(conv(_broadcast()[1]))
    assert seen == [12] and y.stride(0) != 0


@pytest.mark.parametrize("name,kwargs", [
    ("ms_resnet_mini", dict(T=2, num_classes=10)),  # the first block's projection shortcut
    ("sresnet20", dict(T=2, in_chans=1, width=8, num_classes=10)),  # the stem conv of the direct encoding
])
def test_a_training_step_equals_the_folded_step(name, kwargs):
    torch.manual_seed(0)
    ref = create_model(name, **kwargs).train().double()
    for m in ref.modules():  # non-zero gammas everywhere, so every layer carries gradient
        if isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 0.7)
    net = copy.deepcopy(ref)
    once = []
    for m in net.modules():
        if isinstance(m, TimeFolded):
            m.module.register_forward_hook(lambda mod, args, out: once.append(args[0].shape[0] == 8))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 1, 28, 28, generator=g, dtype=torch.float64), torch.randint(0, 10, (8,), generator=g)
    with use_time_broadcast(False):
        loss_ref = nn.functional.cross_entropy(ref(x), y)
    loss = nn.functional.cross_entropy(net(x), y)
    assert any(once)  # some layer did run once
    loss_ref.backward(), loss.backward()
    assert loss.item() == pytest.approx(loss_ref.item(), rel=1e-12)
    for (pname, p), q in zip(ref.named_parameters(), net.parameters()):
        if p.grad is not None:
            scale = p.grad.abs().max().item()
            assert (p.grad - q.grad).abs().max().item() <= 1e-10 * max(scale, 1e-12), pname
    for (bname, a), b in zip(ref.named_buffers(), net.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=bname)
