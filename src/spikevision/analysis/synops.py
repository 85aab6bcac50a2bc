"""Synaptic operation counts measured on real inputs, for energy: dense MACs, ACs, MACs, neuron updates, additions.

What a network's synapses and neurons do, in the units the papers' energy
estimates use (:mod:`spikevision.analysis.energy`). Not to be confused with
:mod:`spikevision.deploy.engine.arithmetic`, which counts every executed ATen
operation by arithmetic kind to prove multiplication-free inference.

:class:`SynOpsCounter` hooks every synaptic layer (``nn.Conv1d/2d/3d``,
``nn.Linear``, also inside :class:`~spikevision.layers.TimeFolded`) and every
spiking layer of a model, runs nothing itself, and counts what the forward
passes executed inside its ``with`` block. All counts are totals over the
recorded calls; :meth:`SynOpsCounter.result` divides by the number of samples.

**Definitions** (per synaptic layer and call, bias additions never counted):

* ``dense_macs``: output elements x fan-in (``C_in/groups * prod(kernel)`` or
  ``in_features``), the usual FLOPs/MACs count of the papers (thop, ptflops),
  padding positions included.
* input kind: ``"binary"`` if every input value is 0 or 1 (spikes);
  ``"integer"`` if every value is an integer (e.g. S-ResNet's block sums
  ``s_k + ... + s_0``); else ``"real"``.
* ``synops`` (NeuroBench's *effective* operations): the exact number of
  (non-zero input, non-zero weight, output) connections. For a linear layer
  with no zero weight that is ``nnz(input) * out_features``; for a
  convolution it is computed exactly, boundaries and strides included, by
  convolving the non-zero mask of the input with the 0/1 mask of the weights
  (an all-ones kernel when no weight is zero).
* ``acs``: ``synops`` of binary-input layers (each spike adds one weight).
  ``macs``: ``dense_macs`` of real-input layers (a multiplier array does not
  skip zero activations). Integer-input layers follow ``integer_inputs``:
  ``"mac"`` (default, conservative: ``dense_macs`` as MACs) or
  ``"repeated_ac"`` (an input of value ``k`` is ``|k|`` accumulates of the
  weight: ``ACs = sum over connections of |x|``).
* ``nb_dense`` (NeuroBench's *dense*): connections with all-ones input and
  weights, i.e. ``dense_macs`` minus the connections to padding.
* ``neuron_updates``: one per neuron per time step (output elements of every
  spiking layer).
* ``additions``: element-wise ``tensor + tensor`` (and ``-``) executed directly
  in a container module's own ``forward`` (residual sums of MS-ResNet and
  S-ResNet blocks, the spiking MLP's shortcut and SPE node sums), one per
  output element; found generically by a ``TorchFunctionMode``, so additions
  inside leaf layers (BN, and BNTT's per-step BN) and neurons are not counted.

These follow NeuroBench (Yik et al., "The neurobench framework for
benchmarking neuromorphic computing algorithms and systems", Nature
Communications 2025, arXiv 2304.04640): footprint = parameter + buffer bytes
(:func:`footprint`), connection sparsity = fraction of zero weights of
synaptic layers (:func:`connection_sparsity`), activation sparsity = fraction
of zero neuron outputs (:class:`~spikevision.analysis.monitors.FiringRateMonitor`),
Effective_MACs / Effective_ACs / Dense per sample
(:meth:`OpsResult.neurobench`). One difference: NeuroBench treats a layer as
spiking when its inputs lie in ``{-1, 0, 1}``; here ``-1`` makes an input
``"integer"`` (no spikevision model emits negative spikes).

Stems fed by the direct encoder run on all ``T`` copies of the image, and are
counted as executed: ``T`` times (``repeated_input_once=True`` counts a layer
whose non-binary input is identical at every step once, as an implementation
could; spike inputs are never deduplicated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from spikevision.layers.norm import BNTT2d
from spikevision.neuron.modules import SpikingNeuron

__all__ = [
    "SYNAPTIC_TYPES", "InputKind", "IntegerMode", "LayerOps", "OpsResult", "SynOpsCounter", "input_kind",
    "conv_connections", "linear_connections", "footprint", "connection_sparsity", "dense_macs", "forward_hooked",
]

SYNAPTIC_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
InputKind = Literal["binary", "integer", "real"]
IntegerMode = Literal["mac", "repeated_ac"]
_KIND_ORDER = {"binary": 0, "integer": 1, "real": 2}
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_ADD_FUNCS = {torch.add, torch.sub, torch.Tensor.add, torch.Tensor.sub, torch.Tensor.__add__, torch.Tensor.__radd__,
              torch.Tensor.__sub__, torch.Tensor.__rsub__, torch.Tensor.__iadd__, torch.Tensor.__isub__,
              torch.Tensor.add_, torch.Tensor.sub_}


def input_kind(x: Tensor) -> InputKind:
    """``"binary"`` (all values in {0, 1}), ``"integer"`` (all integers) or ``"real"``."""
    if bool(((x == 0) | (x == 1)).all()):
        return "binary"
    if not x.is_floating_point() or bool((x == torch.round(x)).all()):
        return "integer"
    return "real"


def _weight_mask(weight: Tensor) -> Tensor | None:
    """0/1 mask of the non-zero weights, or None when no weight is zero (the fast path)."""
    nz = weight.detach() != 0
    return None if bool(nz.all()) else nz.float()


def conv_connections(conv: nn.Module, a: Tensor, weight_mask: Tensor | None = None) -> float:
    """``sum over (input, output) connections of a[input]`` for a convolution.

    With ``a`` the 0/1 mask of non-zero inputs this is the number of synaptic
    operations; with ``|x|`` it counts repeated accumulates; with all ones it
    is NeuroBench's dense count. Connections to zero weights are skipped when
    ``weight_mask`` (0/1, the weight's shape) is given.

    Args:
        conv: an ``nn.Conv1d/2d/3d`` (its stride, padding, dilation, groups and
            padding mode are used).
        a: non-negative per-input multiplicities, shaped like the input
            ``[N, C_in, *spatial]``.
        weight_mask: None means every weight is non-zero.
    """
    nd = conv.weight.dim() - 2
    if a.dim() == nd + 1:  # unbatched input
        a = a.unsqueeze(0)
    a = a.detach().float()
    padding = conv.padding
    if conv.padding_mode != "zeros":
        a = F.pad(a, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
        padding = 0
    fn, g = _CONV_FN[nd], conv.groups
    if weight_mask is None:
        # every weight non-zero: sum the group's input channels, convolve with a one-channel all-ones kernel,
        # and multiply by the output channels of the group
        n, cin = a.shape[:2]
        a_g = a.reshape(n, g, cin // g, *a.shape[2:]).sum(2)  # [N, g, *spatial]
        ones = torch.ones(g, 1, *conv.kernel_size, dtype=a.dtype, device=a.device)
        per_out = fn(a_g, ones, None, conv.stride, padding, conv.dilation, g)  # [N, g, *out]
        return float(per_out.double().sum()) * (conv.out_channels // g)
    out = fn(a, weight_mask.to(a), None, conv.stride, padding, conv.dilation, g)
    return float(out.double().sum())


def linear_connections(linear: nn.Linear, a: Tensor, weight_mask: Tensor | None = None) -> float:
    """``sum over (input, output) connections of a[input]`` for ``nn.Linear`` (``a`` shaped like the input)."""
    a = a.detach().reshape(-1, linear.in_features).double()
    if weight_mask is None:
        return float(a.sum()) * linear.out_features
    return float((a.sum(0) * weight_mask.double().sum(0)).sum())


def _connections(layer: nn.Module, a: Tensor, weight_mask: Tensor | None) -> float:
    if isinstance(layer, nn.Linear):
        return linear_connections(layer, a, weight_mask)
    return conv_connections(layer, a, weight_mask)


def _fan_in(layer: nn.Module) -> int:
    return layer.in_features if isinstance(layer, nn.Linear) else layer.weight[0].numel()


@dataclass
class LayerOps:
    """Counts of one synaptic layer, summed over the recorded calls (not per sample).

    ``input_kind`` is the least spike-like kind seen over the calls;
    ``input_density`` = non-zero inputs / inputs (the input firing rate for spikes).
    """

    name: str
    layer_type: str
    input_kind: InputKind = "binary"
    calls: int = 0
    inputs: int = 0
    nonzero_inputs: int = 0
    dense_macs: float = 0.0
    nb_dense: float = 0.0
    synops: float = 0.0
    acs: float = 0.0
    macs: float = 0.0

    @property
    def input_density(self) -> float:
        return self.nonzero_inputs / self.inputs if self.inputs else float("nan")


@dataclass
class OpsResult:
    """Per-sample counts: per layer (``layers``, also per sample) and totals."""

    layers: list[LayerOps]
    neuron_updates: dict[str, float]
    additions: dict[str, float]
    samples: int
    integer_inputs: IntegerMode
    totals: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = {k: sum(getattr(r, k) for r in self.layers) for k in ("dense_macs", "nb_dense", "synops", "acs", "macs")}
        t["neuron_updates"] = sum(self.neuron_updates.values())
        t["additions"] = sum(self.additions.values())
        self.totals = t

    def neurobench(self) -> dict[str, float]:
        """NeuroBench's SynapticOperations per sample: Effective_MACs, Effective_ACs, Dense."""
        eff_ac = sum(r.synops for r in self.layers if r.input_kind == "binary")
        eff_mac = sum(r.synops for r in self.layers if r.input_kind != "binary")
        return {"Effective_MACs": eff_mac, "Effective_ACs": eff_ac, "Dense": self.totals["nb_dense"]}


class _AdditionMode(TorchFunctionMode):
    """Counts tensor + tensor additions issued directly by the innermost running container module."""

    def __init__(self, counter: "SynOpsCounter") -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _ADD_FUNCS and self.counter._stack:
            name, countable = self.counter._stack[-1]
            operands = [a for a in args[:2] if isinstance(a, Tensor)]
            if countable and len(operands) == 2 and min(o.numel() for o in operands) > 1 and isinstance(out, Tensor):
                self.counter._adds[name] = self.counter._adds.get(name, 0.0) + out.numel()
        return out


class SynOpsCounter:
    """Count operations of ``model`` while the ``with`` block runs (see the module docstring).

    Args:
        model: any module.
        integer_inputs: ``"mac"`` or ``"repeated_ac"`` for integer, non-binary inputs.
        skip_zero_weights: NeuroBench's effective count (connections to zero
            weights are not operations). Only matters for pruned weights.
        count_additions: count container-level tensor additions (needs a
            ``TorchFunctionMode``; off makes the forward slightly faster).
        repeated_input_once: a layer whose input is identical at every time
            step (a stem behind the direct encoder) is counted once, not ``T``
            times; needs ``T``.
        T: time steps, used only by ``repeated_input_once`` to split the
            folded batch ``[T*B, ...]``.

    Example:
        >>> with SynOpsCounter(model) as ops:
        ...     model(images)  # [B, C, H, W]
        >>> res = ops.result(samples=images.shape[0])
        >>> res.totals["acs"], res.totals["macs"]
    """

    def __init__(self, model: nn.Module, *, integer_inputs: IntegerMode = "mac", skip_zero_weights: bool = True,
                 count_additions: bool = True, repeated_input_once: bool = False, T: int | None = None) -> None:
        if integer_inputs not in ("mac", "repeated_ac"):
            raise ValueError(f"integer_inputs must be 'mac' or 'repeated_ac', got {integer_inputs!r}")
        if repeated_input_once and not T:
            raise ValueError("repeated_input_once=True needs T (the number of time steps folded into the batch)")
        self.model = model
        self.integer_inputs = integer_inputs
        self.skip_zero_weights = skip_zero_weights
        self.count_additions = count_additions
        self.repeated_input_once = repeated_input_once
        self.T = T
        self.synaptic = {n: m for n, m in model.named_modules() if isinstance(m, SYNAPTIC_TYPES)}
        self.neurons = {n: m for n, m in model.named_modules() if isinstance(m, SpikingNeuron)}
        # the operation's type: a subclass (SpikeConv2d, a faster Conv2d for training) counts as its base
        self._ops = {n: LayerOps(n, next(t.__name__ for t in SYNAPTIC_TYPES if isinstance(m, t)))
                     for n, m in self.synaptic.items()}
        self._updates = {n: 0.0 for n in self.neurons}
        self._adds: dict[str, float] = {}
        self._stack: list[tuple[str, bool]] = []
        self._handles: list = []
        self._mode: _AdditionMode | None = None

    # ---- hooks
    def _synaptic_hook(self, name: str):
        rec = self._ops[name]

        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            x = inputs[0].detach()
            with torch.no_grad(), _paused(self):
                self._count(module, rec, x, output)

        return hook

    def _count(self, module: nn.Module, rec: LayerOps, x: Tensor, output: Tensor) -> None:
        repeat = 1
        kind = input_kind(x)
        if (self.repeated_input_once and kind != "binary" and self.T > 1 and x.dim() >= 2
                and x.shape[0] % self.T == 0):
            # only non-spike inputs: a spike layer whose input happens to repeat (e.g. all zeros) stays event-driven
            steps = x.unflatten(0, (self.T, x.shape[0] // self.T))
            if bool((steps == steps[:1]).all()):
                x, repeat = steps[0], self.T  # count one step; outputs scale down below
        if _KIND_ORDER[kind] > _KIND_ORDER[rec.input_kind]:
            rec.input_kind = kind
        wmask = _weight_mask(module.weight) if self.skip_zero_weights else None
        nz = (x != 0).float()
        dense = output.numel() // repeat * _fan_in(module)
        synops = _connections(module, nz, wmask)
        rec.calls += 1
        rec.inputs += x.numel()
        rec.nonzero_inputs += int(nz.sum())
        rec.dense_macs += dense
        rec.nb_dense += _connections(module, torch.ones_like(nz), None)
        rec.synops += synops
        if kind == "binary":
            rec.acs += synops
        elif kind == "integer" and self.integer_inputs == "repeated_ac":
            rec.acs += _connections(module, x.abs(), wmask)
        else:
            rec.macs += dense

    def _neuron_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            self._updates[name] += output.numel()

        return hook

    def _push(self, name: str, countable: bool):
        def pre(module, inputs):
            self._stack.append((name, countable))

        return pre

    def _pop(self, module, inputs, output):
        if self._stack:
            self._stack.pop()

    # ---- context manager
    def __enter__(self) -> "SynOpsCounter":
        try:
            for n, m in self.synaptic.items():
                self._handles.append(m.register_forward_hook(self._synaptic_hook(n)))
            for n, m in self.neurons.items():
                self._handles.append(m.register_forward_hook(self._neuron_hook(n)))
            if self.count_additions:
                for n, m in self.model.named_modules():
                    # BNTT holds one BN per step but is a normalisation layer: its arithmetic is BN's
                    countable = any(True for _ in m.children()) and not isinstance(m, (SpikingNeuron, BNTT2d))
                    self._handles.append(m.register_forward_pre_hook(self._push(n or "<model>", countable)))
                    self._handles.append(m.register_forward_hook(self._pop, always_call=True))
                self._mode = _AdditionMode(self)
                self._mode.__enter__()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._stack.clear()

    def result(self, samples: int) -> OpsResult:
        """Counts per sample (divide the recorded totals by ``samples``, the batch size summed over calls)."""
        if samples <= 0:
            raise ValueError(f"samples must be positive, got {samples}")
        layers = []
        for r in self._ops.values():
            if r.calls == 0:
                continue
            s = LayerOps(r.name, r.layer_type, r.input_kind, r.calls, r.inputs, r.nonzero_inputs,
                         r.dense_macs / samples, r.nb_dense / samples, r.synops / samples, r.acs / samples,
                         r.macs / samples)
            layers.append(s)
        return OpsResult(layers, {n: v / samples for n, v in self._updates.items() if v},
                         {n: v / samples for n, v in self._adds.items()}, samples, self.integer_inputs)


class _paused:
    """Suspend addition counting while the counter does its own arithmetic."""

    def __init__(self, counter: SynOpsCounter) -> None:
        self.counter = counter

    def __enter__(self) -> None:
        self.counter._stack.append(("<counter>", False))

    def __exit__(self, *exc) -> None:
        self.counter._stack.pop()


def footprint(model: nn.Module) -> int:
    """NeuroBench footprint: bytes of all parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def connection_sparsity(model: nn.Module) -> float:
    """NeuroBench connection sparsity: zero weights / weights over all conv and linear layers."""
    zeros = total = 0
    for m in model.modules():
        if isinstance(m, SYNAPTIC_TYPES):
            zeros += int((m.weight == 0).sum())
            total += m.weight.numel()
    return zeros / total if total else 0.0


def dense_macs(model: nn.Module, x: Tensor) -> dict[str, float]:
    """Dense MACs (output elements x fan-in) of every conv/linear layer for one forward of ``x``.

    Only shapes are used, so this also runs on the ``meta`` device (no memory,
    no arithmetic): ``dense_macs(model.to("meta"), torch.empty(..., device="meta"))``.
    Totals over the whole call (all samples, all time steps).
    """
    counts: dict[str, float] = {}

    def hook_for(name: str):
        def hook(module, inputs, output):
            counts[name] = counts.get(name, 0.0) + output.numel() * _fan_in(module)

        return hook

    forward_hooked(model, x, [m.register_forward_hook(hook_for(n)) for n, m in model.named_modules()
                              if isinstance(m, SYNAPTIC_TYPES)])
    return counts


def forward_hooked(model: nn.Module, x: Tensor, handles: list[RemovableHandle]) -> None:
    """``model(x)`` without gradients for the hooks behind ``handles``, which are removed after (also on error)."""
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
