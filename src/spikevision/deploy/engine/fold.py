r"""Fold inference-time BatchNorm into the convolution or linear layer before it.

In eval mode a BatchNorm is a fixed affine map per channel,
``z = a * y + b`` with ``a = gamma / sqrt(var + eps)`` and
``b = beta - a * mean``. When it reads the output ``y = W x + c`` of a
convolution or linear layer (and nothing else reads ``y``), the pair equals
one layer with ``W' = a W`` (row-wise) and ``c' = a c + b``. This is what makes
the BN-only spiking networks multiplication-free at inference, the argument
of the spiking MLP paper (Li et al., TNNLS 2024, arXiv 2306.12465): the folded
layer still sees binary spikes, so it only accumulates.

**How pairs are found (documented rule).** :func:`find_bn_pairs` traces one
forward pass (:mod:`spikevision.deploy.engine.trace`) and pairs a BN with a
conv/linear layer when

1. the BN's input tensor *is* the layer's output tensor (same object: no
   reshape, addition or other op in between),
2. no other call reads that tensor,
3. the BN normalises the same axis the layer writes its output features to
   (channels of a convolution, the last axis of a linear layer) with the same
   size.

So pairs are found wherever they sit (``nn.Sequential`` neighbours, named
attributes of a block, inside branches) and nothing else is folded. BNs that
stay (a BN on spikes, the spiking MLP's per-token ``TokenBatchNorm1d``, whose
axis is the token axis and not the linear layer's output axis) remain in the
model and are listed by the MFI audit.

Supported layers: ``nn.Conv1d``/``nn.Conv2d``/``nn.Linear``, bare or inside
:class:`~spikevision.layers.TimeFolded`. Supported norms: ``TDBatchNorm2d``,
``TDBatchNorm1d``, plain ``BatchNorm1d/2d`` (one map for all steps: the
layer's weights change in place) and ``BNTT2d`` (one map per time step: the
layer becomes a :class:`PerStepSynapse` holding ``T`` weight sets).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spikevision.deploy.engine.trace import Trace, trace_model
from spikevision.layers.norm import BNTT2d, TDBatchNorm1d, TDBatchNorm2d, TokenBatchNorm1d
from spikevision.layers.temporal import TimeFolded

__all__ = [
    "BNPair", "PerStepSynapse", "canonicalize", "find_bn_pairs", "fold_bn", "bn_affine", "synapse_of", "set_module",
]

_SYNAPSES = (nn.Conv1d, nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class BNPair:
    """A foldable (layer, BN) pair, by qualified module names."""

    layer: str
    bn: str


def synapse_of(module: nn.Module) -> nn.Module | None:
    """The conv/linear inside ``module`` (itself, or wrapped by ``TimeFolded``), else None."""
    if isinstance(module, TimeFolded):
        module = module.module
    return module if isinstance(module, _SYNAPSES) else None


def bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """Eval-mode BN as ``z = a * y + b`` per feature; returns ``(a, b)`` in float64.

    Raises:
        ValueError: the BN keeps no running statistics (nothing to fold).
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(
            f"{type(bn).__name__} has no running statistics (track_running_stats=False), so its eval-mode "
            "map depends on the batch and cannot be folded; train with track_running_stats=True"
        )
    a = 1.0 / torch.sqrt(bn.running_var.double() + bn.eps)
    if bn.affine:
        a = a * bn.weight.detach().double()
    b = -a * bn.running_mean.double()
    if bn.affine:
        b = b + bn.bias.detach().double()
    return a, b


def _bn_axis(bn: nn.Module, ndim: int) -> int | None:
    """Axis a BN normalises for an input with ``ndim`` dims (time-major where it is a spikevision BN)."""
    if isinstance(bn, TokenBatchNorm1d):
        return 2
    if isinstance(bn, BNTT2d):
        return 2
    if isinstance(bn, nn.modules.batchnorm._BatchNorm):
        if type(bn).__module__.startswith("spikevision"):
            return 2  # TDBatchNorm1d/2d fold T into the batch: channels at dim 2 of [T, B, C, ...]
        return 1
    return None


def _bn_features(bn: nn.Module) -> int:
    return bn.num_features


def _layer_axis(layer: nn.Module, ndim: int) -> int:
    conv = synapse_of(layer)
    if isinstance(conv, nn.Linear):
        return ndim - 1
    return ndim - (conv.weight.dim() - 1)  # channels before the spatial dims


def find_bn_pairs(model: nn.Module, example: Tensor, trace: Trace | None = None) -> list[BNPair]:
    """Foldable (layer, BN) pairs of ``model`` by the rule in the module docstring.

    Args:
        model: the float model (eval mode recommended).
        example: a valid input, e.g. ``torch.zeros(1, C, H, W)``.
        trace: a trace already recorded for ``model`` (skips the forward pass).
    """
    trace = trace or trace_model(model, example)
    pairs: list[BNPair] = []
    calls_of: dict[str, list] = {}
    for c in trace.calls:
        if c.kind == "module":
            calls_of.setdefault(c.name, []).append(c)
    for c in trace.calls:
        if c.kind != "module":
            continue
        bn = trace.modules[c.name]
        if _bn_axis(bn, 0) is None or len(c.inputs) != 1 or not isinstance(c.inputs[0], int):
            continue
        src = trace.calls[c.inputs[0]]
        if src.kind != "module" or synapse_of(trace.modules[src.name]) is None:
            continue
        if len(calls_of[src.name]) != 1 or len(calls_of[c.name]) != 1:
            continue  # a layer or BN used twice (shared weights) cannot be folded once
        if [k.index for k in trace.consumers(src.index)] != [c.index]:
            continue
        ndim = len(src.out_shape)
        axis = _layer_axis(trace.modules[src.name], ndim)
        conv = synapse_of(trace.modules[src.name])
        out_features = conv.out_features if isinstance(conv, nn.Linear) else conv.out_channels
        if _bn_axis(bn, ndim) != axis or _bn_features(bn) != out_features:
            continue
        pairs.append(BNPair(src.name, c.name))
    return pairs


