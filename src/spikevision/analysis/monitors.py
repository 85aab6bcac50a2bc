"""Monitors of a network's spiking layers: firing rates, and the fraction of membranes in the surrogate window.

Firing rates are counted by :class:`~spikevision.neuron.rates.FiringRateMonitor`
(forward hooks on every :class:`~spikevision.neuron.SpikingNeuron`; the
definitions of rate, per-step and per-channel rate and activation sparsity are
in :mod:`spikevision.neuron.rates`), the one spike counter of spikevision,
which the training engine uses too; it is re-exported here with
:class:`~spikevision.neuron.rates.LayerRate` and
:func:`~spikevision.neuron.rates.spiking_layers`.
:class:`SurrogateWindowMonitor` recomputes each layer's membranes.

Example:
    >>> with FiringRateMonitor(model) as mon:
    ...     model(images)
    >>> for name, r in mon.rates().items():
    ...     print(name, r.rate, r.rate_per_step)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikevision.neuron.modules import SpikingNeuron
from spikevision.neuron.rates import FiringRateMonitor, LayerHooks, LayerRate, spiking_layers
from spikevision.neuron.reference import lif_reference

__all__ = [
    "SPIKING_TYPES", "spiking_layers", "LayerRate", "FiringRateMonitor", "SurrogateWindowMonitor",
]

#: Module types treated as spiking layers (kept for code that imports it): every neuron module subclasses
#: SpikingNeuron, which is what spikevision itself asks.
SPIKING_TYPES: tuple[type[nn.Module], ...] = (SpikingNeuron,)


class SurrogateWindowMonitor(LayerHooks):
    """Fraction of charged membranes inside the surrogate-gradient window, per spiking layer.

    The quantity behind MS-ResNet's gradient argument (Hu et al., TNNLS 2024,
    arXiv 2112.08954): a neuron passes gradient only where
    ``|H - v_th| < half_width``, so in a vanilla spiking ResNet this fraction
    bounds each post-addition neuron's ``phi``. The membranes are recomputed
    from each layer's input by the plain loop
    :func:`~spikevision.neuron.reference.lif_reference` (the layer's own kernel
    does not return them) and the recomputed spikes are compared with the
    layer's output (``mismatch``, expected 0 up to float rounding at the
    threshold).

    Args:
        model: its neuron modules (:class:`~spikevision.neuron.SpikingNeuron`) are monitored.
        half_width: window half-width in membrane units; None takes the
            surrogate's ``width / 2`` (rectangular, triangle) and 0.5 otherwise.

    Example:
        >>> with SurrogateWindowMonitor(model) as mon:
        ...     model(images)
        >>> mon.fractions()  # {"stages.0.0.lif1": 0.31, ...}
    """

    def __init__(self, model: nn.Module, *, half_width: float | None = None) -> None:
        self.layers = spiking_layers(model)
        if not self.layers:
            raise ValueError(f"{type(model).__name__} has no neuron module (SpikingNeuron: LIF/IF/PLIF) to monitor")
        self.half_width = half_width
        self._inside: dict[str, float] = {n: 0.0 for n in self.layers}
        self._total: dict[str, int] = {n: 0 for n in self.layers}
        self._mismatch: dict[str, float] = {n: 0.0 for n in self.layers}

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            with torch.no_grad():
                x = inputs[0].detach()
                p = module.p
                decay, gain = module.kernel_constants(x.dtype)  # as its kernel computes them (PLIF: learned)
                s, h = lif_reference(x, p, decay=decay, gain=gain)
                hw = self.half_width
                if hw is None:
                    hw = getattr(p.surrogate, "width", 1.0) / 2.0
                self._inside[name] += float(((h - p.v_th).abs() < hw).sum())
                self._total[name] += h.numel()
                self._mismatch[name] += float((s != output.detach()).sum())

        return hook

    def fractions(self) -> dict[str, float]:
        """Layer -> fraction of neuron-steps with ``|H - v_th| < half_width``."""
        return {n: self._inside[n] / self._total[n] for n in self.layers if self._total[n]}

    def mismatch(self) -> dict[str, float]:
        """Layer -> fraction of recomputed spikes that differ from the layer's output (should be 0)."""
        return {n: self._mismatch[n] / self._total[n] for n in self.layers if self._total[n]}
