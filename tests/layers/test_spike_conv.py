"""The event-driven spike convolution against autograd of the naive convolution, its fallbacks and switch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikevision.layers import spike_conv
from spikevision.layers.spike_conv import SpikeConv2d, pack_spikes, spike_conv2d, use_spike_conv
from spikevision.models import create_model

pytestmark = pytest.mark.skipif(not spike_conv.spike_conv_available(), reason="no C compiler for the spike conv")


def _naive(x: torch.Tensor, w: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """The convolution as unfold + matmul, in float64: the reference, differentiated by autograd."""
    N, _, H, W = x.shape
    Cout, _, kh, kw = w.shape
    cols = F.unfold(x.double(), (kh, kw), padding=padding, stride=stride)  # [N, Cin*kh*kw, Lo]
    Ho, Wo = (H + 2 * padding - kh) // stride + 1, (W + 2 * padding - kw) // stride + 1
    return (w.double().reshape(Cout, -1) @ cols).reshape(N, Cout, Ho, Wo)


def _grads(fn, x: torch.Tensor, w: torch.Tensor, gy: torch.Tensor | None = None):
    x, w = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    y = fn(x, w)
    gy = torch.randn_like(y, generator=torch.Generator().manual_seed(1)) if gy is None else gy
    y.backward(gy.to(y.dtype))
    return y, x.grad, w.grad, gy


def _is_event_driven(y: torch.Tensor) -> bool:
    return type(y.grad_fn).__name__.startswith("_SpikeConvFunction")


def _check(x: torch.Tensor, w: torch.Tensor, stride: int, padding: int) -> None:
    y, gx, gw, gy = _grads(lambda a, b: spike_conv2d(a, b, (stride, stride), (padding, padding)), x, w)
    assert _is_event_driven(y)
    ry, rgx, rgw, _ = _grads(lambda a, b: _naive(a, b, stride, padding), x, w, gy.double())
    for got, ref in ((y, ry), (gx, rgx), (gw, rgw), (y, F.conv2d(x, w, None, stride, padding))):
        _assert_round_off(got, ref)


def _assert_round_off(got: torch.Tensor, ref: torch.Tensor) -> None:
    """Equal to float32 round-off of sums: the largest error within 2e-5 of the largest magnitude."""
    assert got.dtype == torch.float32 and got.shape == ref.shape
    err, scale = (got.double() - ref.double()).abs().max().item(), ref.double().abs().max().item()
    assert err <= 2e-5 * max(scale, 1e-3), (err, scale)


@pytest.mark.parametrize("k,stride,padding", [(3, 1, 1), (3, 2, 1), (3, 1, 0), (3, 2, 0), (1, 1, 0), (1, 2, 0)])
@pytest.mark.parametrize("N,Cin,H,W,Cout", [(2, 3, 7, 9, 5), (3, 20, 11, 10, 16), (2, 40, 9, 13, 72),
                                             (1, 16, 8, 71, 8)])
def test_forward_and_gradients_match_the_naive_convolution(N, Cin, H, W, Cout, k, stride, padding):
    g = torch.Generator().manual_seed(N * 1000 + Cin + H + W + Cout + k + stride + padding)
    x = (torch.rand(N, Cin, H, W, generator=g) < 0.25).float()
    w = torch.randn(Cout, Cin, k, k, generator=g)
    _check(x, w, stride, padding)


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_all_zeros_and_all_ones(fill):
    x = torch.full((2, 5, 9, 9), fill)
    w = torch.randn(12, 5, 3, 3, generator=torch.Generator().manual_seed(0))
    for stride in (1, 2):
        _check(x, w, stride, 1)


def test_two_threads_give_the_one_thread_result():
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(32, 16, 16, 16, generator=g) < 0.2).float()  # above the size that splits over threads
    w = torch.randn(24, 16, 3, 3, generator=g)
    one = _grads(lambda a, b: spike_conv2d(a, b, (2, 2), (1, 1)), x, w)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = _grads(lambda a, b: spike_conv2d(a, b, (2, 2), (1, 1)), x, w, one[3])
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(one[:3], two[:3]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("N,Cin,size,Cout,stride", [(4, 129, 16, 64, 1), (10, 96, 16, 60, 2)])
def test_two_threads_splitting_input_channels_match_the_naive_convolution(N, Cin, size, Cout, stride,
                                                                           channels_last):
    """Few samples, many channels (dL/dY smaller than dW): the threads split the input channels of the weight
    gradient (ragged: 129 = 65 + 64), each writing its rows of one dW."""
    g = torch.Generator().manual_seed(N + Cin + stride)
    x = (torch.rand(N, Cin, size, size, generator=g) < 0.2).float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(Cout, Cin, 3, 3, generator=g)
    out = (size + 2 - 3) // stride + 1
    assert 1 << 15 <= N * Cout * out * out < Cin * 9 * -(-Cout // 8) * 8  # the channel split's condition
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        y, gx, gw, gy = _grads(lambda a, b: spike_conv2d(a, b, (stride, stride), (1, 1)), x, w)
    finally:
        torch.set_num_threads(previous)
    assert _is_event_driven(y)
    ry, rgx, rgw, _ = _grads(lambda a, b: _naive(a, b, stride, 1), x.contiguous(), w, gy.double())
    for got, ref in ((y, ry), (gx, rgx), (gw, rgw)):
        _assert_round_off(got, ref)


def test_pack_spikes_bits_and_non_binary_values():
    x = (torch.rand(3, 4, 9, 11, generator=torch.Generator().manual_seed(0)) < 0.3).float()  # 99 per plane: ragged
    bits = pack_spikes(x)
    flat = x.reshape(12, 99)
    for plane in range(12):
        word = [int(bits.reshape(12, -1)[plane, j]) & (2**64 - 1) for j in range(2)]
        got = [(word[p // 64] >> (p % 64)) & 1 for p in range(99)]
        assert got == flat[plane].int().tolist()
    for bad in (0.5, -1.0, 2.0, float("nan")):
        y = x.clone()
        y[2, 3, 8, 10] = bad  # the very last element
        assert pack_spikes(y) is None


def test_non_binary_input_falls_back_to_the_dense_convolution():
    x = (torch.rand(2, 3, 8, 8) < 0.3).float()
    x[1, 2, 4, 4] = 0.5
    w = torch.randn(4, 3, 3, 3)
    y, gx, gw, gy = _grads(lambda a, b: spike_conv2d(a, b, (1, 1), (1, 1)), x, w)
    assert not _is_event_driven(y)
    ry, rgx, rgw, _ = _grads(lambda a, b: F.conv2d(a, b, None, 1, 1), x, w, gy)
    assert torch.equal(y, ry) and torch.equal(gx, rgx) and torch.equal(gw, rgw)


def test_input_or_weight_without_grad():
    x = (torch.rand(2, 6, 9, 9) < 0.3).float()
    conv = SpikeConv2d(6, 8, 3, stride=2, padding=1, bias=False)
    y = conv(x)  # the input needs no gradient: only the weight's
    assert _is_event_driven(y)
    y.sum().backward()
    ref = nn.Conv2d(6, 8, 3, stride=2, padding=1, bias=False)
    ref.load_state_dict(conv.state_dict())
    ref(x).sum().backward()
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-5)
    conv.weight.requires_grad_(False)
    xg = x.clone().requires_grad_()
    conv(xg).sum().backward()
    xr = x.clone().requires_grad_()
    ref(xr).sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad)


def test_switch_and_environment_variable(monkeypatch):
    x = (torch.rand(2, 3, 8, 8) < 0.3).float().requires_grad_()
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    assert spike_conv.spike_conv_enabled()
    with use_spike_conv(False):
        assert not spike_conv.spike_conv_enabled()
        assert not _is_event_driven(spike_conv2d(x, w, (1, 1), (1, 1)))
        with use_spike_conv(True):
            assert _is_event_driven(spike_conv2d(x, w, (1, 1), (1, 1)))
    assert _is_event_driven(spike_conv2d(x, w, (1, 1), (1, 1)))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast's bf16 convolution is kept as it is
        y = spike_conv2d(x, w, (1, 1), (1, 1))
        assert not _is_event_driven(y) and y.dtype == torch.bfloat16
    monkeypatch.setenv(spike_conv.ENV_VAR, "0")
    assert not _is_event_driven(spike_conv2d(x, w, (1, 1), (1, 1)))
    assert "SPIKEVISION_SPIKE_CONV=0" in spike_conv.spike_conv_status()


@pytest.mark.parametrize("nhwc", [False, True])
def test_bias_is_added_and_its_gradient_summed(nhwc):
    """With a bias the event-driven path adds it to the sums; its gradient is the output gradient's sum over
    batch and positions (float64 reference, autograd of the naive convolution plus the bias)."""
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(3, 14, 6, 9, generator=g) < 0.2).float()
    if nhwc:
        x = x.to(memory_format=torch.channels_last)
    w, b = torch.randn(14, 14, 1, 1, generator=g), torch.randn(14, generator=g)
    gy = torch.randn(3, 14, 6, 9, generator=g)
    xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
    y = spike_conv2d(xs, ws, 1, 0, bs)
    assert _is_event_driven(y) and y.is_contiguous(memory_format=torch.channels_last) == nhwc
    y.backward(gy)
    xr, wr, br = (t.double().requires_grad_() for t in (x, w, b))
    ref = _naive(xr, wr, 1, 0) + br.view(1, -1, 1, 1)
    ref.backward(gy.double())
    for got, want in ((y, ref), (xs.grad, xr.grad), (ws.grad, wr.grad), (bs.grad, br.grad)):
        _assert_round_off(got, want)
    conv = SpikeConv2d(14, 14, 1).train()  # the module takes the path with its bias too
    assert _is_event_driven(conv(x))


@pytest.mark.parametrize("kwargs,dtype", [({"groups": 3}, torch.float32),
                                          ({"dilation": 2}, torch.float32), ({"padding": "same"}, torch.float32),
                                          ({"padding_mode": "reflect", "padding": 1}, torch.float32),
                                          ({}, torch.float64)])
def test_module_falls_back_where_the_kernel_does_not_apply(kwargs, dtype):
    conv = SpikeConv2d(3, 6, 3, **{"bias": False, **kwargs}).to(dtype)
    ref = nn.Conv2d(3, 6, 3, **{"bias": False, **kwargs}).to(dtype)
    ref.load_state_dict(conv.state_dict())
    x = (torch.rand(2, 3, 8, 8) < 0.3).to(dtype).requires_grad_()
    y = conv(x)
    assert not _is_event_driven(y)
    assert torch.equal(y, ref(x))


def test_module_is_a_conv2d_and_exact_in_eval_mode():
    conv = SpikeConv2d(4, 8, 3, stride=2, padding=1, bias=False)
    ref = nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False)
    ref.load_state_dict(conv.state_dict())  # same keys and shapes
    assert isinstance(conv, nn.Conv2d) and conv.state_dict().keys() == ref.state_dict().keys()
    x = (torch.rand(3, 4, 10, 10) < 0.3).float().requires_grad_()
    assert _is_event_driven(conv(x))
    conv.eval()
    y = conv(x)
    assert not _is_event_driven(y) and torch.equal(y, ref(x))


def _step(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), labels)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name,image,n_spike_convs", [
    ("ms_resnet_mini", (6, 1, 28, 28), 12),  # both convs of the 6 blocks; not the stem, not the projections
    ("spiking_resnet_mini", (6, 1, 28, 28), 6),  # conv2 of each vanilla block (conv1 reads the block input)
    ("sresnet20", (4, 3, 32, 32), 9),  # unit_b of each block (unit_a reads counts in the released mode)
    ("spiking_cnn_mini", (6, 1, 28, 28), None),  # every stage after the first
    ("mlp_spe_mini", (6, 1, 28, 28), 11),  # the SPE cell's 5 and each block's token projections and fuse
])
def test_training_step_equals_the_dense_path(name, image, n_spike_convs):
    torch.manual_seed(0)
    model = create_model(name, T=2)
    convs = [m for m in model.modules() if isinstance(m, SpikeConv2d)]
    assert len(convs) == (n_spike_convs or len(model.stages) - 1)
    g = torch.Generator().manual_seed(0)
    x, labels = torch.rand(*image, generator=g), torch.randint(0, 10, (image[0],), generator=g)
    model.train()
    paths = []
    hooks = [c.register_forward_hook(lambda m, i, out: paths.append(_is_event_driven(out))) for c in convs]
    loss, grads = _step(model, x, labels)
    assert paths == [True] * len(convs)  # every spike conv took the event-driven path: its input was spikes
    with use_spike_conv(False):
        ref_loss, ref_grads = _step(model, x, labels)
    assert paths[len(convs):] == [False] * len(convs)
    for h in hooks:
        h.remove()
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert grads.keys() == ref_grads.keys()
    # all gradients together to 1e-5 relative; each tensor to 1e-4 of its largest entry (a norm's bias gradient
    # is a sum that cancels to ~1e-4 of its terms: the dense path differs from float64 by 5e-5 there)
    flat, ref_flat = (torch.cat([g[k].flatten() for k in sorted(g)]) for g in (grads, ref_grads))
    assert ((flat - ref_flat).norm() / ref_flat.norm()).item() < 1e-5
    noise = 1e-6 * ref_flat.abs().max()  # a bias right before a BN has gradient 0: both sides are round-off
    for key, grad in grads.items():
        scale = ref_grads[key].abs().max()
        if scale < noise:
            assert grad.abs().max() < noise, key
            continue
        assert ((grad - ref_grads[key]).abs().max() / scale).item() < 1e-4, key
    model.eval()
    with torch.no_grad():
        on = model(x)
        with use_spike_conv(False):
            off = model(x)
    assert torch.equal(on, off)


def test_int_arguments_empty_batch_and_limits_of_the_kernel():
    x = (torch.rand(2, 3, 8, 8) < 0.3).float().requires_grad_()
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    y = spike_conv2d(x, w, 2, 1)
    assert _is_event_driven(y)
    _assert_round_off(y, F.conv2d(x, w, None, 2, 1))
    empty = spike_conv2d(torch.zeros(0, 3, 8, 8), w.detach(), 1, 1)
    assert empty.shape == (0, 4, 8, 8)
    wide = torch.randn(2, 8000, 3, 3, requires_grad=True)  # 8000 * 9 weight rows: beyond the 16-bit row index
    xw = (torch.rand(1, 8000, 2, 2) < 0.3).float()
    y = spike_conv2d(xw, wide, 1, 1)
    assert not _is_event_driven(y)
    torch.testing.assert_close(y, F.conv2d(xw, wide, None, 1, 1))


@pytest.mark.parametrize("mode", ["spikes", "blocks"])
def test_memory_saving_modes_keep_the_event_driven_gradients(mode):
    from spikevision.train.memory_saving import enable_memory_saving

    torch.manual_seed(0)
    model = create_model("ms_resnet_mini", T=2).train()
    enable_memory_saving(model, mode)  # int8 spikes saved by hooks / blocks recomputed in backward
    g = torch.Generator().manual_seed(0)
    x, labels = torch.rand(4, 1, 28, 28, generator=g), torch.randint(0, 10, (4,), generator=g)
    loss, grads = _step(model, x, labels)
    with use_spike_conv(False):
        ref_loss, ref_grads = _step(model, x, labels)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    flat, ref_flat = (torch.cat([g[k].flatten() for k in sorted(g)]) for g in (grads, ref_grads))
    assert ((flat - ref_flat).norm() / ref_flat.norm()).item() < 1e-5


def test_version_command_says_which_convolution_runs(capsys):
    from spikevision.cli import main

    assert main(["version"]) == 0
    assert f"CPU spike convolutions (training): {spike_conv.spike_conv_status()}" in capsys.readouterr().out


def test_asymmetric_kernel_stride_and_padding():
    g = torch.Generator().manual_seed(5)
    conv = SpikeConv2d(6, 10, (3, 1), stride=(1, 2), padding=(0, 1), bias=False)
    x = (torch.rand(3, 6, 9, 11, generator=g) < 0.3).float().requires_grad_()
    y = conv(x)
    assert _is_event_driven(y)
    gy = torch.randn(y.shape, generator=g)
    y.backward(gy)
    xr = x.detach().clone().requires_grad_()
    wr = conv.weight.detach().clone().requires_grad_()
    ref = F.conv2d(xr.double(), wr.double(), None, (1, 2), (0, 1))
    ref.backward(gy.double())
    for got, want in ((y, ref), (x.grad, xr.grad), (conv.weight.grad, wr.grad)):
        _assert_round_off(got, want)


@pytest.mark.parametrize("k,stride,padding", [(3, 1, 1), (3, 2, 1), (1, 2, 0)])
@pytest.mark.parametrize("N,Cin,H,W,Cout", [(2, 3, 7, 9, 5), (2, 70, 9, 6, 16), (3, 16, 8, 71, 12)])
def test_channels_last_input_matches_the_naive_convolution_and_keeps_its_format(N, Cin, H, W, Cout, k, stride,
                                                                                padding):
    g = torch.Generator().manual_seed(7 * N + Cin + H + W + Cout + k + stride + padding)
    x = (torch.rand(N, Cin, H, W, generator=g) < 0.3).float().contiguous(memory_format=torch.channels_last)
    w = torch.randn(Cout, Cin, k, k, generator=g)
    y, gx, gw, gy = _grads(lambda a, b: spike_conv2d(a, b, (stride, stride), (padding, padding)), x, w)
    assert _is_event_driven(y)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    assert gx.is_contiguous(memory_format=torch.channels_last)
    ry, rgx, rgw, _ = _grads(lambda a, b: _naive(a, b, stride, padding), x.contiguous(), w, gy.double())
    for got, ref in ((y, ry), (gx, rgx), (gw, rgw)):
        _assert_round_off(got, ref)


def test_channels_last_packs_the_same_bits_and_finds_non_binary_values():
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(3, 70, 5, 27, generator=g) < 0.2).float()  # 70 channels: a whole word and a ragged one
    bits = pack_spikes(x)
    assert torch.equal(pack_spikes(x.contiguous(memory_format=torch.channels_last)), bits)
    x[2, 69, 4, 26] = 0.5
    assert pack_spikes(x.contiguous(memory_format=torch.channels_last)) is None


@pytest.mark.parametrize("cin,cout,k,threads", [(8, 16, 3, 1), (20, 12, 3, 1), (19, 37, 2, 2), (130, 64, 3, 2),
                                                 (24, 40, 1, 1)])
def test_channels_last_weight_gets_its_gradient_in_its_format(cin, cout, k, threads):
    """The weight's rows for the kernel and its gradient are laid out per tap from and to the channels-last
    storage ([Cout, kh, kw, Cin]); Cout not a multiple of 8 pads the rows."""
    conv = SpikeConv2d(cin, cout, k, padding=k // 2, bias=False).to(memory_format=torch.channels_last).train()
    x = (torch.rand(4, cin, 9, 9, generator=torch.Generator().manual_seed(cin)) < 0.3).float()
    x = x.contiguous(memory_format=torch.channels_last)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = conv(x)
        assert _is_event_driven(y)
        y.square().sum().backward()
    finally:
        torch.set_num_threads(previous)
    ref = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False).double()
    ref.weight.data.copy_(conv.weight.detach())
    ry = ref(x.contiguous().double())
    ry.square().sum().backward()
    assert conv.weight.grad.is_contiguous(memory_format=torch.channels_last)
    _assert_round_off(y, ry)
    _assert_round_off(conv.weight.grad, ref.weight.grad)
