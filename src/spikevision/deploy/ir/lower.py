"""Lower a compiled :class:`~spikevision.deploy.engine.IntegerModel` to a typed :class:`~spikevision.deploy.ir.ops.Program`.

The Python engine runs the model's own ``forward`` with integer layers substituted; a C
target needs the same computation as a static list of operations over fixed-size buffers.
:func:`lower` traces the integer model once per batch size (1 and 2: the axis that changes
is the batch axis) and turns every call whose result reaches the output into one typed
operation (:mod:`spikevision.deploy.ir.ops`) over per-sample buffers:

| engine call | op | notes |
|---|---|---|
| ``DirectEncoder`` | (none) | the image is the same at every step: its buffer is stored once (``steps = 1``) |
| ``IntSynapse`` | :class:`Synapse` | event-driven on spikes, integer MAC on analog input |
| ``IntPool`` | :class:`Pool` | fused into the conv before it when its windows tile the conv's output |
| ``IntNeuron`` | :class:`Neuron` | |
| ``IntAffine`` | :class:`Affine` | |
| glue ``+`` | :class:`Add` | residual sums |
| glue ``mean`` | :class:`Mean` | the divisor is kept (rounded half-to-even where an integer layer reads it) |
| glue ``transpose``/``permute``/``movedim``/``swapaxes`` | :class:`Permute` | an index map |
| glue ``cat``/``concat`` | :class:`Concat` | |
| identity, dropout, flatten, reshape, contiguous | (none) | a new view of the same storage |

Event-camera models take ``[T, B, C, H, W]`` frames: their input buffer is time-major with
``T`` stored steps. Layers computed from a static image alone run once instead of ``T``
times (bit-identical, since every step sees the same image). Anything else (a float
fallback, a gate) raises :class:`ProgramError` naming the layer.

Glue calls are normalised once here (:func:`_glue_kind`): the targets never see a function name. The ops
are then put in a memory-aware order (:func:`~spikevision.deploy.ir.schedule.hoist_last_readers`).
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

import torch

from spikevision.deploy.engine.compile import IntegerModel
from spikevision.deploy.engine.gac import IntGAC
from spikevision.deploy.engine.layers import FloatFallback, IntAffine, IntNeuron, IntPool, IntSynapse, pow2_exponent
from spikevision.deploy.engine.trace import ATOMIC_TYPES, Call, trace_model
from spikevision.deploy.ir.ops import (
    Add, Affine, Buf, BufKind, Concat, FusedPool, Gate, Mean, Neuron, Op, Permute, Pool, Program, ProgramError, Relu,
    Synapse,
)
from spikevision.deploy.ir.schedule import hoist_last_readers
from spikevision.layers.encoders import DirectEncoder
from spikevision.layers.temporal import TimeFolded

__all__ = ["Buf", "Op", "Program", "ProgramError", "lower"]

_ENGINE_TYPES = (IntSynapse, IntPool, IntNeuron, IntAffine, IntGAC, FloatFallback)
_VIEW_MODULES = (nn.Identity, nn.Dropout, nn.Flatten)
#: glue function name (``__add__`` stripped to ``add``) -> what it is; anything else is refused
_GLUE_KINDS = {
    **dict.fromkeys(("flatten", "reshape", "view", "contiguous", "unflatten", "clone", "detach", "dropout",
                     "identity"), "view"),
    **dict.fromkeys(("add", "iadd", "radd"), "add"),
    **dict.fromkeys(("transpose", "permute", "movedim", "swapaxes", "swapdims", "t"), "permute"),
    **dict.fromkeys(("cat", "concat", "concatenate"), "concat"),
    "mean": "mean",
}


def _glue_kind(call: Call) -> str | None:
    """What a glue call is (``"view"``, ``"add"``, ``"permute"``, ``"concat"``, ``"mean"``), or None."""
    return _GLUE_KINDS.get(call.name.strip("_"))


def _batch_axis(a: tuple[int, ...], b: tuple[int, ...], where: str) -> int:
    diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    if len(a) != len(b) or len(diff) != 1:
        raise ProgramError(f"{where}: cannot find the batch axis of shapes {list(a)} / {list(b)}")
    return diff[0]


def _permutation(call: Call, ndim: int, where: str) -> tuple[int, ...]:
    """The full permutation of the engine tensor's axes that a transpose-like glue call applies."""
    name = call.name.strip("_")
    args = [a for a in call.args[1:]]
    norm = lambda d: d % ndim  # noqa: E731
    if name == "permute":
        dims = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
        dims = dims or call.kwargs.get("dims")
        return tuple(norm(d) for d in dims)
    if name == "t":
        return (1, 0) if ndim == 2 else tuple(range(ndim))
    if name == "movedim":
        src, dst = (args + [call.kwargs.get("source"), call.kwargs.get("destination")])[:2]
        if not isinstance(src, int) or not isinstance(dst, int):
            raise ProgramError(f"{where}: movedim of several axes at once is not supported")
        order = [d for d in range(ndim) if d != norm(src)]
        order.insert(norm(dst), norm(src))
        return tuple(order)
    d0 = args[0] if len(args) > 0 else call.kwargs.get("dim0")
    d1 = args[1] if len(args) > 1 else call.kwargs.get("dim1")
    perm = list(range(ndim))
    perm[norm(d0)], perm[norm(d1)] = perm[norm(d1)], perm[norm(d0)]
    return tuple(perm)


