"""Spiking neurons: parameters, surrogate gradients, fused multi-step kernels, modules, spike counts.

Layout (imports run one way, top to bottom):

* :mod:`~spikevision.neuron.surrogate`, :mod:`~spikevision.neuron.params`: surrogates and
  :class:`NeuronParams`;
* :mod:`~spikevision.neuron.kernel`: the contract each kernel implements, and the tables they share;
  the kernels: ``_native`` (C), ``_triton`` (Triton), ``_torch`` (PyTorch);
* :mod:`~spikevision.neuron.dispatch`: which kernel runs a call, :func:`use_kernels`;
* :mod:`~spikevision.neuron.functional`: :func:`lif_multistep` and :func:`plif_multistep` (the equations);
* :mod:`~spikevision.neuron.reference`: the same equations as a plain loop, what the kernels are tested against;
* :mod:`~spikevision.neuron.modules`: :class:`SpikingNeuron` and the modules ``LIF``, ``IF``, ``PLIF``;
* :mod:`~spikevision.neuron.rates`: :class:`FiringRateMonitor`, the one spike counter.
"""

from spikevision.neuron._native import native_status
from spikevision.neuron._triton import triton_status
from spikevision.neuron.dispatch import set_native_enabled, set_triton_enabled, use_kernels
from spikevision.neuron.functional import lif_multistep, plif_multistep
from spikevision.neuron.modules import IF, LIF, NEURONS, PLIF, SpikingNeuron, build_neuron
from spikevision.neuron.params import NeuronParams, check_sequence, plif_constants
from spikevision.neuron.rates import FiringRateMonitor, LayerRate, spiking_layers
from spikevision.neuron.reference import lif_reference
from spikevision.neuron.surrogate import SURROGATES, ATan, Rectangular, Sigmoid, Surrogate, Triangle, get_surrogate

__all__ = [
    "NeuronParams", "lif_multistep", "plif_multistep", "plif_constants", "lif_reference", "check_sequence",
    "native_status", "set_native_enabled", "triton_status", "set_triton_enabled", "use_kernels",
    "SpikingNeuron", "LIF", "IF", "PLIF", "NEURONS", "build_neuron",
    "FiringRateMonitor", "LayerRate", "spiking_layers",
    "Surrogate", "Sigmoid", "ATan", "Rectangular", "Triangle", "SURROGATES", "get_surrogate",
]
