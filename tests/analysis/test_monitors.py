"""FiringRateMonitor: hand-counted rates, hooks removed, no graph or tensors kept."""

import pytest
import torch
from torch import nn

from spikevision.analysis import FiringRateMonitor, SurrogateWindowMonitor
from spikevision.layers import TimeFolded
from spikevision.neuron import IF, LIF, PLIF, NeuronParams, lif_reference


def _if_net():
    # IF, v_th 1, hard reset to 0, fire when H >= 1
    return nn.Sequential(IF(NeuronParams(v_th=1.0, reset="hard", v_reset=0.0, v_rest=0.0, strict=False)))


def _pattern_input(T=4, B=2):
    # channel 0 gets 0.6 per step -> H = 0.6, 1.2 (spike, reset), 0.6, 1.2 (spike): spikes at t = 1, 3
    # channel 1 gets 1.5 -> spike every step; channel 2 gets 0 -> never
    x = torch.zeros(T, B, 3, 2, 2)
    x[:, :, 0] = 0.6
    x[:, :, 1] = 1.5
    return x


def test_rates_equal_hand_count():
    net = _if_net()
    with FiringRateMonitor(net, per_channel=True) as mon:
        net(_pattern_input())
    r = mon.rates()["0"]
    assert r.rate_per_step == pytest.approx([1 / 3, 2 / 3, 1 / 3, 2 / 3])
    assert r.rate_per_channel == pytest.approx([0.5, 1.0, 0.0])
    assert r.rate == pytest.approx(0.5)
    assert r.spikes == 2 * 4 * (2 + 4)  # B * pixels * (spikes of ch0 + ch1)
    assert r.elements == 4 * 2 * 3 * 4 and r.neurons == 12 and r.calls == 1
    assert mon.activation_sparsity() == pytest.approx(0.5)


def test_accumulates_over_calls_and_batches():
    net = _if_net()
    x = _pattern_input(B=2)
    x2 = torch.zeros(4, 3, 3, 2, 2)  # a silent batch of 3
    with FiringRateMonitor(net) as mon:
        net(x)
        net(x2)
    r = mon.rates()["0"]
    assert r.calls == 2
    assert r.rate == pytest.approx(48 / (96 + 144))  # 48 spikes over 96 + 144 neuron-steps
    assert r.rate_per_step == pytest.approx([v * 2 / 5 for v in (1 / 3, 2 / 3, 1 / 3, 2 / 3)])
    mon.reset()
    assert mon.rates()["0"].calls == 0


def test_hooks_removed_and_no_graph_kept():
    net = nn.Sequential(TimeFolded(nn.Linear(5, 6)), LIF(), TimeFolded(nn.Linear(6, 3)), LIF())
    x = torch.randn(3, 2, 5, requires_grad=True)
    mon = FiringRateMonitor(net, per_channel=True, channel_dim=-1)
    with mon:
        assert all(len(m._forward_hooks) == 1 for m in (net[1], net[3]))
        net(x).sum().backward()
    assert all(len(m._forward_hooks) == 0 for m in net.modules())
    for acc in mon._acc.values():
        for t in (acc.spikes, acc.step_sum, acc.step_count, acc.chan_sum):
            assert not t.requires_grad and t.grad_fn is None
            assert t.numel() <= 6  # running sums only, no stored activations
    # hooks also go away when the block raises
    with pytest.raises(RuntimeError, match="boom"):
        with FiringRateMonitor(net):
            raise RuntimeError("boom")
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def test_errors():
    with pytest.raises(ValueError, match="no spiking layer"):
        FiringRateMonitor(nn.Linear(2, 2))
    net = _if_net()
    with FiringRateMonitor(net) as mon:
        net(_pattern_input(T=4))
        with pytest.raises(ValueError, match="T changed"):
            net(_pattern_input(T=3))


@pytest.mark.parametrize("neuron", [
    LIF(NeuronParams(decay=0.25, gain=1.0, v_th=0.5, strict=True)),
    LIF(NeuronParams(decay=0.8744, gain=1.0, v_th=1.0, reset="soft", strict=True)),
    IF(NeuronParams(v_th=1.0)),
    PLIF(init_tau=2.0),
])
def test_surrogate_window_monitor_recomputes_membranes(neuron):
    torch.manual_seed(0)
    net = nn.Sequential(neuron)
    x = torch.randn(5, 3, 7) * 0.8
    with SurrogateWindowMonitor(net, half_width=0.25) as mon:
        net(x)
    assert mon.mismatch()["0"] == 0.0  # recomputed spikes equal the fused kernel's
    inv_tau = torch.sigmoid(neuron.w.detach()) if isinstance(neuron, PLIF) else None
    _, h = lif_reference(x, neuron.p, **({"decay": 1 - inv_tau, "gain": inv_tau} if inv_tau is not None else {}))
    assert mon.fractions()["0"] == pytest.approx(float(((h - neuron.p.v_th).abs() < 0.25).float().mean()))
    assert len(neuron._forward_hooks) == 0