class _Lowering:
    """The state of one lowering: buffers made so far, ops emitted, and the buffer of every traced value."""

    def __init__(self, im: IntegerModel, T: int) -> None:
        self.im, self.T, self.F = im, T, im.cfg.frac_bits
        self.ops: list[Op] = []
        self.storages: dict[str, tuple[str, int]] = {}
        self.values: dict[Any, Buf] = {}

    # -- buffers -------------------------------------------------------------
    def new(self, kind: BufKind, shape: tuple[int, ...], time: bool, steps: int, divisor: int = 1) -> Buf:
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

    def emit(self, op: Op) -> Buf:
        self.ops.append(op)
        return op.out

    # -- engine modules --------------------------------------------------------
    def module(self, c: Call, c2: Call, module: nn.Module) -> Buf:
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
            return self.emit(Neuron(layer=name, inputs=(x,), out=self.new("spike", shape, True, self.T), neuron=module))
        if isinstance(module, IntAffine):
            out = self.new("int", shape, time, self.T if module.per_step else x.steps)
            return self.emit(Affine(layer=name, inputs=(x,), out=out, affine=module))
        if isinstance(module, IntGAC):
            return self.gac(name, module, x, shape)
        raise ProgramError(f"layer {name!r} ({type(inner).__name__}) has no integer-program counterpart")

    def synapse(self, name: str, m: IntSynapse, x: Buf, shape: tuple[int, ...], time: bool) -> Buf:
        if m.kind == "conv2d" and m.groups != 1:
            raise ProgramError(f"layer {name!r}: grouped convolution (groups={m.groups}) is not supported")
        if x.time != time:
            raise ProgramError(f"layer {name!r}: input and output disagree on the time axis")
        steps = self.T if (m.per_step or x.steps == self.T) and time else 1
        if m.kind == "conv2d":
            if len(x.shape) != 3 or len(shape) != 3:
                raise ProgramError(f"layer {name!r}: expected [C, H, W] per sample, got {list(x.shape)}")
        elif x.shape[-1] != m.weight_int.shape[-1]:
            raise ProgramError(f"layer {name!r}: linear over the last axis of {list(x.shape)}")
        out = self.new("int", shape, time, steps)
        return self.emit(Synapse(layer=name, inputs=(x,), out=out, syn=m, event=x.kind == "spike"))

    def pool(self, name: str, m: IntPool, x: Buf, shape: tuple[int, ...], time: bool) -> Buf:
        if len(x.shape) != 3:
            raise ProgramError(f"layer {name!r}: pooling expects [C, H, W] per sample, got {list(x.shape)}")
        if x.kind == "ratio":
            raise ProgramError(f"layer {name!r}: pooling a mean is not supported")
        k, s, pad = m._window(x.shape[1], x.shape[2])
        kind: BufKind = "spike" if (m.is_max and x.kind == "spike") else "int"
        n = k[0] * k[1]
        return self.emit(Pool(layer=name, inputs=(x,), out=self.new(kind, shape, time, x.steps), is_max=m.is_max,
                              k=k, s=s, pad=pad, n=n, shift=None if m.is_max else pow2_exponent(1.0 / n)))

    def frame_layer(self, name: str, layer: nn.Module, x: Buf) -> Buf:
        """A per-frame integer conv or pooling on ``x`` (its output shape probed on zeros)."""
        seen = set(getattr(layer, "inputs_seen", ()))
        with torch.no_grad():
            shape = tuple(layer(torch.zeros(1, *x.shape, dtype=torch.float64)).shape[1:])
        if isinstance(layer, IntSynapse):
            layer.inputs_seen = seen  # the probe is not an input the audit should report
        if isinstance(layer, IntSynapse):
            return self.synapse(name, layer, x, shape, x.time)
        return self.pool(name, layer, x, shape, x.time)

    def gac(self, name: str, m: IntGAC, x: Buf, shape: tuple[int, ...]) -> Buf:
        """GAC's encoder: its stem, neuron and SCA as ordinary ops, then one :class:`Gate`."""
        u = x
        for i, layer in enumerate(m.stem):
            u = self.frame_layer(f"{name}.stem.{i}", layer, u)
        u_t = Buf(u.storage, u.shape, True, u.steps, u.kind)  # the same U at every step when computed once
        s = self.emit(Neuron(layer=f"{name}.neuron", inputs=(u_t,), out=self.new("spike", u.shape, True, self.T),
                             neuron=m.neuron))
        h = self.frame_layer(f"{name}.sca1", m.sca1, u)
        h = self.emit(Relu(layer=name, inputs=(h,), out=self.new("int", h.shape, h.time, h.steps)))
        sca = self.frame_layer(f"{name}.sca2", m.sca2, h)
        sca_t = Buf(sca.storage, sca.shape, True, sca.steps, sca.kind)
        if sca.shape != shape or s.shape != shape:
            raise ProgramError(f"layer {name!r}: the gate's maps {list(sca.shape)} do not match its spikes "
                               f"{list(s.shape)}")
        return self.emit(Gate(layer=name, inputs=(s, sca_t, u_t), out=self.new("int", shape, True, self.T), gac=m))

    # -- glue --------------------------------------------------------------------
    def glue(self, c: Call, c2: Call) -> Buf:
        owner = c.owner[len("net."):] if c.owner.startswith("net.") else (c.owner or "(model)")
        fn = c.name.strip("_")
        where = f"the forward of {owner!r}: {fn}"
        ins = []
        for p in c.inputs:
            if p not in self.values:
                raise ProgramError(f"{where} reads a constant tensor; not supported")
            ins.append(self.values[p])
        shape, time = self.sample_shape(c.out_shape, c2.out_shape, where)
        kind = _glue_kind(c)
        if kind == "view" and len(ins) == 1:
            return self.view(ins[0], shape, time, where)
        if kind == "add" and len(ins) == 2:
            return self.add(owner, where, ins[0], ins[1], shape, time)
        if kind == "mean" and len(ins) == 1:
            return self.mean(owner, where, c, ins[0], shape, time)
        if kind == "permute" and len(ins) == 1:
            return self.permute(owner, where, c, ins[0], shape, time)
        if kind == "concat" and ins:
            return self.concat(owner, where, c, ins, shape, time)
        raise ProgramError(f"{where} is not supported by the integer program "
                           "(supported: +, mean, cat, transpose/permute, views)")

    def add(self, owner: str, where: str, a: Buf, b: Buf, shape: tuple[int, ...], time: bool) -> Buf:
        if a.shape != shape or b.shape != shape or a.time != time or b.time != time:
            raise ProgramError(f"{where}: only sums of equal shapes are supported")
        if "ratio" in (a.kind, b.kind):
            raise ProgramError(f"{where}: a sum of means is not supported")
        out = self.new("int", shape, time, max(a.steps, b.steps))
        return self.emit(Add(layer=owner, inputs=(a, b), out=out))

    def _lead(self, x: Buf) -> int:
        return 2 if x.time else 1  # engine axes before the per-sample ones: [T, B] or [B]

    def permute(self, owner: str, where: str, c: Call, x: Buf, shape: tuple[int, ...], time: bool) -> Buf:
        lead = self._lead(x)
        perm = _permutation(c, lead + len(x.shape), where)
        if tuple(perm[:lead]) != tuple(range(lead)) or time != x.time:
            raise ProgramError(f"{where}: a permutation that moves the time or batch axis is not supported")
        sample_perm = tuple(d - lead for d in perm[lead:])
        if sample_perm == tuple(range(len(sample_perm))):
            return self.view(x, shape, time, where)
        if x.kind == "ratio":
            raise ProgramError(f"{where}: permuting a mean is not supported")
        out = self.new(x.kind, shape, time, x.steps)
        return self.emit(Permute(layer=owner, inputs=(x,), out=out, perm=sample_perm))

    def concat(self, owner: str, where: str, c: Call, ins: list[Buf], shape: tuple[int, ...], time: bool) -> Buf:
        lead = self._lead(ins[0])
        dim = c.args[1] if len(c.args) > 1 else c.kwargs.get("dim", 0)
        axis = dim % (lead + len(ins[0].shape)) - lead
        if axis < 0 or any(b.time != time for b in ins):
            raise ProgramError(f"{where}: a concatenation along the time or batch axis is not supported")
        if any(b.kind == "ratio" for b in ins):
            raise ProgramError(f"{where}: concatenating means is not supported")
        kind: BufKind = "spike" if all(b.kind == "spike" for b in ins) else "int"
        out = self.new(kind, shape, time, max(b.steps for b in ins))
        return self.emit(Concat(layer=owner, inputs=tuple(ins), out=out, axis=axis))

    def mean(self, owner: str, where: str, c: Call, x: Buf, shape: tuple[int, ...], time: bool) -> Buf:
        dims = c.args[1] if len(c.args) > 1 else c.kwargs.get("dim")
        if c.kwargs.get("keepdim") or c.kwargs.get("dtype") is not None:
            raise ProgramError(f"{where}: keepdim/dtype are not supported")
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        full = (self.T, 1, *x.shape) if x.time else (1, *x.shape)  # the engine tensor, batch 1
        dims = tuple(sorted(d % len(full) for d in dims))
        if x.time and dims == (0,):
            out = self.new("ratio", shape, False, 1, x.divisor * self.T)
            return self.emit(Mean(layer=owner, inputs=(x,), out=out, over="time", n=self.T))
        lead = self._lead(x)
        trailing = tuple(range(len(full) - len(dims), len(full)))
        if dims == trailing and dims and dims[0] >= lead:
            n = math.prod(full[d] for d in dims)
            out = self.new("ratio", shape, time, x.steps, x.divisor * n)
            return self.emit(Mean(layer=owner, inputs=(x,), out=out, over="trailing", n=n))
        raise ProgramError(f"{where}: a mean over dims {list(dims)} is not supported (time, or trailing dims)")


