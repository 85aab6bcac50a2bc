"""Spiking neurons: surrogate gradients, fused multi-step dynamics, modules."""

from spikevision.neuron.functional import NeuronParams, check_sequence, lif_multistep, plif_multistep
from spikevision.neuron.modules import IF, LIF, NEURONS, PLIF, build_neuron
from spikevision.neuron.surrogate import SURROGATES, ATan, Rectangular, Sigmoid, Surrogate, Triangle, get_surrogate

__all__ = [
    "NeuronParams", "lif_multistep", "plif_multistep", "check_sequence",
    "LIF", "IF", "PLIF", "NEURONS", "build_neuron",
    "Surrogate", "Sigmoid", "ATan", "Rectangular", "Triangle", "SURROGATES", "get_surrogate",
]
