"""Spiking neurons: surrogate gradients, fused multi-step dynamics, modules."""

from spikevision.neuron._native import native_status, set_native_enabled
from spikevision.neuron._triton import set_triton_enabled, triton_status
from spikevision.neuron.functional import NeuronParams, check_sequence, lif_multistep, plif_constants, plif_multistep
from spikevision.neuron.dispatch import use_kernels
from spikevision.neuron.modules import IF, LIF, NEURONS, PLIF, build_neuron
from spikevision.neuron.reference import lif_reference
from spikevision.neuron.surrogate import SURROGATES, ATan, Rectangular, Sigmoid, Surrogate, Triangle, get_surrogate

__all__ = [
    "NeuronParams", "lif_multistep", "plif_multistep", "plif_constants", "lif_reference", "check_sequence",
    "native_status", "set_native_enabled", "triton_status", "set_triton_enabled", "use_kernels",
    "LIF", "IF", "PLIF", "NEURONS", "build_neuron",
    "Surrogate", "Sigmoid", "ATan", "Rectangular", "Triangle", "SURROGATES", "get_surrogate",
]
