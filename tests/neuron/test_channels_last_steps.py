"""Channels-last steps through the C kernel: same spikes and gradients as the plain loop, format kept, no copy.

A channels-last network (``[T, B, C, H, W]`` whose every step is a channels-last map) must not be converted at
its neurons: the kernel works on the memory as it lies, so the spikes, the input gradient (also the summed one of
a time-broadcast input) come out channels-last. The reference is :func:`lif_reference` on the contiguous copy.
"""

import pytest
import torch

from spikevision.neuron import NeuronParams, Rectangular, Sigmoid, lif_multistep, lif_reference
from spikevision.neuron import _native

from neuron_kernels import only_kernel  # tests/neuron is on sys.path

pytestmark = pytest.mark.skipif(not _native.native_available(), reason="no C kernel on this machine")

PARAMS = {
    "compact_code": NeuronParams(decay=0.25, gain=1.0, v_th=0.5, strict=True, surrogate=Rectangular(1.0)),
    "keeps_h": NeuronParams(decay=0.5, gain=0.5, surrogate=Sigmoid(4.0), detach_reset=False),
}


def _channels_last_steps(T, B, C, H, W, dtype, seed=0):
    """``[T, B, C, H, W]`` with channels-last steps (memory ``[T, B, H, W, C]``), a leaf that requires grad."""
    g = torch.Generator().manual_seed(seed)
    mem = torch.randn((T, B, H, W, C), generator=g, dtype=dtype) * 1.2 + 0.4
    return mem.permute(0, 1, 4, 2, 3).requires_grad_(True)


def _is_channels_last_steps(t):
    return t.stride(0) == t[0].numel() and t[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", list(PARAMS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_channels_last_sequence_matches_the_reference_and_keeps_its_format(name, dtype):
    p = PARAMS[name]
    x = _channels_last_steps(3, 2, 5, 4, 6, dtype)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    with only_kernel("c"):
        s = lif_multistep(x, p)
        gx = torch.autograd.grad((s * g).sum(), x)[0]
    x_ref = x.detach().contiguous().requires_grad_(True)
    s_ref, _ = lif_reference(x_ref, p)
    gx_ref = torch.autograd.grad((s_ref * g).sum(), x_ref)[0]
    assert _is_channels_last_steps(s) and _is_channels_last_steps(gx)
    assert torch.equal(s, s_ref)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gx, gx_ref, **tol)


def test_channels_last_time_broadcast_input_reads_one_step_and_sums_its_gradient():
    p = PARAMS["compact_code"]
    u = torch.randn((2, 8, 5, 3), generator=torch.Generator().manual_seed(2)) * 1.2 + 0.4
    u = u.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    g = torch.randn((4, *u.shape), generator=torch.Generator().manual_seed(3))
    x = u.expand(4, *u.shape)
    assert _native.time_broadcast_base(x) is u
    with only_kernel("c"):
        s = lif_multistep(x, p)
        gu = torch.autograd.grad((s * g).sum(), u)[0]
    u_ref = u.detach().contiguous().requires_grad_(True)
    s_ref, _ = lif_reference(u_ref.expand(4, *u.shape).contiguous(), p)
    gu_ref = torch.autograd.grad((s_ref * g).sum(), u_ref)[0]
    assert _is_channels_last_steps(s) and gu.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(gu, gu_ref, rtol=1e-5, atol=1e-6)


def test_gradient_in_another_format_is_laid_out_like_the_forward():
    p = PARAMS["compact_code"]
    x = _channels_last_steps(2, 2, 3, 4, 4, torch.float64, seed=4)
    with only_kernel("c"):
        s = lif_multistep(x, p)
        g = torch.randn(s.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)  # contiguous
        gx = torch.autograd.grad(s, x, g)[0]
    x_ref = x.detach().contiguous().requires_grad_(True)
    s_ref, _ = lif_reference(x_ref, p)
    torch.testing.assert_close(gx, torch.autograd.grad(s_ref, x_ref, g)[0], rtol=1e-10, atol=1e-12)
    assert _is_channels_last_steps(gx)
