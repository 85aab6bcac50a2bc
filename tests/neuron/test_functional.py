"""The fused neuron against a plain per-step Python loop differentiated by autograd.

The reference is :func:`spikevision.neuron.lif_reference`, which shares no code
with the kernels: it writes the update equations literally and gets its
surrogate gradient from autograd of the surrogate's primitive through a
straight-through estimator (tests/neuron/test_reference.py checks it by hand).
"""

import itertools

import pytest
import torch

from spikevision.neuron import (
    IF,
    LIF,
    PLIF,
    ATan,
    NeuronParams,
    Rectangular,
    Sigmoid,
    Triangle,
    lif_multistep,
    lif_reference,
    plif_multistep,
)

SURROGATES = [Sigmoid(4.0), ATan(2.0), Rectangular(1.0), Triangle(width=2.0, peak=0.3)]
CHARGES = {
    "tau_decay_input": dict(decay=0.5, gain=0.5),
    "tau_no_decay_input": dict(decay=0.75, gain=1.0),
    "decay_form": dict(decay=0.25, gain=1.0),
    "if": dict(decay=1.0, gain=1.0),
}
RESETS = [
    dict(reset="hard"),
    dict(reset="hard", v_reset=-0.2, v_rest=-0.2),
    dict(reset="soft"),
    dict(reset="none"),
]


def _inputs(dtype=torch.float64, shape=(6, 3, 5, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=dtype) * 1.2 + 0.4).requires_grad_(True)


@pytest.mark.parametrize(
    "charge,reset,strict,surrogate,detach",
    list(itertools.product(CHARGES, range(len(RESETS)), [True, False], SURROGATES, [True, False])),
    ids=lambda v: str(v) if not isinstance(v, (Sigmoid, ATan, Rectangular, Triangle)) else v.name,
)
def test_matches_reference_loop(charge, reset, strict, surrogate, detach):
    p = NeuronParams(**CHARGES[charge], **RESETS[reset], strict=strict, surrogate=surrogate, detach_reset=detach)
    x = _inputs()
    s, h = lif_multistep(x, p, return_membrane=True)
    g_out = torch.randn_like(s)
    g_h = torch.randn_like(h)
    gx = torch.autograd.grad((s * g_out).sum() + (h * g_h).sum(), x)[0]

    x_ref = x.detach().clone().requires_grad_(True)
    s_ref, h_ref = lif_reference(x_ref, p)
    gx_ref = torch.autograd.grad((s_ref * g_out).sum() + (h_ref * g_h).sum(), x_ref)[0]

    assert torch.equal(s, s_ref.detach())
    torch.testing.assert_close(h, h_ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("surrogate", SURROGATES, ids=lambda s: s.name)
@pytest.mark.parametrize("reset", ["hard", "soft", "none"])
@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("detach", [True, False])
def test_plif_matches_reference(surrogate, reset, decay_input, detach):
    p = NeuronParams(reset=reset, surrogate=surrogate, detach_reset=detach, v_th=0.8)
    x = _inputs(seed=1)
    w = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    s = plif_multistep(x, w, p, decay_input=decay_input)
    g_out = torch.randn_like(s)
    gx, gw = torch.autograd.grad((s * g_out).sum(), (x, w))

    x_ref = x.detach().clone().requires_grad_(True)
    w_ref = w.detach().clone().requires_grad_(True)
    inv_tau = torch.sigmoid(w_ref)
    s_ref, _ = lif_reference(x_ref, p, decay=1 - inv_tau, gain=inv_tau if decay_input else 1.0)
    gx_ref, gw_ref = torch.autograd.grad((s_ref * g_out).sum(), (x_ref, w_ref))

    assert torch.equal(s, s_ref.detach())
    torch.testing.assert_close(gx, gx_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-10, atol=1e-12)


def test_float32_gradients_match_to_roundoff():
    p = NeuronParams(decay=0.25, gain=1.0, v_th=0.5, strict=True, surrogate=Rectangular(1.0))
    x = _inputs(dtype=torch.float32, shape=(8, 16, 32))
    s = lif_multistep(x, p)
    g = torch.randn_like(s)
    gx = torch.autograd.grad((s * g).sum(), x)[0]
    x_ref = x.detach().clone().requires_grad_(True)
    s_ref, _ = lif_reference(x_ref, p)
    gx_ref = torch.autograd.grad((s_ref * g).sum(), x_ref)[0]
    assert torch.equal(s, s_ref.detach())
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-6)


def test_strict_and_nonstrict_threshold_differ_at_equality():
    x = torch.tensor([[1.0], [0.0]])  # H_0 = 1.0 exactly with gain 1 and v_th 1
    ge = lif_multistep(x, NeuronParams(decay=0.0, gain=1.0, v_th=1.0, strict=False))
    gt = lif_multistep(x, NeuronParams(decay=0.0, gain=1.0, v_th=1.0, strict=True))
    assert ge[0, 0] == 1.0 and gt[0, 0] == 0.0


def test_hand_computed_ms_resnet_neuron():
    # u_t = 0.25 u_{t-1} (1 - s_{t-1}) + x_t, spike if u > 0.5
    p = NeuronParams(decay=0.25, gain=1.0, v_th=0.5, strict=True, surrogate=Rectangular(1.0))
    x = torch.tensor([0.4, 0.4, 0.4, 0.6]).reshape(4, 1)
    s, h = lif_multistep(x, p, return_membrane=True)
    # u0=0.4 ; u1=0.1+0.4=0.5 (not > 0.5) ; u2=0.125+0.4=0.525 spike ; u3=0+0.6 spike
    torch.testing.assert_close(h.flatten(), torch.tensor([0.4, 0.5, 0.525, 0.6]))
    assert s.flatten().tolist() == [0.0, 0.0, 1.0, 1.0]


def test_stateless_batch_and_T_may_change():
    lif = LIF()
    a = torch.rand(4, 2, 3) * 3
    first = lif(a)
    lif(torch.rand(7, 5, 3) * 3)  # different T and batch
    assert torch.equal(lif(a), first)


def test_modules_and_errors():
    assert IF().p.decay == 1.0
    with pytest.raises(ValueError, match="no leak"):
        IF(decay=0.5)
    with pytest.raises(TypeError, match="unknown neuron constant"):
        LIF(v_threshold=1.0)
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        LIF()(torch.randn(5))
    with pytest.raises(TypeError, match="floating point"):
        LIF()(torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="reset"):
        NeuronParams(reset="sometimes")
    assert abs(PLIF(init_tau=3.0).tau - 3.0) < 1e-6


def test_from_tau_matches_spikingjelly_form():
    # H = V + (X - (V - v_reset)) / tau
    p = NeuronParams.from_tau(2.0, decay_input=True, v_reset=0.1)
    x = torch.randn(5, 7, dtype=torch.float64)
    v = torch.full_like(x[0], 0.1)
    hs = []
    for t in range(5):
        h = v + (x[t] - (v - 0.1)) / 2.0
        s = (h >= 1.0).double()
        v = h * (1 - s) + 0.1 * s
        hs.append(h)
    _, h_k = lif_multistep(x, p, return_membrane=True)
    torch.testing.assert_close(h_k, torch.stack(hs))
