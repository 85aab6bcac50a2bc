"""Spiking neurons: surrogate gradients, fused multi-step dynamics, modules."""

from spikevision.neuron._native import native_status, set_native_enabled
from spikevision.neuron._triton import set_triton_enabled, triton_status
from spikevision.neuron.functional import NeuronParams, check_sequence, lif_multistep, plif_multistep
from spikevision.neuron.modules import IF, LIF, NEURONS, PLIF, build_neuron
from spikevision.neuron.surrogate import SURROGATES, ATan, Rectangular, Sigmoid, Surrogate, Triangle, get_surrogate

__all__ = [
    "NeuronParams", "lif_multistep", "plif_multistep", "check_sequence", "native_status", "set_native_enabled",
    "triton_status", "set_triton_enabled",
    "LIF", "IF", "PLIF", "NEURONS", "build_neuron",
    "Surrogate", "Sigmoid", "ATan", "Rectangular", "Triangle", "SURROGATES", "get_surrogate",
]
