"""A time-broadcast input (``u.expand(T, ...)``, stride 0 along T): read without a copy, gradient summed over T.

The C kernel reads the one step at every time step and, when the input is exactly an expanded view of
``u``, runs its autograd Function on ``u`` so backward writes ``dL/du`` (the per-step gradients summed)
directly. Every kernel must give the spikes of the plain loop on the materialised sequence and ``dL/du``
of autograd through ``u.expand(...).contiguous()`` to round-off; ``use_kernels(broadcast=False)``
restores the copy.
"""

import pytest
import torch

from spikevision.neuron import NeuronParams, Rectangular, Sigmoid, Triangle, lif_multistep, lif_reference, use_kernels
from spikevision.neuron import _native

from neuron_kernels import KERNELS, only_kernel  # tests/neuron is on sys.path

MS = NeuronParams(decay=0.25, gain=1.0, v_th=0.5, strict=True, surrogate=Rectangular(1.0))  # compact code path
PARAMS = {
    "ms_resnet": MS,
    "sigmoid_hard": NeuronParams(decay=0.5, gain=0.5, surrogate=Sigmoid(4.0), detach_reset=False),  # keeps H
    "soft_gain": NeuronParams(decay=0.75, gain=0.8, reset="soft", surrogate=Rectangular(1.0), detach_reset=False),
    "triangle_none": NeuronParams(decay=0.9, gain=1.0, reset="none", v_rest=-0.1,
                                  surrogate=Triangle(width=2.0, peak=0.3)),
}


def _step(shape=(3, 7, 100), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=dtype) * 1.2 + 0.4).requires_grad_(True)


def _reference(u, T, p, g):
    """Spikes of the plain loop on the materialised sequence and ``dL/du`` through ``expand().contiguous()``."""
    u_ref = u.detach().clone().requires_grad_(True)
    s, _ = lif_reference(u_ref.unsqueeze(0).expand(T, *u.shape).contiguous(), p)
    return s.detach(), torch.autograd.grad((s * g).sum(), u_ref)[0]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("T", [2, 3, 5])