def _model_T(im: IntegerModel) -> int:
    T = next((m.T for m in im.net.modules() if isinstance(m, DirectEncoder)), getattr(im.net, "T", None))
    if not isinstance(T, int):
        raise ProgramError("the model states no number of time steps T (a DirectEncoder or a T attribute)")
    return T


def _examples(example: Tensor, T: int) -> tuple[Tensor, Tensor]:
    """One sample at batch sizes 1 and 2: images ``[B, C, H, W]`` or event frames ``[T, B, C, H, W]``."""
    if example.dim() == 5:
        if example.shape[0] != T:
            raise ProgramError(f"the model runs T={T} time steps, the example has {example.shape[0]} frames")
        one = example[:, :1]
        return one.contiguous(), one.expand(T, 2, *example.shape[2:]).contiguous()
    one = example[:1]
    return one.contiguous(), one.expand(2, *example.shape[1:]).contiguous()


def lower(im: IntegerModel, example: Tensor) -> Program:
    """Lower ``im`` to a :class:`Program` (see the module docstring).

    Args:
        im: a compiled integer model.
        example: one valid input batch: images ``[B, C, H, W]`` or event frames ``[T, B, C, H, W]``
            (values do not matter).

    Raises:
        ProgramError: naming the first layer or forward code the program cannot express.
    """
    T = _model_T(im)
    xs = [im.quantize(x) for x in _examples(example, T)]
    t1, t2 = (trace_model(im.net, x, atomic=ATOMIC_TYPES + _ENGINE_TYPES) for x in xs)
    if len(t1.calls) != len(t2.calls):
        raise ProgramError("the model runs different code for batch sizes 1 and 2")
    low = _Lowering(im, T)
    events = example.dim() == 5
    in_shape = tuple(example.shape[2:] if events else example.shape[1:])
    inp = low.new("int", in_shape, events, T if events else 1)
    low.values["input"] = inp
    live = t1.contributing()  # calls whose results never reach the output (the input check) are left out
    for c, c2 in zip(t1.calls, t2.calls):
        if c.index in live:
            low.values[c.index] = low.module(c, c2, t1.modules[c.name]) if c.kind == "module" else low.glue(c, c2)
    if len(t1.outputs) != 1 or t1.outputs[0] not in low.values:
        raise ProgramError("the model must return one tensor computed from its input")
    output = low.values[t1.outputs[0]]
    if output.time or len(output.shape) != 1:
        raise ProgramError(f"the model output must be [B, classes], got per-sample shape {list(output.shape)} "
                           f"(time-major: {output.time})")
    ops = hoist_last_readers(_fuse_pools(low.ops, {output.storage}), {output.storage})
    written = {op.out.storage for op in ops} | {inp.storage}
    storages = {name: v for name, v in low.storages.items() if name in written}
    return Program(T, low.F, inp, ops, output, storages)


