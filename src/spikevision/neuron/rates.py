"""Firing rates of a network's neurons: forward hooks on every :class:`SpikingNeuron`, as a context manager.

The one spike counter of spikevision: the training engine's evaluation
(:func:`~spikevision.train.engine.evaluate`, the ``firing_rate`` metric,
through :meth:`FiringRateMonitor.spike_totals`), the analysis report and
profile, and the deploy benches all count with :class:`FiringRateMonitor`
(re-exported by :mod:`spikevision.analysis.monitors`).

A spiking layer is any :class:`~spikevision.neuron.modules.SpikingNeuron`
(``LIF``, ``IF``, ``PLIF``, or a subclass of your own), or a module whose type
is in the ``extra_types`` given to the monitor. Its output is the spike
sequence ``[T, B, ...]``.

The hooks keep no autograd graph and no tensors: each call adds detached
running sums (total spikes, spikes per step, optionally spikes per channel)
to small accumulators on the layer's device (no host sync), so a monitor can
stay on during a whole evaluation. A neuron's spikes are exactly 0 or 1, so
they are summed without a temporary copy; outputs of ``extra_types`` are
counted as non-zero values (graded or ternary spikes). The hooks are removed
when the ``with`` block exits, also on an exception.

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

from spikevision.neuron.modules import SpikingNeuron

__all__ = ["spiking_layers", "LayerRate", "LayerHooks", "FiringRateMonitor"]


def spiking_layers(model: nn.Module, extra_types: Iterable[type[nn.Module]] = ()) -> dict[str, nn.Module]:
    """Qualified name -> module for every spiking layer of ``model`` (neurons, ``extra_types``), in registration order."""
    types = (SpikingNeuron, *extra_types)
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
    """Running sums of one layer (detached tensors on the layer's device, no host sync)."""

    def __init__(self, binary: bool) -> None:
        self.binary = binary  # outputs are exactly 0/1 (a SpikingNeuron's): sum them, no temporary
        self.spikes: Tensor | None = None  # scalar, float64
        self.elements = 0
        self.step_sum: Tensor | None = None  # [T]
        self.step_elements = 0  # outputs per step, summed over calls
        self.chan_sum: Tensor | None = None  # [C]
        self.chan_count = 0
        self.neurons = 0
        self.calls = 0

    def _count(self, s: Tensor, keep: int) -> Tensor:
        """Events (non-zero outputs) of ``s`` summed over every dimension but ``keep``, in float64."""
        dims = [i for i in range(s.dim()) if i != keep]
        return s.sum(dims, dtype=torch.float64) if self.binary else (s != 0).sum(dims, dtype=torch.float64)

    def add(self, out: Tensor, channel_dim: int | None) -> None:
        if out.dim() < 2:
            raise ValueError(
                f"a spiking layer output must be [T, B, ...], got shape {list(out.shape)}; "
                "is this module applied to a time-major sequence?"
            )
        s = out.detach()
        T, B = s.shape[0], s.shape[1]
        if self.step_sum is not None and self.step_sum.shape[0] != T:
            raise ValueError(
                f"T changed between monitored calls ({self.step_sum.shape[0]} then {T}); "
                "use one monitor per T or call reset() in between"
            )
        d = None if channel_dim is None else channel_dim % s.dim()
        if d is not None and d < 2:
            raise ValueError(f"channel_dim must point past [T, B], got {channel_dim} for shape {list(s.shape)}")
        per_step = self._count(s, 0)  # [T]
        total = per_step.sum()
        self.spikes = total if self.spikes is None else self.spikes + total
        self.elements += s.numel()
        self.neurons = s.numel() // max(1, T * B)
        self.calls += 1
        self.step_sum = per_step if self.step_sum is None else self.step_sum + per_step
        self.step_elements += s[0].numel()
        if d is not None:
            c = self._count(s, d)  # [C]
            if self.chan_sum is not None and self.chan_sum.shape != c.shape:
                raise ValueError(f"channel count changed between calls: {self.chan_sum.shape[0]} vs {c.shape[0]}")
            self.chan_sum = c if self.chan_sum is None else self.chan_sum + c
            self.chan_count += s.numel() // s.shape[d]

    def result(self) -> LayerRate:
        if self.calls == 0:
            return LayerRate(float("nan"), [], None, 0, 0, 0, 0)
        spikes = float(self.spikes.item())
        per_step = (self.step_sum / max(1, self.step_elements)).tolist()
        per_chan = (self.chan_sum / self.chan_count).tolist() if self.chan_sum is not None else None
        return LayerRate(spikes / self.elements, per_step, per_chan, int(spikes), self.elements, self.neurons,
                         self.calls)


class LayerHooks:
    """A forward hook on each of ``layers`` while a ``with`` block runs; removed on exit, also after an error.

    Subclasses implement :meth:`_hook` (the hook of one layer, by qualified name).
    """

    layers: dict[str, nn.Module]

    def _hook(self, name: str):
        raise NotImplementedError

    def __enter__(self):
        self._handles = []
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
        for h in getattr(self, "_handles", ()):
            h.remove()
        self._handles = []


class FiringRateMonitor(LayerHooks):
    """Record firing rates of every spiking layer while the ``with`` block runs.

    Args:
        model: any module; its spiking layers are found by type.
        per_channel: also record per-channel rates.
        channel_dim: channel dimension of the spike tensor ``[T, B, ...]``
            (2 for ``[T, B, C, H, W]``; -1 for token tensors ``[T, B, L, C]``).
        extra_types: further module types to treat as spiking layers (their non-zero outputs count).
        allow_empty: accept a model without spiking layers (nothing is recorded; the training
            engine's evaluation takes any model).

    Raises:
        ValueError: the model has no spiking layer (unless ``allow_empty``).
    """

    def __init__(self, model: nn.Module, *, per_channel: bool = False, channel_dim: int = 2,
                 extra_types: Iterable[type[nn.Module]] = (), allow_empty: bool = False) -> None:
        self.layers = spiking_layers(model, extra_types)
        if not self.layers and not allow_empty:
            names = sorted(t.__name__ for t in (SpikingNeuron, *extra_types))
            raise ValueError(
                f"{type(model).__name__} has no spiking layer (looked for {names}); "
                "pass extra_types=(YourNeuron,) for other neuron modules, or subclass SpikingNeuron"
            )
        self.per_channel = per_channel
        self.channel_dim = channel_dim
        self.reset()

    def _hook(self, name: str):
        cdim = self.channel_dim if self.per_channel else None

        def hook(module: nn.Module, inputs, output) -> None:
            with torch.no_grad():
                self._acc[name].add(output, cdim)

        return hook

    def reset(self) -> None:
        """Forget everything recorded so far."""
        self._acc = {name: _Accumulator(isinstance(m, SpikingNeuron)) for name, m in self.layers.items()}

    def rates(self) -> dict[str, LayerRate]:
        """Per-layer statistics, keyed by qualified module name."""
        return {name: acc.result() for name, acc in self._acc.items()}

    def mean_rate(self) -> float:
        """Spikes per neuron per step over all layers, weighted by neuron count."""
        res = [r for r in self.rates().values() if r.calls]
        elements = sum(r.elements for r in res)
        return sum(r.spikes for r in res) / elements if elements else float("nan")

    def spike_totals(self, device: torch.device | str | None = None) -> Tensor:
        """``[spikes, outputs]`` over all layers and calls, float64 on ``device``, without a host sync.

        What the training engine all-reduces over ranks for its ``firing_rate`` metric (spikes / outputs).
        """
        sums = [acc.spikes if device is None else acc.spikes.to(device)
                for acc in self._acc.values() if acc.spikes is not None]
        spikes = torch.stack(sums).sum() if sums else torch.zeros((), dtype=torch.float64, device=device)
        elements = sum(acc.elements for acc in self._acc.values())
        # a fill, not a copy from the host: no sync
        return torch.stack([spikes, torch.full((), float(elements), dtype=torch.float64, device=spikes.device)])

    def activation_sparsity(self) -> float:
        """NeuroBench activation sparsity: ``1 - nonzero / total`` over all spiking-layer outputs."""
        return 1.0 - self.mean_rate()


