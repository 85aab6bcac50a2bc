"""FiringRateMonitor, the one spike counter: hand-counted rates, hooks removed, no graph or tensors kept."""

import warnings

import pytest
import torch
from torch import nn

from spikevision.layers import TimeFolded
from spikevision.neuron import IF, LIF, FiringRateMonitor, NeuronParams, SpikingNeuron, lif_multistep


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
        for t in (acc.spikes, acc.step_sum, acc.chan_sum):
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


class _Doubled(SpikingNeuron):
    """A neuron type of one's own: two LIF passes; counted because it subclasses SpikingNeuron."""

    def __init__(self) -> None:
        super().__init__()
        self.p = NeuronParams(decay=1.0, gain=1.0)

    def forward(self, x):
        return lif_multistep(lif_multistep(x, self.p), self.p)


def test_spike_totals_any_neuron_type_and_graded_extra_types():
    net = nn.Sequential(IF(NeuronParams(v_th=1.0)), _Doubled(), nn.Tanh())
    x = _pattern_input().flatten(2)  # [T, B, 12]
    with FiringRateMonitor(net, extra_types=(nn.Tanh,)) as mon:
        net(x)
    rates = mon.rates()
    assert set(rates) == {"0", "1", "2"}
    # spikes pass through the IF-like _Doubled unchanged; their tanh is graded (0 or 0.76): counted as
    # non-zero outputs, not summed
    assert rates["0"].spikes == rates["1"].spikes == rates["2"].spikes == 48
    totals = mon.spike_totals("cpu")
    assert totals.dtype == torch.float64 and totals.tolist() == [3 * 48, 3 * rates["0"].elements]


def test_allow_empty_records_nothing():
    with pytest.raises(ValueError, match="no spiking layer"):
        FiringRateMonitor(nn.Linear(2, 2))
    with FiringRateMonitor(nn.Linear(2, 2), allow_empty=True) as mon:
        pass
    assert mon.spike_totals().tolist() == [0.0, 0.0] and mon.rates() == {}


def test_the_engines_old_counter_is_a_deprecated_alias():
    from spikevision.train.engine import SpikeCounter

    net = _if_net()
    with pytest.warns(DeprecationWarning, match="FiringRateMonitor"):
        counter = SpikeCounter(net)
    with counter:
        net(_pattern_input())
    assert counter.modules == [net[0]]
    assert counter.totals.tolist() == [48.0, 96.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FiringRateMonitor(net)  # the monitor itself warns about nothing


