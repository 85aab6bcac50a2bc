"""The neuron modules: thin and stateless, one SpikingNeuron base that the tools ask."""

import pytest
import torch
from torch import nn

from spikevision.neuron import IF, LIF, NEURONS, PLIF, NeuronParams, SpikingNeuron, build_neuron, plif_constants


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
    assert abs(PLIF(init_tau=3.0).tau - 3.0) < 1e-6


def test_every_neuron_type_is_a_spiking_neuron():
    assert all(issubclass(cls, SpikingNeuron) for cls in NEURONS.values())
    assert isinstance(build_neuron("if", NeuronParams()), SpikingNeuron)
    assert not isinstance(nn.ReLU(), SpikingNeuron)


def test_kernel_constants_and_effective_params():
    lif = LIF(decay=0.25, gain=1.0)
    assert lif.kernel_constants(torch.float32) == (0.25, 1.0) and lif.effective_params() is lif.p
    plif = PLIF(init_tau=3.0, decay_input=False)
    decay, gain = plif.kernel_constants(torch.float64)
    expected = plif_constants(plif.w.detach().double(), decay_input=False)
    assert decay.dtype == torch.float64 and not decay.requires_grad
    assert float(decay) == float(expected[0]) and gain == 1.0
    assert plif.effective_params() == plif.p.replace(decay=float(decay), gain=1.0)
