"""Integer engine: event-driven layers against dense integer references, neurons against a plain
loop, zero multiplications in spike-driven layers, the op counter, agreement with the float model."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from deploy_nets import MS_NEURON, MSNet, randomize_bn, small_cnn
from spikevision.deploy.engine import EngineConfig, IntNeuron, IntSynapse, compile_integer, shift_add_terms
from spikevision.deploy.engine.arithmetic import MultiplicationError, ArithmeticCounter
from spikevision.neuron import LIF, NeuronParams, lif_multistep, lif_reference

FQ = 2.0**24  # the default fixed-point one


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
@pytest.mark.parametrize("kw", [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=3, stride=2, padding=1, bias=False),
    dict(kernel_size=4, padding="same"),  # PyTorch's asymmetric padding for an even kernel
    dict(kernel_size=3, dilation=2, padding=2, groups=2),
    dict(kernel_size=1, stride=2),
])
def test_event_conv_equals_dense_integer_conv(kw):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, **kw)
    syn = IntSynapse(conv, conv.weight.detach()[None], conv.bias.detach()[None] if conv.bias is not None else None,
                     True, EngineConfig())
    spikes = (torch.rand(2, 3, 4, 9, 9) < 0.3).double()  # [T, B, C, H, W]
    counter = ArithmeticCounter(syn)
    xq = spikes * FQ
    with counter:
        out = syn(xq)
    # reference: the float64 convolution of the same integer weights, each channel shifted to 2^-24 units
    w = syn.weight_int[0].double() * (2.0 ** syn.align[0].double())[:, None, None, None]
    ref = F.conv2d(spikes.flatten(0, 1), w, syn.bias_q[0].double(), conv.stride, conv.padding, conv.dilation,
                   conv.groups).unflatten(0, (2, 3))
    assert torch.equal(out, ref)
    c = counter.totals()
    assert c["mul"] == 0 and c["float"] == 0 and c["add"] > 0
    assert syn.inputs_seen == {"spikes"}


def test_event_linear_and_dense_path():
    torch.manual_seed(1)
    lin = nn.Linear(10, 7)
    syn = IntSynapse(lin, lin.weight.detach()[None], lin.bias.detach()[None], False, EngineConfig())
    s = (torch.rand(5, 10) < 0.4).double()
    out = syn(s * FQ)
    w = syn.weight_int[0].double() * 2.0 ** syn.align[0].double()[:, None]
    assert torch.equal(out, s @ w.t() + syn.bias_q[0].double())
    # analog input: the integer MAC, close to the float layer
    x = torch.randn(5, 10)
    counter = ArithmeticCounter(syn)
    xq = torch.round(x.double() * FQ)
    with counter:
        y = syn(xq)
    y = y / FQ
    assert torch.allclose(y, lin(x).double(), atol=1e-3)
    assert counter.totals()["mul"] == 5 * 10 * 7
    assert syn.inputs_seen == {"spikes", "analog"}


@pytest.mark.parametrize("p", [
    NeuronParams(),  # spiking MLP: decay 0.5, gain 0.5, >=
    MS_NEURON,  # MS-ResNet: decay 0.25, gain 1, strict
    NeuronParams(decay=1.0, gain=1.0, v_th=1.0),  # IF
])
def test_int_neuron_shift_leaks_match_plain_loop(p):
    torch.manual_seed(2)
    x = torch.round(torch.randn(6, 4, 50) * 256) / 256  # exactly representable currents
    neuron = IntNeuron(LIF(p), EngineConfig())
    counter = ArithmeticCounter(neuron)
    xq = x.double() * FQ
    with counter:
        s = neuron(xq)
    s = s / FQ
    assert torch.equal(s, lif_reference(x.double(), p)[0])  # the plain loop in float64
    assert torch.equal(s.float(), lif_multistep(x, p))
    assert counter.totals()["mul"] == 0


def test_int_neuron_non_power_of_two_leak():
    torch.manual_seed(3)
    p = NeuronParams(decay=0.8744, gain=1.0, v_th=1.0, reset="soft", strict=True)
    x = torch.randn(8, 3, 200) * 0.5
    ref = lif_multistep(x, p)
    exact = IntNeuron(LIF(p), EngineConfig())
    approx = IntNeuron(LIF(p), EngineConfig(leak="shift_add", shift_add_terms=4))
    assert exact.multiplies and not approx.multiplies
    assert approx.leak_error == pytest.approx(abs(sum(s * 2.0**-k for s, k in shift_add_terms(0.8744, 4)) - 0.8744))
    assert approx.leak_error < 1e-3
    for neuron, max_flip in ((exact, 0.01), (approx, 0.05)):
        counter = ArithmeticCounter(neuron)
        xq = torch.round(x.double() * FQ)
        with counter:
            s = neuron(xq)
        s = s / FQ
        assert (s.float() != ref).float().mean() <= max_flip
        assert (counter.totals()["mul"] > 0) == (neuron is exact)


def _spike_driven(im) -> list[str]:
    return [n for n, m in im.named_modules() if isinstance(m, IntSynapse) and m.inputs_seen == {"spikes"}]


def test_zero_multiplications_in_spike_driven_layers_and_injection_caught():
    torch.manual_seed(4)
    model = randomize_bn(MSNet())
    x = torch.rand(6, 2, 8, 8)
    im = compile_integer(model, x[:2])
    counter = ArithmeticCounter(im)
    with torch.no_grad(), counter:
        im(x)
    driven = _spike_driven(im)
    assert set(driven) == {"net.block1.conv1", "net.block1.conv2", "net.block2.conv1", "net.block2.conv2"}
    counter.assert_multiplication_free(driven)
    neurons = [n for n, m in im.named_modules() if isinstance(m, IntNeuron)]
    counter.assert_multiplication_free(neurons)  # decay 0.25 and gain 1: shifts
    # inject a multiplication into one spike-driven layer: the counter must name it
    layer = im.get_submodule("net.block2.conv1")
    original = layer._events_conv
    layer._events_conv = lambda mask, w: original(mask, w) * 1
    counter = ArithmeticCounter(im)
    with torch.no_grad(), counter:
        im(x)
    with pytest.raises(MultiplicationError, match="net.block2.conv1.*mul"):
        counter.assert_multiplication_free(driven)


@pytest.mark.parametrize("op", [
    lambda x: torch.addmv(x[0, 0, 0, 0], torch.ones(x.shape[-1], x.shape[-1]), x[0, 0, 0, 0]),  # a MAC by another name
    lambda x: F.layer_norm(x, x.shape[-1:]),
    lambda x: torch.prod(x, dim=-1),
])
def test_unclassified_operations_fail_closed(op):
    """An ATen op the counter does not know is 'unknown' and breaks the MFI check (never 'other')."""

    class Sneaky(nn.Module):
        def forward(self, x):
            return op(x)

    model = nn.Sequential(Sneaky())
    counter = ArithmeticCounter(model)
    with torch.no_grad(), counter:
        model(torch.rand(2, 1, 2, 3, 4))
    assert counter.totals()["unknown"] > 0
    with pytest.raises(MultiplicationError, match="0: .*unclassified"):
        counter.assert_multiplication_free(["0"])


def test_data_movement_is_other_and_free():
    model = nn.Sequential(nn.Flatten(), nn.Identity())
    counter = ArithmeticCounter(model)
    x = torch.rand(2, 3, 4)
    with torch.no_grad(), counter:
        torch.cat([model(x), model(x).round()], 1).permute(1, 0).clone()
    assert counter.totals()["unknown"] == 0 and counter.totals()["other"] > 0
    counter.assert_multiplication_free(["0", "1"])


def test_agreement_with_float_model():
    torch.manual_seed(5)
    model = randomize_bn(small_cnn(T=4, c=8, classes=10), gamma=(1.0, 2.5))
    x = torch.rand(256, 1, 8, 8)
    with torch.no_grad():
        ref = model(x)
        im = compile_integer(model, x[:2])
        out16 = im(x)
        out8 = compile_integer(model, x[:2], EngineConfig(weight_bits=8))(x)
    agree16 = (out16.argmax(1) == ref.argmax(1)).float().mean().item()
    agree8 = (out8.argmax(1) == ref.argmax(1)).float().mean().item()
    print(f"top-1 agreement: int16 {agree16:.4f}, int8 {agree8:.4f}")
    assert agree16 >= 0.99
    assert agree8 >= 0.9
    assert torch.allclose(out16.float(), ref, atol=0.05)


def test_opaque_code_runs_as_float_fallback():
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.lif = LIF()
            self.att = nn.Parameter(torch.rand(3, 1, 1))

        def forward(self, x):
            return torch.sigmoid(x * self.att) * self.lif(x)

    torch.manual_seed(6)
    model = randomize_bn(small_cnn(c=3))
    model.insert(4, Gate())
    x = torch.rand(4, 1, 8, 8)
    im = compile_integer(model, x[:2])
    assert list(im.opaque) == ["4"]
    with torch.no_grad():
        assert torch.allclose(im(x).float(), model(x), atol=0.05)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="weight_bits"):
        EngineConfig(weight_bits=40)
    with pytest.raises(ValueError, match="leak"):
        EngineConfig(leak="approx")


def _bars(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic 4-class images: a noisy horizontal/vertical bar in the top/bottom half."""
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.3
    pos = torch.randint(0, 4, (n,), generator=g)
    for i in range(n):
        r = pos[i] + (4 if y[i] >= 2 else 0)
        if y[i] % 2 == 0:
            x[i, 0, r, :] += 0.7
        else:
            x[i, 0, :, r] += 0.7
    return x, y