@pytest.mark.parametrize("name", list(PARAMS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_reference_on_the_materialised_sequence(kernel, T, name, dtype):
    p = PARAMS[name]
    u = _step(dtype=dtype, seed=T)
    g = torch.randn((T, *u.shape), generator=torch.Generator().manual_seed(1), dtype=dtype)
    with only_kernel(kernel):
        s = lif_multistep(u.unsqueeze(0).expand(T, *u.shape), p)
        gu = torch.autograd.grad((s * g).sum(), u)[0]
    s_ref, gu_ref = _reference(u, T, p, g)
    assert torch.equal(s, s_ref)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gu, gu_ref, **tol)


def test_c_kernel_reads_one_step_and_writes_the_summed_gradient(kernel_calls, monkeypatch):
    if not _native.native_available():
        pytest.skip("no C kernel on this machine")
    seen = []
    real_fwd, real_bwd = _native.forward, _native.backward
    monkeypatch.setattr(_native, "forward", lambda x, *a, **k: seen.append(x.stride(0)) or real_fwd(x, *a, **k))

    def bwd(*a, **k):
        out = real_bwd(*a, **k)
        seen.append(tuple(out.shape))
        return out

    monkeypatch.setattr(_native, "backward", bwd)
    u = _step(dtype=torch.float32)
    s = lif_multistep(u.unsqueeze(0).expand(4, *u.shape), MS)
    s.sum().backward()
    assert seen == [0, tuple(u.shape)]  # forward got the stride-0 view; backward made a gradient of u's shape
    seen.clear()
    with use_kernels(broadcast=False):  # the previous path: a [T, ...] copy in, a [T, ...] gradient out
        lif_multistep(u.unsqueeze(0).expand(4, *u.shape), MS).sum().backward()
    assert seen == [u.numel(), (4, *u.shape)]


@pytest.mark.parametrize("broadcast", [True, False])
def test_switch_gives_the_same_spikes_and_gradients(broadcast):
    u = _step(dtype=torch.float32, seed=3)
    g = torch.randn((3, *u.shape), generator=torch.Generator().manual_seed(2))
    out = []
    for flag in (broadcast, not broadcast):
        with use_kernels(broadcast=flag):
            s = lif_multistep(u.unsqueeze(0).expand(3, *u.shape), MS)
            out.append((s, torch.autograd.grad((s * g).sum(), u)[0]))
    assert torch.equal(out[0][0], out[1][0])
    torch.testing.assert_close(out[0][1], out[1][1], rtol=1e-6, atol=1e-7)


def test_input_used_twice_accumulates_both_gradients():
    # MS-ResNet's first block feeds the broadcast stem output to its neuron and to its shortcut
    u = _step(seed=4)
    x = u.unsqueeze(0).expand(3, *u.shape)
    g1, g2 = torch.randn((2, 3, *u.shape), dtype=u.dtype, generator=torch.Generator().manual_seed(5))
    gu = torch.autograd.grad((lif_multistep(x, MS) * g1).sum() + (x * g2).sum(), u)[0]
    s_ref, gu_ref = _reference(u, 3, MS, g1)
    torch.testing.assert_close(gu, gu_ref + g2.sum(0), rtol=1e-10, atol=1e-12)


def test_broadcast_view_of_a_view_takes_the_copy_free_forward():
    # u is itself a view (its _base is bigger): no base to run on, but forward still reads the one step
    whole = _step(shape=(5, 7, 100), seed=6)
    u = whole[1:4]
    x = u.unsqueeze(0).expand(4, *u.shape)
    assert _native.time_broadcast_base(x) is None and _native.is_time_broadcast(x)
    g = torch.randn((4, *u.shape), dtype=u.dtype, generator=torch.Generator().manual_seed(7))
    s = lif_multistep(x, PARAMS["sigmoid_hard"])
    gw = torch.autograd.grad((s * g).sum(), whole)[0]
    s_ref, gu_ref = _reference(u, 4, PARAMS["sigmoid_hard"], g)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(gw[1:4], gu_ref, rtol=1e-10, atol=1e-12)
    assert not gw[0].any() and not gw[4].any()


def test_base_is_only_taken_for_an_exact_expanded_view():
    u = _step(seed=8)
    assert _native.time_broadcast_base(u.unsqueeze(0).expand(2, *u.shape)) is u
    assert _native.time_broadcast_base(u.expand(2, *u.shape)) is u
    assert _native.time_broadcast_base(u.unsqueeze(0).expand(1, *u.shape)) is None  # T = 1: nothing to save
    assert _native.time_broadcast_base(u[:, :, :50].unsqueeze(0).expand(2, 3, 7, 50)) is None  # part of u
    assert _native.time_broadcast_base(u.unsqueeze(0).expand(2, *u.shape).contiguous()) is None
    with torch.no_grad():  # a view made without grad must not attach u's graph
        x = u.unsqueeze(0).expand(2, *u.shape)
    assert _native.time_broadcast_base(x) is None  # x is a leaf of its own, not on u's graph
    assert torch.equal(lif_multistep(x, MS), lif_reference(x.detach().contiguous(), MS)[0])


def test_without_grad_and_float32_threads():
    u = _step(shape=(16, 32, 300), dtype=torch.float32, seed=9).detach()  # big enough to split over threads
    with torch.no_grad():
        s = lif_multistep(u.expand(2, *u.shape), MS)
    assert torch.equal(s, lif_reference(u.expand(2, *u.shape).contiguous(), MS)[0])


@pytest.mark.parametrize("name", ["ms_resnet_mini", "spiking_cnn_mini"])
def test_stem_once_training_step_is_the_same_with_and_without_the_broadcast_path(name):
    # the models' stem-once path hands the first neuron u.expand(T, ...): loss and every gradient agree
    from spikevision.models import create_model

    torch.manual_seed(0)
    net = create_model(name, T=3, num_classes=10, in_chans=1).train()
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    assert net.runs_stem_once(x)
    results = []
    for flag in (True, False):
        net.zero_grad(set_to_none=True)
        with use_kernels(broadcast=flag):
            loss = net(x).logsumexp(-1).sum()
            loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}))
    (loss_on, grads_on), (loss_off, grads_off) = results
    torch.testing.assert_close(loss_on, loss_off, rtol=1e-6, atol=1e-6)
    assert grads_on.keys() == grads_off.keys() and grads_on
    for n in grads_on:
        torch.testing.assert_close(grads_on[n], grads_off[n], rtol=1e-4, atol=1e-5, msg=n)
