"""SurrogateWindowMonitor (the firing-rate counter is tested in tests/neuron/test_rates.py)."""

import pytest
import torch
from torch import nn

from spikevision.analysis import FiringRateMonitor, SurrogateWindowMonitor
from spikevision.neuron import IF, LIF, PLIF, NeuronParams, lif_reference


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



def test_the_analysis_names_are_the_neuron_counter():
    from spikevision import neuron
    from spikevision.analysis.monitors import SPIKING_TYPES

    assert FiringRateMonitor is neuron.FiringRateMonitor and SPIKING_TYPES == (neuron.SpikingNeuron,)