def test_agreement_on_a_trained_toy_model():
    g = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    model = small_cnn(T=4, c=8, classes=4)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(40):
        x, y = _bars(64, g)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = _bars(512, g)
    with torch.no_grad():
        ref = model(x).argmax(1)
        out = compile_integer(model, x[:2])(x).argmax(1)
    accuracy = (ref == y).float().mean().item()
    agreement = (out == ref).float().mean().item()
    print(f"trained toy: float accuracy {accuracy:.3f}, integer agreement {agreement:.4f}")
    assert accuracy > 0.6  # it learned something
    assert agreement >= 0.99


def test_plif_uses_its_learned_time_constant():
    from spikevision.neuron import PLIF, plif_multistep

    torch.manual_seed(8)
    x = torch.round(torch.randn(5, 3, 40) * 256) / 256
    for tau, shifts in ((2.0, True), (3.0, False)):
        plif = PLIF(init_tau=tau)
        neuron = IntNeuron(plif, EngineConfig())
        assert (not neuron.multiplies) == shifts
        xq = x.double() * FQ
        s = neuron(xq) / FQ
        ref = plif_multistep(x, plif.w.detach(), plif.p)
        assert (s.float() != ref).float().mean() <= (0.0 if shifts else 0.02)


def test_gac_gate_product_and_interpolated_sigmoid_against_float():
    """The gate of GAC's integer encoder: z = TA x SCA with the full product where it fits, sigmoid(z) from a
    linearly interpolated table; both against float64 (the bound of spikevision.deploy.engine.gac)."""
    from spikevision.deploy.engine.gac import (OPERAND_LIMIT, SIGMOID_RANGE, gate_product, sigmoid_lookup,
                                               sigmoid_table)

    F = 24
    g = torch.Generator().manual_seed(0)
    ta = torch.round(torch.randn(4000, generator=g, dtype=torch.float64) * 4 * 2**F).to(torch.int64)
    sca = torch.round(torch.randn(4000, generator=g, dtype=torch.float64) * 2 * 2**F).to(torch.int64)
    z = gate_product(ta, sca, F)
    exact = torch.floor(ta.double() * sca.double() / 2.0**F)
    assert torch.equal(z.double(), exact)  # every factor here is below 2^31: the full product, floored
    big = torch.tensor([2**40, -(2**40)], dtype=torch.int64)  # 65,536 in real units: the split product
    zb = gate_product(big, torch.tensor([2**10, 2**10]), F)
    assert torch.equal(zb, (big >> 12).clamp(-OPERAND_LIMIT, OPERAND_LIMIT) * (2**10 >> 12))
    zs = torch.linspace(-20, 20, 100_001, dtype=torch.float64)
    q = sigmoid_lookup(torch.round(zs * 2**F).to(torch.int64), sigmoid_table(F), F)
    err = (q.double() / 2**F - torch.sigmoid(zs.clamp(-SIGMOID_RANGE, SIGMOID_RANGE))).abs().max().item()
    assert err < 1e-6  # curvature bound 7.3e-7 plus rounding; the plain 2^-7 table was off by up to 1e-3
    assert (q[1:] >= q[:-1]).all()  # monotone
