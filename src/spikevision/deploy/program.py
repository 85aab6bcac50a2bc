"""Lower a compiled :class:`~spikevision.deploy.engine.IntegerModel` to a flat program of integer ops.

The Python engine runs the model's own ``forward`` with integer layers
substituted; a C target needs the same computation as a static list of
operations over fixed-size buffers. :func:`lower` traces the integer model
once per batch size (1 and 2: the axis that changes is the batch axis) and
turns every call into one :class:`Op` over per-sample :class:`Buf` buffers:

| engine call | op | notes |
|---|---|---|
| ``DirectEncoder`` | (none) | the image is the same at every step: its buffer is stored once (``steps = 1``) |
| ``IntSynapse`` on spikes | ``synapse`` (``event=True``) | accumulate the weight columns of the active inputs |
| ``IntSynapse`` on analog input | ``synapse`` (``event=False``) | integer multiply-accumulate |
| ``IntPool`` | ``pool`` | max (compare) or window sum + shift/division |
| ``IntNeuron`` | ``neuron`` | shift leak (or multiply / shift-add), compare, reset |
| ``IntAffine`` | ``affine`` | select on spikes, multiply on analog input |
| glue ``+`` | ``add`` | residual sums |
| glue ``mean`` | ``mean`` | a sum kept exact with its divisor (rounded half-to-even where an integer layer reads it) |
| identity, dropout, flatten, reshape, contiguous | (none) | a new view of the same storage |

Layers computed from the image alone (the analog first conv and its pooling)
run once instead of ``T`` times: bit-identical, since every step sees the
same image. Anything else (a float fallback, a permutation, a gate) raises
:class:`ProgramError` naming the layer.

Buffers hold one sample. A spike buffer stores 0/1 bytes (the value ``2^F``);
an ``int`` buffer int64 fixed point with ``F`` fraction bits; a ``ratio``
buffer an int64 numerator whose value is ``numerator / divisor`` (a mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from spikevision.deploy.engine import IntegerModel
from spikevision.deploy.int_layers import FloatFallback, IntAffine, IntNeuron, IntPool, IntSynapse, pow2_exponent
from spikevision.deploy.trace import ATOMIC_TYPES, trace_model
from spikevision.layers.encoders import DirectEncoder
from spikevision.layers.temporal import TimeFolded

__all__ = ["Buf", "Op", "Program", "ProgramError", "lower"]

_ENGINE_TYPES = (IntSynapse, IntPool, IntNeuron, IntAffine, FloatFallback)
_VIEW_MODULES = (nn.Identity, nn.Dropout, nn.Flatten)
_VIEW_GLUE = {"flatten", "reshape", "view", "contiguous", "unflatten", "clone", "detach", "dropout", "identity"}
_ADD_GLUE = {"add", "iadd", "radd"}


class ProgramError(ValueError):
    """The integer model holds something the flat integer program (C target, native runtime) cannot express."""


@dataclass
class Buf:
    """One per-sample buffer (or a view of one).

    Attributes:
        storage: name of the array that holds the data (views share it).
        shape: per-sample, per-step shape (no batch axis, no time axis).
        time: True when the tensor is time-major (``[T, B, ...]`` in the engine).
        steps: stored steps: ``T``, or 1 when every step holds the same values.
        kind: ``"spike"`` (bytes 0/1), ``"int"`` (int64, F fraction bits) or ``"ratio"`` (int64 numerator).
        divisor: value = stored / divisor (``ratio`` only).
    """

    storage: str
    shape: tuple[int, ...]
    time: bool
    steps: int
    kind: str
    divisor: int = 1

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def size(self) -> int:
        """Elements stored (all steps)."""
        return self.numel * self.steps


@dataclass
class Op:
    """One operation: ``kind`` over input buffers into ``out``, for the engine layer ``layer``."""

    kind: str
    layer: str
    inputs: list[Buf]
    out: Buf
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Program:
    """A lowered integer model: the input buffer, the ops in order, the output buffer.

    Attributes:
        T: time steps.
        frac_bits: ``F`` of every ``int`` buffer (a spike is ``2^F``).
        storages: every array (name to (kind, elements)) the ops write.
    """

    T: int
    frac_bits: int
    input: Buf
    ops: list[Op]
    output: Buf
    storages: dict[str, tuple[str, int]]


def _batch_axis(a: tuple[int, ...], b: tuple[int, ...], where: str) -> int:
    diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    if len(a) != len(b) or len(diff) != 1:
        raise ProgramError(f"{where}: cannot find the batch axis of shapes {list(a)} / {list(b)}")
    return diff[0]


class _Lowering:
    def __init__(self, im: IntegerModel, T: int) -> None:
        self.im, self.T, self.F = im, T, im.cfg.frac_bits
        self.ops: list[Op] = []
        self.storages: dict[str, tuple[str, int]] = {}
        self.values: dict[Any, Buf] = {}

    # -- buffers -------------------------------------------------------------
    def new(self, kind: str, shape: tuple[int, ...], time: bool, steps: int, divisor: int = 1) -> Buf:
        name = f"b{len(self.storages)}"
        buf = Buf(name, tuple(shape), time, steps, kind, divisor)
        self.storages[name] = ("uint8" if kind == "spike" else "int64", buf.size)
        return buf

    def sample_shape(self, s1: tuple[int, ...], s2: tuple[int, ...], where: str) -> tuple[tuple[int, ...], bool]:
        axis = _batch_axis(s1, s2, where)
        if axis == 1 and s1[0] == self.T:
            return tuple(s1[2:]), True
        if axis == 0:
            return tuple(s1[1:]), False
        raise ProgramError(f"{where}: the batch axis sits at position {axis} of {list(s1)}; "
                           "only [B, ...] and [T, B, ...] tensors are supported")

    def view(self, src: Buf, shape: tuple[int, ...], time: bool, where: str) -> Buf:
        if time != src.time or math.prod(shape) != src.numel:
            raise ProgramError(f"{where}: a reshape that mixes the time or batch axis with the features "
                               f"({list(src.shape)} -> {list(shape)}) is not supported")
        return Buf(src.storage, shape, time, src.steps, src.kind, src.divisor)

    # -- one call ------------------------------------------------------------
    def module(self, c, c2, module: nn.Module) -> Buf:
        name = c.name[len("net."):] if c.name.startswith("net.") else c.name
        if not c.inputs:
            raise ProgramError(f"layer {name!r} takes no tensor input")
        x = self.values[c.inputs[0]]
        shape, time = self.sample_shape(c.out_shape, c2.out_shape, f"layer {name!r}")
        inner = module.module if isinstance(module, TimeFolded) else module
        if isinstance(module, DirectEncoder):
            if x.time:
                raise ProgramError(f"layer {name!r}: the encoder got a sequence; the C target takes images")
            return Buf(x.storage, shape, True, 1, x.kind, x.divisor)
        if isinstance(inner, _VIEW_MODULES):
            return self.view(x, shape, time, f"layer {name!r}")
        if isinstance(module, FloatFallback):
            raise ProgramError(f"layer {name!r} runs as a float fallback ({module.reason}); the integer "
                               "program has no floating point")
        if isinstance(module, IntSynapse):
            return self.synapse(name, module, x, shape, time)
        if isinstance(module, IntPool):
            return self.pool(name, module, x, shape, time)
        if isinstance(module, IntNeuron):
            if not x.time:
                raise ProgramError(f"layer {name!r}: a neuron needs a time-major input")
            out = self.new("spike", shape, True, self.T)
            self.ops.append(Op("neuron", name, [x], out, {"neuron": module}))
            return out
        if isinstance(module, IntAffine):
            return self.affine(name, module, x, shape, time)
        raise ProgramError(f"layer {name!r} ({type(inner).__name__}) has no integer-program counterpart")

    def synapse(self, name: str, m: IntSynapse, x: Buf, shape, time: bool) -> Buf:
        if m.kind == "conv2d" and m.groups != 1:
            raise ProgramError(f"layer {name!r}: grouped convolution (groups={m.groups}) is not supported")
        if x.time != time:
            raise ProgramError(f"layer {name!r}: input and output disagree on the time axis")
        steps = self.T if (m.per_step or x.steps == self.T) else 1
        if not time:
            steps = 1
        out = self.new("int", shape, time, steps)
        params = {"syn": m, "event": x.kind == "spike"}
        if m.kind == "conv2d":
            if len(x.shape) != 3 or len(shape) != 3:
                raise ProgramError(f"layer {name!r}: expected [C, H, W] per sample, got {list(x.shape)}")
        elif x.shape[-1] != m.weight_int.shape[-1]:
            raise ProgramError(f"layer {name!r}: linear over the last axis of {list(x.shape)}")
        self.ops.append(Op("synapse", name, [x], out, params))
        return out

    def pool(self, name: str, m: IntPool, x: Buf, shape, time: bool) -> Buf:
        if len(x.shape) != 3:
            raise ProgramError(f"layer {name!r}: pooling expects [C, H, W] per sample, got {list(x.shape)}")
        if x.kind == "ratio":
            raise ProgramError(f"layer {name!r}: pooling a mean is not supported")
        k, s, pad = m._window(x.shape[1], x.shape[2])
        kind = "spike" if (m.is_max and x.kind == "spike") else "int"
        out = self.new(kind, shape, time, x.steps)
        n = k[0] * k[1]
        self.ops.append(Op("pool", name, [x], out, {"max": m.is_max, "k": k, "s": s, "pad": pad, "n": n,
                                                      "shift": None if m.is_max else pow2_exponent(1.0 / n)}))
        return out

    def affine(self, name: str, m: IntAffine, x: Buf, shape, time: bool) -> Buf:
        steps = self.T if m.per_step else x.steps
        out = self.new("int", shape, time, steps)
        self.ops.append(Op("affine", name, [x], out, {"affine": m}))
        return out

    def glue(self, c, c2) -> Buf | None:
        fn = c.name.strip("_")
        owner = c.owner[len("net."):] if c.owner.startswith("net.") else (c.owner or "(model)")
        where = f"the forward of {owner!r}: {fn}"
        ins = []
        for p in c.inputs:
            if p not in self.values:
                raise ProgramError(f"{where} reads a constant tensor; not supported")
            ins.append(self.values[p])
        shape, time = self.sample_shape(c.out_shape, c2.out_shape, where)
        if fn in _VIEW_GLUE and len(ins) == 1:
            return self.view(ins[0], shape, time, where)
        if fn in _ADD_GLUE and len(ins) == 2:
            a, b = ins
            if a.shape != shape or b.shape != shape or a.time != time or b.time != time:
                raise ProgramError(f"{where}: only sums of equal shapes are supported")
            if "ratio" in (a.kind, b.kind):
                raise ProgramError(f"{where}: a sum of means is not supported")
            out = self.new("int", shape, time, max(a.steps, b.steps))
            self.ops.append(Op("add", owner, [a, b], out))
            return out
        if fn == "mean" and len(ins) == 1:
            return self.mean(owner, where, c, ins[0], shape, time)
        raise ProgramError(f"{where} is not supported by the integer program (supported: +, mean, views)")

    def mean(self, owner: str, where: str, c, x: Buf, shape, time: bool) -> Buf:
        dims = c.args[1] if len(c.args) > 1 else c.kwargs.get("dim")
        if c.kwargs.get("keepdim") or c.kwargs.get("dtype") is not None:
            raise ProgramError(f"{where}: keepdim/dtype are not supported")
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        full = (self.T, 1, *x.shape) if x.time else (1, *x.shape)  # the engine tensor, batch 1
        dims = tuple(sorted(d % len(full) for d in dims))
        if x.time and dims == (0,):
            out = self.new("ratio", shape, False, 1, x.divisor * self.T)
            self.ops.append(Op("mean", owner, [x], out, {"over": "time", "n": self.T}))
            return out
        lead = 2 if x.time else 1
        trailing = tuple(range(len(full) - len(dims), len(full)))
        if dims == trailing and dims and dims[0] >= lead:
            n = math.prod(full[d] for d in dims)
            out = self.new("ratio", shape, time, x.steps, x.divisor * n)
            self.ops.append(Op("mean", owner, [x], out, {"over": "trailing", "n": n}))
            return out
        raise ProgramError(f"{where}: a mean over dims {list(dims)} is not supported (time, or trailing dims)")


def lower(im: IntegerModel, example: Tensor) -> Program:
    """Lower ``im`` to a :class:`Program` (see the module docstring).

    Args:
        im: a compiled integer model.
        example: one valid input image batch (values do not matter; e.g. ``x[:1]``).

    Raises:
        ProgramError: naming the first layer or forward code the program cannot express.
    """
    T = next((m.T for m in im.net.modules() if isinstance(m, DirectEncoder)), getattr(im.net, "T", None))
    if not isinstance(T, int):
        raise ProgramError("the model has no DirectEncoder in front: the integer program takes static images")
    atomic = ATOMIC_TYPES + _ENGINE_TYPES
    xs = [im.quantize(example[:1].expand(b, *example.shape[1:]).contiguous()) for b in (1, 2)]
    traces = [trace_model(im.net, x, atomic=atomic) for x in xs]
    t1, t2 = traces
    if len(t1.calls) != len(t2.calls):
        raise ProgramError("the model runs different code for batch sizes 1 and 2")
    low = _Lowering(im, T)
    inp = low.new("int", tuple(example.shape[1:]), False, 1)
    low.values["input"] = inp
    live = t1.contributing()  # calls whose results never reach the output (the input check) are left out
    for c, c2 in zip(t1.calls, t2.calls):
        if c.index not in live:
            continue
        if c.kind == "module":
            out = low.module(c, c2, t1.modules[c.name])
        else:
            out = low.glue(c, c2)
        low.values[c.index] = out
    if len(t1.outputs) != 1 or t1.outputs[0] not in low.values:
        raise ProgramError("the model must return one tensor computed from its input")
    ops = _fuse_pools(low.ops, {low.values[t1.outputs[0]].storage})
    output = low.values[t1.outputs[0]]
    if output.time or len(output.shape) != 1:
        raise ProgramError(f"the model output must be [B, classes], got per-sample shape {list(output.shape)} "
                           f"(time-major: {output.time})")
    storages = {name: v for name, v in low.storages.items() if any(op.out.storage == name for op in ops)
                or name == inp.storage}
    return Program(T, low.F, inp, ops, output, storages)


def _fuse_pools(ops: list[Op], keep: set[str]) -> list[Op]:
    """Fold a pooling into the convolution before it when the pooling is the conv output's only reader and
    its windows tile the map (kernel = stride, no padding): the conv's full-size output is never stored."""
    reads: dict[str, int] = {}
    for op in ops:
        for b in op.inputs:
            reads[b.storage] = reads.get(b.storage, 0) + 1
    out: list[Op] = []
    for op in ops:
        prev = out[-1] if out else None
        if (op.kind == "pool" and prev is not None and prev.kind == "synapse" and "pool" not in prev.params
                and prev.params["syn"].kind == "conv2d" and op.inputs[0].storage == prev.out.storage
                and reads.get(prev.out.storage) == 1 and prev.out.storage not in keep
                and op.inputs[0].shape == prev.out.shape and op.params["k"] == op.params["s"]
                and op.params["pad"] == (0, 0) and prev.out.kind == "int" and op.out.steps == prev.out.steps):
            what = "max-pool" if op.params["max"] else "avg-pool"
            k = op.params["k"]
            pool = dict(op.params, layer=op.layer, conv_shape=prev.out.shape, what=f"{what} {k[0]}x{k[1]}")
            out[-1] = Op("synapse", prev.layer, prev.inputs, op.out, dict(prev.params, pool=pool))
            continue
        out.append(op)
    return out
