"""Firing-rate monitors: forward hooks on every spiking layer, as a context manager.

A spiking layer is any module whose type is in :data:`SPIKING_TYPES`
(spikevision's :class:`~spikevision.neuron.LIF`, :class:`~spikevision.neuron.IF`,
:class:`~spikevision.neuron.PLIF`) or in the ``extra_types`` given to the
monitor. Its output is the spike sequence ``[T, B, ...]``.

The hooks keep no autograd graph and no tensors: each call adds detached
running sums (total spikes, spikes per step, optionally spikes per channel)
to small accumulators, so a monitor can stay on during a whole evaluation.
The hooks are removed when the ``with`` block exits, also on an exception.

Definitions (the ones the papers use, e.g. the GAC authors' issue #7 and
MS-ResNet's "about one spike per neuron per sample"):

* ``rate``: mean of the layer's spike tensor over everything (time, batch,
  neurons): spikes per neuron per time step. ``rate * T`` is spikes per neuron
  per sample.
* ``rate_per_step[t]``: the same mean restricted to step ``t``.
* ``rate_per_channel[c]``: mean over time, batch and the other neuron
  dimensions of channel ``c`` (dimension ``channel_dim`` of ``[T, B, ...]``,
  default 2: ``C`` of ``[T, B, C, H, W]``; for token tensors ``[T, B, L, C]``
  pass ``channel_dim=-1``).
* activation sparsity (NeuroBench): ``1 - nonzero / total`` over all spiking
  layers' outputs: :meth:`FiringRateMonitor.activation_sparsity`.

Example:
    >>> with FiringRateMonitor(model) as mon:
    ...     model(images)
    >>> for name, r in mon.rates().items():
    ...     print(name, r.rate, r.rate_per_step)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor, nn

from spikevision.neuron.functional import plif_constants
from spikevision.neuron.modules import LIF, PLIF
from spikevision.neuron.reference import lif_reference

__all__ = [
    "SPIKING_TYPES", "spiking_layers", "LayerRate", "FiringRateMonitor", "SurrogateWindowMonitor",
]

#: Module types treated as spiking layers (IF subclasses LIF).
SPIKING_TYPES: tuple[type[nn.Module], ...] = (LIF, PLIF)


def spiking_layers(model: nn.Module, extra_types: Iterable[type[nn.Module]] = ()) -> dict[str, nn.Module]:
    """Qualified name -> module for every spiking layer of ``model``, in registration order."""
    types = SPIKING_TYPES + tuple(extra_types)
    return {name: m for name, m in model.named_modules() if isinstance(m, types)}


@dataclass(frozen=True)
class LayerRate:
    """Firing statistics of one spiking layer over all monitored calls.

    Attributes:
        rate: spikes per neuron per time step (mean of the spike tensor).
        rate_per_step: one mean per time step ``t`` (list of length ``T``).
        rate_per_channel: one mean per channel, or None if not recorded.
        spikes: total number of non-zero outputs.
        elements: total number of outputs (neurons x steps x samples).
        neurons: neurons per sample per step (output elements / (T * B) of one call).
        calls: number of forward calls recorded.
    """

    rate: float
    rate_per_step: list[float]
    rate_per_channel: list[float] | None
    spikes: int
    elements: int
    neurons: int
    calls: int


class _Accumulator:
    """Running sums of one layer (detached tensors on the layer's device)."""

    def __init__(self) -> None:
        self.spikes: Tensor | None = None  # scalar, float64
        self.elements = 0
        self.step_sum: Tensor | None = None  # [T]
        self.step_count: Tensor | None = None  # [T]
        self.chan_sum: Tensor | None = None  # [C]
        self.chan_count = 0
        self.neurons = 0
        self.calls = 0

    def add(self, out: Tensor, channel_dim: int | None) -> None:
        if out.dim() < 2:
            raise ValueError(
                f"a spiking layer output must be [T, B, ...], got shape {list(out.shape)}; "
                "is this module applied to a time-major sequence?"
            )
        s = out.detach()
        nz = (s != 0).to(torch.float64)  # count events (spikes may be graded in {0, 1} or ternary)
        T, B = s.shape[0], s.shape[1]
        per_step = nz.flatten(1).sum(1)  # [T]
        total = per_step.sum()
        self.spikes = total if self.spikes is None else self.spikes + total
        self.elements += s.numel()
        self.neurons = s.numel() // (T * B)
        self.calls += 1
        count = torch.full((T,), s[0].numel(), dtype=torch.float64, device=s.device)
        if self.step_sum is not None and self.step_sum.shape[0] != T:
            raise ValueError(
                f"T changed between monitored calls ({self.step_sum.shape[0]} then {T}); "
                "use one monitor per T or call reset() in between"
            )
        self.step_sum = per_step if self.step_sum is None else self.step_sum + per_step
        self.step_count = count if self.step_count is None else self.step_count + count
        if channel_dim is not None:
            d = channel_dim % s.dim()
            if d < 2:
                raise ValueError(f"channel_dim must point past [T, B], got {channel_dim} for shape {list(s.shape)}")
            c = nz.transpose(0, d).flatten(1).sum(1)  # [C]
            if self.chan_sum is not None and self.chan_sum.shape != c.shape:
                raise ValueError(f"channel count changed between calls: {self.chan_sum.shape[0]} vs {c.shape[0]}")
            self.chan_sum = c if self.chan_sum is None else self.chan_sum + c
            self.chan_count += s.numel() // s.shape[d]

    def result(self) -> LayerRate:
        if self.calls == 0:
            return LayerRate(float("nan"), [], None, 0, 0, 0, 0)
        spikes = float(self.spikes.item())
        per_step = (self.step_sum / self.step_count.clamp_min(1)).tolist()
        per_chan = (self.chan_sum / self.chan_count).tolist() if self.chan_sum is not None else None
        return LayerRate(spikes / self.elements, per_step, per_chan, int(spikes), self.elements, self.neurons,
                         self.calls)


class FiringRateMonitor:
    """Record firing rates of every spiking layer while the ``with`` block runs.

    Args:
        model: any module; its spiking layers are found by type.
        per_channel: also record per-channel rates.
        channel_dim: channel dimension of the spike tensor ``[T, B, ...]``
            (2 for ``[T, B, C, H, W]``; -1 for token tensors ``[T, B, L, C]``).
        extra_types: further module types to treat as spiking layers.

    Raises:
        ValueError: the model has no spiking layer.
    """

    def __init__(self, model: nn.Module, *, per_channel: bool = False, channel_dim: int = 2,
                 extra_types: Iterable[type[nn.Module]] = ()) -> None:
        self.layers = spiking_layers(model, extra_types)
        if not self.layers:
            names = sorted(t.__name__ for t in SPIKING_TYPES + tuple(extra_types))
            raise ValueError(
                f"{type(model).__name__} has no spiking layer (looked for {names}); "
                "pass extra_types=(YourNeuron,) for other neuron modules"
            )
        self.per_channel = per_channel
        self.channel_dim = channel_dim
        self._acc = {name: _Accumulator() for name in self.layers}
        self._handles: list = []

    def _hook(self, name: str):
        acc, cdim = self._acc[name], (self.channel_dim if self.per_channel else None)

        def hook(module: nn.Module, inputs, output) -> None:
            with torch.no_grad():
                acc.add(output, cdim)

        return hook

    def __enter__(self) -> "FiringRateMonitor":
        try:
            for name, m in self.layers.items():
                self._handles.append(m.register_forward_hook(self._hook(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook (idempotent)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def reset(self) -> None:
        """Forget everything recorded so far."""
        self._acc = {name: _Accumulator() for name in self.layers}

    def rates(self) -> dict[str, LayerRate]:
        """Per-layer statistics, keyed by qualified module name."""
        return {name: acc.result() for name, acc in self._acc.items()}

    def mean_rate(self) -> float:
        """Spikes per neuron per step over all layers, weighted by neuron count."""
        res = [r for r in self.rates().values() if r.calls]
        elements = sum(r.elements for r in res)
        return sum(r.spikes for r in res) / elements if elements else float("nan")

    def activation_sparsity(self) -> float:
        """NeuroBench activation sparsity: ``1 - nonzero / total`` over all spiking-layer outputs."""
        return 1.0 - self.mean_rate()


class SurrogateWindowMonitor:
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
        model: its LIF/IF/PLIF modules are monitored.
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
            raise ValueError(f"{type(model).__name__} has no LIF/IF/PLIF module to monitor")
        self.half_width = half_width
        self._inside: dict[str, float] = {n: 0.0 for n in self.layers}
        self._total: dict[str, int] = {n: 0 for n in self.layers}
        self._mismatch: dict[str, float] = {n: 0.0 for n in self.layers}
        self._handles: list = []

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            with torch.no_grad():
                x = inputs[0].detach()
                p = module.p
                if isinstance(module, PLIF):  # its constants as its kernel computes them, in x's dtype
                    decay, gain = plif_constants(module.w.detach().to(x.dtype), module.decay_input)
                    s, h = lif_reference(x, p, decay=decay, gain=gain)
                else:
                    s, h = lif_reference(x, p)
                hw = self.half_width
                if hw is None:
                    hw = getattr(p.surrogate, "width", 1.0) / 2.0
                self._inside[name] += float(((h - p.v_th).abs() < hw).sum())
                self._total[name] += h.numel()
                self._mismatch[name] += float((s != output.detach()).sum())

        return hook

    def __enter__(self) -> "SurrogateWindowMonitor":
        try:
            for name, m in self.layers.items():
                self._handles.append(m.register_forward_hook(self._hook(name)))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def fractions(self) -> dict[str, float]:
        """Layer -> fraction of neuron-steps with ``|H - v_th| < half_width``."""
        return {n: self._inside[n] / self._total[n] for n in self.layers if self._total[n]}

    def mismatch(self) -> dict[str, float]:
        """Layer -> fraction of recomputed spikes that differ from the layer's output (should be 0)."""
        return {n: self._mismatch[n] / self._total[n] for n in self.layers if self._total[n]}