class PerStepSynapse(nn.Module):
    """A conv/linear layer with one weight set per time step (a folded BNTT).

    ``weight`` is ``[T, *layer.weight.shape]`` and ``bias`` ``[T, out]``;
    step ``t`` of the input uses set ``t``.

    Shape: ``[T, B, *in]`` to ``[T, B, *out]``.
    """

    def __init__(self, layer: nn.Module, weight: Tensor, bias: Tensor) -> None:
        super().__init__()
        self.layer = layer  # structure (stride, padding, ...); its own weights are unused
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)

    @property
    def T(self) -> int:
        return self.weight.shape[0]

    def forward_step(self, x: Tensor, t: int) -> Tensor:
        layer = self.layer
        if isinstance(layer, nn.Linear):
            return F.linear(x, self.weight[t], self.bias[t])
        return layer._conv_forward(x, self.weight[t], self.bias[t])

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] != self.T:
            raise ValueError(f"PerStepSynapse was folded for T={self.T} steps, got input shape {list(x.shape)}")
        return torch.stack([self.forward_step(x[t], t) for t in range(self.T)])

    def extra_repr(self) -> str:
        return f"T={self.T}, layer={self.layer}"


def set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule ``name`` (and every alias of the same object) by ``new``."""
    old = root.get_submodule(name)
    for alias, m in list(root.named_modules(remove_duplicate=False)):
        if m is old and alias:
            parent_name, _, attr = alias.rpartition(".")
            parent = root.get_submodule(parent_name) if parent_name else root
            setattr(parent, attr, new)


def _folded(layer: nn.Module, a: Tensor, b: Tensor) -> nn.Module:
    """Copy of the conv/linear ``layer`` with ``W' = a W`` row-wise and ``c' = a c + b``."""
    w = layer.weight.detach().double()
    c = layer.bias.detach().double() if layer.bias is not None else torch.zeros_like(a)
    shape = (-1,) + (1,) * (w.dim() - 1)
    new = copy.deepcopy(layer)
    if new.bias is None:
        new.bias = nn.Parameter(torch.empty(a.shape[0], dtype=layer.weight.dtype, device=layer.weight.device))
    with torch.no_grad():
        new.weight.copy_((w * a.reshape(shape)).to(layer.weight.dtype))
        new.bias.copy_((c * a + b).to(layer.weight.dtype))
    return new


def canonicalize(model: nn.Module) -> nn.Module:
    """Rewrite time-folded containers into per-layer form, in place; returns ``model``.

    * ``TimeFolded(nn.Sequential(a, b, ...))`` becomes
      ``nn.Sequential(TimeFolded(a), TimeFolded(b), ...)`` (same computation: each
      module is per step), so ``stem`` becomes ``stem.0``, ``stem.1``, ...;
    * ``TimeFolded(nn.BatchNorm2d)`` / ``TimeFolded(nn.BatchNorm1d)`` becomes the
      equivalent ``TDBatchNorm2d`` / ``TDBatchNorm1d`` with the same state.
    """
    for name, child in list(model.named_children()):
        new = child
        if isinstance(child, TimeFolded):
            inner = child.module
            if isinstance(inner, nn.Sequential):
                new = nn.Sequential(*[TimeFolded(m) for m in inner])
            elif type(inner) in (nn.BatchNorm2d, nn.BatchNorm1d):
                cls = TDBatchNorm2d if isinstance(inner, nn.BatchNorm2d) else TDBatchNorm1d
                new = cls(inner.num_features, eps=inner.eps, momentum=inner.momentum, affine=inner.affine,
                          track_running_stats=inner.track_running_stats)
                state = inner.state_dict()
                new.load_state_dict(state)
                if state:
                    new = new.to(next(iter(state.values())).device)
                new.train(inner.training)
        if new is not child:
            setattr(model, name, new)
        canonicalize(new)
    return model


def fold_bn(model: nn.Module, example: Tensor, pairs: list[BNPair] | None = None) -> tuple[nn.Module, list[BNPair]]:
    """A copy of ``model`` (eval mode) with every foldable BN folded into its layer.

    The folded BN becomes ``nn.Identity``; its layer gets the folded weights
    and a bias. The original model is not modified.

    Args:
        model: the float model.
        example: a valid input for tracing (e.g. one image batch).
        pairs: pairs to fold; default :func:`find_bn_pairs`.

    Returns:
        ``(folded_model, pairs)``.

    Example:
        >>> folded, pairs = fold_bn(model, torch.zeros(1, 1, 28, 28))
    """
    model = canonicalize(copy.deepcopy(model)).eval()
    pairs = find_bn_pairs(model, example) if pairs is None else pairs
    for pair in pairs:
        holder = model.get_submodule(pair.layer)
        layer = synapse_of(holder)
        bn = model.get_submodule(pair.bn)
        if isinstance(bn, BNTT2d):
            sets = [bn_affine(b) for b in bn.bns]
            w = torch.stack([_folded(layer, a, b).weight.detach() for a, b in sets])
            c = torch.stack([_folded(layer, a, b).bias.detach() for a, b in sets])
            set_module(model, pair.layer, PerStepSynapse(copy.deepcopy(layer), w, c))
        else:
            a, b = bn_affine(bn)
            new = _folded(layer, a, b)
            if isinstance(holder, TimeFolded):
                holder.module = new
            else:
                set_module(model, pair.layer, new)
        set_module(model, pair.bn, nn.Identity())
    return model, pairs

