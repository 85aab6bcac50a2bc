r"""The integer, multiplication-free inference engine.

:func:`compile_integer` turns a float spiking network into an
:class:`IntegerModel` by **module substitution**: BN is folded first
(:mod:`spikevision.deploy.engine.fold`), then every layer is replaced by an integer
counterpart while the model's own ``forward`` code (residual sums,
concatenations, the head's mean over time) stays as written.

**Number format.** Every analog value travelling between layers (membrane
inputs, residual streams, logits) is a fixed-point integer ``q = round(v * 2^F)``
with ``F = frac_bits`` (default 24) fraction bits. Between layers the integers
ride in float64 tensors, which hold every integer below ``2^53`` exactly, so
the model's own glue code (``+``, ``torch.cat``, ``mean``) runs unchanged; the
layers compute in int64. A spike is the integer ``2^F`` (the value 1.0).

**Layers** (in :mod:`spikevision.deploy.engine.layers`).

* :class:`IntSynapse` (conv/linear with BN folded): weights are quantised per
  output channel to ``weight_bits``-bit integers with a power-of-two scale
  ``2^-F_c`` (``F_c <= F``). On **binary spike input** the layer adds the
  weight columns of the active inputs (``index_add`` over the events) and
  shifts each channel left by ``F - F_c``: additions and shifts only. On
  analog input (pixels, a real-valued residual stream, firing rates) it
  multiplies (an integer convolution) and is reported as such.
* :class:`IntNeuron` (LIF/IF/PLIF): the membrane has ``F + membrane_bits``
  fraction bits. A gain or leak that is a power of two is a shift (right shifts
  floor); other leaks (0.8744, PLIF's learned one) are an integer
  multiplication by default, or, with ``leak="shift_add"``, a sum of at most
  ``shift_add_terms`` signed shifts whose approximation error is reported.
  Threshold: a comparison; reset: a select (hard) or a subtraction (soft).
* :class:`IntAffine` (a BN that could not be folded): on spikes a select
  between two constants; on analog input a multiplication.
* :class:`IntPool`: average pooling = window sum plus a shift when the window
  size is a power of two (else a division, reported); max pooling compares.
* :class:`~spikevision.deploy.engine.gac.IntGAC`: GAC's encoder, its gate's sigmoid a table lookup
  (:mod:`spikevision.deploy.engine.gac`).
* :class:`FloatFallback`: anything else (unknown layers, a
  module whose ``forward`` multiplies tensors or calls a non-linear function)
  runs in float on the de-quantised input and is re-quantised; its operations
  count as multiplications.

Which layers received binary input, and every multiplication that actually
executed, is measured by :class:`~spikevision.deploy.engine.arithmetic.ArithmeticCounter` and
reported by :mod:`spikevision.deploy.audit`.

Rounding: weights and pixels round to nearest; right shifts floor. The engine
is therefore not bit-equal to the float model: a spike flips where a membrane
lies within rounding distance of the threshold (``--limit``-sized agreement
figures in docs/deploy.md).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from spikevision.deploy.engine.arithmetic import uncounted
from spikevision.deploy.engine.fold import PerStepSynapse, fold_bn
from spikevision.deploy.engine.layers import (
    EngineConfig, FloatFallback, IntAffine, IntNeuron, IntPool, IntSynapse, pow2_exponent, shift_add_terms,
)
from spikevision.deploy.engine.gac import IntGAC
from spikevision.deploy.engine.trace import ATOMIC_TYPES, Trace, trace_model
from spikevision.layers.gac import GatedAttentionCoding
from spikevision.layers.encoders import DirectEncoder, PoissonEncoder
from spikevision.layers.norm import BNTT2d
from spikevision.layers.temporal import TimeFolded
from spikevision.neuron.modules import SpikingNeuron

__all__ = [
    "EngineConfig", "IntegerModel", "IntSynapse", "IntNeuron", "IntAffine", "IntPool", "FloatFallback",
    "compile_integer", "find_opaque", "pow2_exponent", "shift_add_terms",
]


class _Quantize(nn.Module):
    """The input converter: ``round(x * 2^F)`` (the ADC in front of the network)."""

    def __init__(self, frac_bits: int) -> None:
        super().__init__()
        self.F = frac_bits

    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x.double() * 2.0**self.F)


class _Dequantize(nn.Module):
    """Fixed point to real logits: ``q / 2^F`` (argmax-invariant)."""

    def __init__(self, frac_bits: int) -> None:
        super().__init__()
        self.F = frac_bits

    def forward(self, q: Tensor) -> Tensor:
        return q / 2.0**self.F


class _ExactMeans(TorchFunctionMode):
    """The model's own means on the engine's fixed point, made exact.

    A mean of integers is ``S / n``; float64 holds ``S`` exactly but not always the quotient, and a
    mean of such a mean (the spiking MLP's head: a mean over tokens, then over time) would round
    twice. Here every ``mean`` of a float64 carrier returns one float64 division of the exact
    integer numerator by the total divisor (for a mean of a mean: the summed numerators over the
    product of the divisors), as the C targets compute it (``numerator / divisor``). The mean still
    executes as written, so the operation counter sees what the model does; only its value is
    replaced (uncounted).
    """

    def __init__(self) -> None:
        super().__init__()
        self._ratios: dict[int, tuple[Tensor, Tensor, int]] = {}  # id(mean) -> (mean, numerator, divisor)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if (func not in (torch.mean, Tensor.mean) or not args or not isinstance(args[0], Tensor)
                or args[0].dtype != torch.float64 or kwargs.get("dtype") is not None):
            return out
        x = args[0]
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        keepdim = bool(args[2] if len(args) > 2 else kwargs.get("keepdim", False))
        seen = self._ratios.get(id(x))
        num, div = (seen[1], seen[2]) if seen is not None and seen[0] is x else (x, 1)
        with uncounted():
            total = num.sum(dim=dim, keepdim=keepdim) if dim is not None else num.sum()
            divisor = div * (num.numel() // max(total.numel(), 1))
            out.copy_(total / divisor)
        self._ratios[id(out)] = (out, total, divisor)
        return out


class IntegerModel(nn.Module):
    """A compiled integer model: quantise the input, run the substituted network, rescale logits.

    Attributes:
        net: the model with integer layers (same structure and names as the folded float model).
        cfg: the number formats.
        pairs: the folded (layer, BN) pairs.
        opaque: modules run in float, with the reason.
        float_model: the folded float model it was compiled from (not a submodule).
    """

    def __init__(
        self, net: nn.Module, cfg: EngineConfig, pairs: list, opaque: dict[str, str], float_model: nn.Module
    ) -> None:
        super().__init__()
        self.quantize = _Quantize(cfg.frac_bits)
        self.net = net
        self.dequantize = _Dequantize(cfg.frac_bits)
        self.cfg, self.pairs, self.opaque = cfg, pairs, opaque
        self.__dict__["float_model"] = float_model  # kept out of state_dict and module hooks

    def forward_q(self, x: Tensor) -> Tensor:
        """Logits in the fixed-point format (float64 of value ``* 2^F``: integers, or the exact quotient of an
        integer sum and its divisor where the logits are a mean)."""
        with _ExactMeans():
            return self.net(self.quantize(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.dequantize(self.forward_q(x))


# ---------------------------------------------------------------------------
# Compilation
# ---------------------------------------------------------------------------

#: glue functions that keep the fixed-point convention (linear, data movement, positively homogeneous)
_LINEAR_GLUE = {
    "add", "iadd", "radd", "sub", "isub", "rsub", "neg", "cat", "concat", "concatenate", "stack", "flatten",
    "unflatten", "view", "reshape", "permute", "transpose", "contiguous", "clone", "expand", "expand_as",
    "getitem", "select", "narrow", "chunk", "split", "squeeze", "unsqueeze", "repeat", "sum", "mean",
    "movedim", "swapaxes", "flip", "roll", "relu", "dropout", "adaptive_avg_pool2d", "avg_pool2d",
    "max_pool2d", "identity", "t", "zeros_like", "unbind", "detach",
}
_SCALAR_GLUE = {"mul", "imul", "rmul", "div", "truediv", "itruediv"}


def _glue_name(name: str) -> str:
    return name.strip("_")


def find_opaque(trace: Trace) -> dict[str, str]:
    """Modules whose own ``forward`` runs code that breaks the fixed-point convention.

    A glue call is fine when it is linear data movement or a sum
    (:data:`_LINEAR_GLUE`), or a product with a Python number. Anything else
    (a product of two tensors, ``sigmoid``, a dtype change) marks the module
    that ran it opaque: it will run as a :class:`FloatFallback`. Calls whose
    results never reach the output (the model's input check) do not count.
    """
    opaque: dict[str, str] = {}
    live = trace.contributing()
    for c in trace.calls:
        if c.kind != "glue" or c.index not in live:
            continue
        name = _glue_name(c.name)
        n_tensors = len(c.inputs)
        if name in _LINEAR_GLUE:
            continue
        if name in _SCALAR_GLUE and n_tensors == 1:
            continue
        what = "an elementwise product of two tensors (a gate)" if name in _SCALAR_GLUE else name
        opaque.setdefault(c.owner, f"its forward computes {what} (not integer-linear)")
    return opaque


_PASS = (nn.Identity, nn.Flatten, nn.Dropout, DirectEncoder)
_POOLS = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d, nn.AdaptiveMaxPool2d)
_BNS = (nn.modules.batchnorm._BatchNorm, BNTT2d)


def _substitute(module: nn.Module, cfg: EngineConfig, qualified: str, opaque: dict[str, str]) -> nn.Module | None:
    """Integer counterpart of ``module``, or None to recurse into its children."""
    F_ = cfg.frac_bits
    if isinstance(module, GatedAttentionCoding):
        return IntGAC(module, cfg)
    if qualified in opaque:
        return FloatFallback(module, opaque[qualified], F_)
    if isinstance(module, _PASS):
        return module
    if isinstance(module, TimeFolded):
        inner = module.module
        if isinstance(inner, _PASS):
            return module
        if isinstance(inner, (nn.Conv2d, nn.Linear)):
            return IntSynapse(inner, inner.weight.detach()[None], _bias(inner), True, cfg)
        if isinstance(inner, _POOLS):
            return IntPool(inner, True)
        return FloatFallback(module, f"no integer version of {type(inner).__name__}", F_)
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return IntSynapse(module, module.weight.detach()[None], _bias(module), False, cfg)
    if isinstance(module, PerStepSynapse):
        return IntSynapse(module.layer, module.weight.detach(), module.bias.detach(), True, cfg)
    if isinstance(module, _POOLS):
        return IntPool(module, False)
    if isinstance(module, _BNS):
        return IntAffine(module, cfg)
    if isinstance(module, SpikingNeuron):
        return IntNeuron(module, cfg)
    if isinstance(module, PoissonEncoder):
        return FloatFallback(module, "Poisson encoder: random comparisons on analog pixels", F_)
    if isinstance(module, ATOMIC_TYPES) or not list(module.children()):
        return FloatFallback(module, f"no integer version of {type(module).__name__}", F_)
    return None


def _bias(layer: nn.Module) -> Tensor | None:
    return layer.bias.detach()[None] if layer.bias is not None else None


def _replace_all(module: nn.Module, cfg: EngineConfig, prefix: str, opaque: dict[str, str]) -> None:
    for name, child in list(module.named_children()):
        qualified = f"{prefix}{name}"
        new = _substitute(child, cfg, qualified, opaque)
        if new is None:
            _replace_all(child, cfg, qualified + ".", opaque)
        elif new is not child:
            setattr(module, name, new)


def compile_integer(
    model: nn.Module, example: Tensor, cfg: EngineConfig = EngineConfig(), *, fold: bool = True
) -> IntegerModel:
    """Fold BN and compile ``model`` to the integer engine.

    Args:
        model: the trained float model (not modified).
        example: a valid input for tracing (a small batch; its values do not matter).
        cfg: number formats (see :class:`EngineConfig`).
        fold: fold BN first (the normal case).

    Returns:
        The :class:`IntegerModel`; ``model(x).argmax(-1)`` agrees with the float
        model's except where a membrane sits within rounding of a threshold.

    Raises:
        ValueError: the model's top-level ``forward`` itself computes something non-linear.
    """
    if fold:
        float_model, pairs = fold_bn(model, example)
    else:
        float_model, pairs = copy.deepcopy(model).eval(), []
    trace = trace_model(float_model, example, atomic=ATOMIC_TYPES + (PerStepSynapse,))
    gac = [n for n, m in float_model.named_modules() if isinstance(m, GatedAttentionCoding)]
    opaque = {k: v for k, v in find_opaque(trace).items()  # GAC runs as its own integer layer (IntGAC)
              if not any(k == g or k.startswith(g + ".") for g in gac)}
    if "" in opaque:
        raise ValueError(
            f"the model's own forward cannot run on the integer engine: {opaque['']}; move that code into a submodule"
        )
    net = copy.deepcopy(float_model)
    _replace_all(net, cfg, "", opaque)
    return IntegerModel(net.eval(), cfg, pairs, opaque, float_model)