def _fusable(prev: Any, op: Any, reads: dict[str, int], keep: set[str]) -> bool:
    """A pooling whose windows tile the output of the conv right before it, its only reader."""
    return (isinstance(op, Pool) and isinstance(prev, Synapse) and prev.pool is None
            and prev.syn.kind == "conv2d" and op.x.storage == prev.out.storage
            and reads.get(prev.out.storage) == 1 and prev.out.storage not in keep
            and op.x.shape == prev.out.shape and op.k == op.s and op.pad == (0, 0)
            and prev.out.kind == "int" and op.out.steps == prev.out.steps)


def _fuse_pools(ops: list[Op], keep: set[str]) -> list[Op]:
    """Fold a pooling into the convolution before it when :func:`_fusable`: the conv's full-size output is
    never stored."""
    reads: dict[str, int] = {}
    for op in ops:
        for b in op.inputs:
            reads[b.storage] = reads.get(b.storage, 0) + 1
    out: list[Op] = []
    for op in ops:
        prev = out[-1] if out else None
        if _fusable(prev, op, reads, keep):
            pool = FusedPool(op.layer, op.is_max, op.k, op.s, op.n, op.shift, prev.out.shape)
            out[-1] = Synapse(layer=prev.layer, inputs=prev.inputs, out=op.out, syn=prev.syn, event=prev.event,
                              pool=pool)
            continue
        out.append(op)
    return out
