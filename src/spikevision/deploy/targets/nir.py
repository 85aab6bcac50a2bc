r"""Export a spiking network to NIR, the Neuromorphic Intermediate Representation.

Pedersen et al., "Neuromorphic intermediate representation: A unified
instruction set for interoperable brain-inspired computing", Nature
Communications 15, 8122 (2024); https://neuroir.org. Uses the ``nir`` package.

**What is exported.** The model is BN-folded (:mod:`spikevision.deploy.engine.fold`),
traced once (:mod:`spikevision.deploy.engine.trace`) and translated node by node:

| spikevision | NIR |
|---|---|
| ``DirectEncoder`` | the graph ``Input`` (one image per time step) |
| an event sequence ``[T, B, C, H, W]`` fed past the encoder | the graph ``Input`` (one frame per time step) |
| conv (BN folded) | ``Conv2d`` (with bias) |
| linear (BN folded) | ``Affine`` |
| average pooling, adaptive average to an even grid | ``AvgPool2d`` |
| ``x.mean((-2, -1))`` (global average pool in a forward) | ``AvgPool2d`` over the map + ``Flatten`` |
| ``nn.Flatten`` | ``Flatten`` (negative ``start_dim``/``end_dim`` over the per-sample shape) |
| LIF (hard reset), IF, PLIF | ``LIF`` / ``IF`` (see below) |
| ``a + b`` in a block's forward (residual sums) | two edges into the same node (NIR sums inputs) |
| mean over time (dim 0) before the classifier | kept out of the graph: metadata ``readout`` |

Everything NIR cannot express is **refused before anything is written**, with
an error naming the layer: max pooling, per-step weights (BNTT), BN that could
not be folded (a BN on spikes, the spiking MLP's per-token BN), gates and other
products of tensors (GAC), feature permutations (the spiking MLP's axial token
mixing), subtractive reset (S-ResNet), stochastic encoders.

**Neuron mapping (forward Euler, time step ``dt``).** NIR's LIF is
continuous: ``tau dv/dt = (v_leak - v) + r I``; fire when ``v > v_threshold``,
then ``v = v_reset``. One forward-Euler step of length ``dt`` gives

.. math::

    v_t = (1 - dt/\tau)\, v_{t-1} + (dt/\tau)\, v_\text{leak} + (dt/\tau)\, r\, I_t,

and ours (:mod:`spikevision.neuron.functional`) is
``H_t = decay V_{t-1} + (1 - decay) v_rest + gain X_t``. They coincide with

* ``tau = dt / (1 - decay)``, ``r = gain / (1 - decay)``, ``v_leak = v_rest``
  (``decay < 1``, exported as ``nir.LIF``);
* ``IF`` (``decay = 1``, ``dv/dt = r I``): ``r = gain / dt``.

``dt`` is stored in the graph metadata; readers take it as an argument
instead, and a reader whose ``dt`` differs gets other dynamics. The default,
:data:`DEFAULT_DT` = 1e-4 s, is what the main clients assume: snnTorch 1.0
(``import_from_nir``, which only warns on another ``dt`` and then computes
something else) and SpikingJelly 2.0 (``import_from_nir(graph, dt=1e-4)``,
which refuses an ``r`` that is neither 1 nor ``tau / dt``). MS-ResNet's
decay 0.25 becomes ``tau = 0.1333 ms``, ``r = 1.333``. Both clients then
reproduce spikevision's outputs (tested in
``tests/deploy/test_nir_export.py``); snnTorch refuses ``IF`` nodes (it wants
``r = 1``, NIR's ``dv/dt = r I`` needs ``r = gain / dt``).
**Flatten.** ``start_dim``/``end_dim`` index NIR's per-sample shape and are
written negative (``-3, -1`` for ``[C, H, W]``): the same dims whether a reader
counts a batch dim in front or not (snnTorch builds ``nn.Flatten(start_dim,
end_dim)`` from them as they are).

NIR fires on ``v > v_threshold``; our non-strict ``H >= v_th`` (spiking MLP)
is exported with ``v_threshold = nextafter(v_th, -inf)`` in float32, which is
the same test on float32 membranes. NIR has no initial state field: the
membrane starts at 0, so ``v_rest != 0`` is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spikevision.deploy.engine.fold import PerStepSynapse, fold_bn
from spikevision.deploy.engine.trace import ATOMIC_TYPES, Call, trace_model
from spikevision.layers.encoders import DirectEncoder, PoissonEncoder
from spikevision.layers.norm import BNTT2d, TokenBatchNorm1d
from spikevision.layers.temporal import TimeFolded
from spikevision.neuron.modules import SpikingNeuron

__all__ = ["NIRExportError", "to_nir", "export_nir", "DEFAULT_DT"]

DEFAULT_DT = 1e-4  # seconds per time step: what snnTorch 1.0 and SpikingJelly 2.0 assume when they read a graph

_PASS_GLUE = {"contiguous", "clone", "detach", "dropout"}
_ADD_GLUE = {"add", "iadd", "radd"}


class NIRExportError(ValueError):
    """The model contains an operation NIR cannot express (the message names the layer)."""


@dataclass
class _Ref:
    """What a traced tensor is in the NIR graph: the node(s) whose outputs sum to it."""

    nodes: list[str]
    shape: tuple[int, ...]  # per-sample shape
    readout: bool = False  # a mean over time has been taken (only affine nodes may follow)
    extra: dict = field(default_factory=dict)


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy()


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _neuron_node(module: nn.Module, shape: tuple[int, ...], name: str, dt: float):
    import nir

    p = module.effective_params()  # PLIF: its learned decay and gain
    decay, gain = p.decay, p.gain
    if p.reset != "hard":
        raise NIRExportError(
            f"layer {name!r}: reset={p.reset!r} is not expressible in NIR (its LIF/IF reset to v_reset); "
            "only hard-reset neurons export"
        )
    if p.v_rest != 0.0:
        raise NIRExportError(f"layer {name!r}: v_rest={p.v_rest} != 0; NIR neurons start at v = 0")
    th = np.float32(p.v_th) if p.strict else np.nextafter(np.float32(p.v_th), np.float32(-np.inf))
    full = lambda v: np.full(shape, v, dtype=np.float32)  # noqa: E731
    if decay == 1.0:
        return nir.IF(r=full(gain / dt), v_threshold=full(th), v_reset=full(p.v_reset))
    return nir.LIF(
        tau=full(dt / (1.0 - decay)), r=full(gain / (1.0 - decay)), v_leak=full(p.v_rest),
        v_threshold=full(th), v_reset=full(p.v_reset),
    )


def _negative_dims(start: int, end: int, ndim: int) -> tuple[int, int]:
    """Flatten dims of an ``ndim``-dim per-sample shape, counted from the end."""
    return (start - ndim if start >= 0 else start), (end - ndim if end >= 0 else end)


class _Builder:
    def __init__(self, trace, dt: float, frame_shape: tuple[int, ...] | None) -> None:
        self.trace, self.dt = trace, dt
        self.frame_shape = frame_shape  # the per-step input shape when the model is fed a sequence
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.refs: dict[Any, _Ref] = {}
        self.input_shape: tuple[int, ...] | None = None

    def add(self, name: str, node, sources: list[_Ref]) -> str:
        key = name.replace(".", "_") or "model"
        while key in self.nodes:
            key += "_"
        self.nodes[key] = node
        for src in sources:
            for n in src.nodes:
                self.edges.append((n, key))
        return key

    def ref(self, producer, where: str) -> _Ref:
        if producer == "input" and self.frame_shape is not None:  # a sequence fed past the encoder
            self.input_shape = self.frame_shape
            return _Ref(["input"], self.frame_shape)
        if producer == "input":
            raise NIRExportError(f"{where} reads the raw image; NIR export needs a DirectEncoder in front "
                                 "(a learned encoder such as GAC has no NIR equivalent)")
        if producer not in self.refs:
            raise NIRExportError(f"{where}: a constant tensor (parameter or buffer) enters the data flow")
        return self.refs[producer]

    # -- modules -----------------------------------------------------------
    def module(self, c: Call) -> _Ref:
        import nir

        m = self.trace.modules[c.name]
        name = c.name
        if isinstance(m, DirectEncoder):
            self.input_shape = c.in_shapes[0][1:]
            return _Ref(["input"], self.input_shape)
        if isinstance(m, PoissonEncoder):
            raise NIRExportError(f"layer {name!r}: a stochastic (Poisson) encoder has no NIR node; feed spikes")
        src = self.ref(c.inputs[0], f"layer {name!r}")
        inner = m.module if isinstance(m, TimeFolded) else m
        shape_in = src.shape
        out_shape = tuple(c.out_shape[2:]) if len(c.out_shape) > 2 else tuple(c.out_shape[1:])
        if isinstance(inner, (nn.Identity, nn.Dropout)):
            return src
        if src.readout and not isinstance(inner, (nn.Linear, nn.Flatten)):
            raise NIRExportError(f"layer {name!r} follows the mean over time; only affine layers may follow it")
        if isinstance(inner, nn.Conv2d):
            if inner.padding_mode != "zeros":
                raise NIRExportError(f"layer {name!r}: padding_mode {inner.padding_mode!r} (NIR pads with zeros)")
            bias = inner.bias if inner.bias is not None else torch.zeros(inner.out_channels)
            node = nir.Conv2d(
                input_shape=tuple(shape_in[-2:]), weight=_np(inner.weight), stride=_pair(inner.stride),
                padding=inner.padding if isinstance(inner.padding, str) else _pair(inner.padding),
                dilation=_pair(inner.dilation), groups=inner.groups, bias=_np(bias),
            )
        elif isinstance(inner, nn.Linear):
            bias = inner.bias if inner.bias is not None else torch.zeros(inner.out_features)
            node = nir.Affine(weight=_np(inner.weight), bias=_np(bias))
        elif isinstance(inner, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            H, W = shape_in[-2:]
            if isinstance(inner, nn.AdaptiveAvgPool2d):
                oh, ow = _pair(inner.output_size)
                oh, ow = oh or H, ow or W
                if H % oh or W % ow:
                    raise NIRExportError(f"layer {name!r}: adaptive pooling {H}x{W} -> {oh}x{ow} has uneven windows")
                k = s = (H // oh, W // ow)
                pad = (0, 0)
            else:
                if inner.ceil_mode or inner.divisor_override or not inner.count_include_pad:
                    raise NIRExportError(f"layer {name!r}: {inner} has no NIR equivalent")
                k, s, pad = _pair(inner.kernel_size), _pair(inner.stride or inner.kernel_size), _pair(inner.padding)
            node = nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(s), padding=np.array(pad))
        elif isinstance(inner, nn.Flatten):
            start = inner.start_dim - 1 if inner.start_dim > 0 else inner.start_dim  # the module sees [B, ...]
            end = inner.end_dim - 1 if inner.end_dim > 0 else inner.end_dim
            start, end = _negative_dims(start, end, len(shape_in))
            node = nir.Flatten(input_type={"input": np.array(shape_in)}, start_dim=start, end_dim=end)
        elif isinstance(inner, SpikingNeuron):
            if src.readout:
                raise NIRExportError(f"layer {name!r}: a neuron after the mean over time")
            node = _neuron_node(inner, shape_in, name, self.dt)
            out_shape = shape_in
        elif isinstance(inner, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
            raise NIRExportError(f"layer {name!r}: max pooling has no NIR node (NIR 1.0 has AvgPool2d/SumPool2d); "
                                 "use average pooling")
        elif isinstance(m, PerStepSynapse):
            raise NIRExportError(f"layer {name!r}: per-time-step weights (a folded BNTT) are time-varying; "
                                 "NIR graphs are time-invariant")
        elif isinstance(inner, TokenBatchNorm1d):
            raise NIRExportError(f"layer {name!r}: per-token BN cannot be folded into the preceding layer's "
                                 "shared weights and has no NIR node")
        elif isinstance(inner, (nn.modules.batchnorm._BatchNorm, BNTT2d)):
            raise NIRExportError(f"layer {name!r}: a BN with no conv/linear directly before it cannot be folded; "
                                 "NIR has no normalisation node")
        else:
            raise NIRExportError(f"layer {name!r}: {type(inner).__name__} has no NIR equivalent")
        key = self.add(name, node, [src])
        return _Ref([key], tuple(out_shape), readout=src.readout)

    # -- glue ----------------------------------------------------------------
    def glue(self, c: Call) -> _Ref:
        import nir

        name = c.name.strip("_")
        where = f"the forward of {c.owner!r}" if c.owner else "the model's forward"
        tensors = [i for i in c.inputs]
        if name in _ADD_GLUE and len(tensors) == 2:
            a, b = (self.ref(t, where) for t in tensors)
            if a.shape != b.shape or a.readout != b.readout:
                raise NIRExportError(f"{where}: adds tensors of per-sample shapes {a.shape} and {b.shape}")
            return _Ref(a.nodes + b.nodes, a.shape, a.readout)
        if len(tensors) != 1:
            raise NIRExportError(f"{where}: {name} of {len(tensors)} tensors has no NIR equivalent")
        src = self.ref(tensors[0], where)
        in_shape, out = c.in_shapes[0], c.out_shape
        if name in _PASS_GLUE:
            return src
        if name == "mean":
            dims = c.args[1] if len(c.args) > 1 else c.kwargs.get("dim")
            dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
            dims = tuple(d % len(in_shape) for d in dims)
            if dims == (0,):
                return _Ref(src.nodes, src.shape, readout=True)
            n = len(in_shape)
            if dims in ((n - 2, n - 1), (n - 1, n - 2)) and len(src.shape) == 3 and not src.readout:
                return self.global_pool(c, src)
            raise NIRExportError(f"{where}: mean over dims {dims} has no NIR equivalent (use a pooling layer)")
        if (name == "flatten" and len(in_shape) == len(src.shape) + 2 and tuple(out[:2]) == tuple(in_shape[:2])
                and tuple(out[2:]) == (int(np.prod(src.shape)),)):  # x.flatten(2) of [T, B, ...]: per-step flatten
            node = nir.Flatten(input_type={"input": np.array(src.shape)}, start_dim=-len(src.shape), end_dim=-1)
            key = self.add(f"{c.owner}.flatten" if c.owner else "flatten", node, [src])
            return _Ref([key], tuple(out[2:]), readout=src.readout)
        # a pure view: same per-sample shape, only time/batch dims regrouped
        if int(np.prod(out)) == int(np.prod(in_shape)) and tuple(out[-len(src.shape):]) == src.shape:
            return src
        raise NIRExportError(f"{where}: {name} ({list(in_shape)} -> {list(out)}) has no NIR equivalent")

    def global_pool(self, c: Call, src: _Ref) -> _Ref:
        """``x.mean((-2, -1))`` of ``[T, B, C, H, W]``: AvgPool2d over the whole map, then Flatten."""
        import nir

        C, H, W = src.shape
        pool = nir.AvgPool2d(kernel_size=np.array((H, W)), stride=np.array((H, W)), padding=np.array((0, 0)))
        key = self.add(f"{c.owner}.global_pool" if c.owner else "global_pool", pool, [src])
        pooled = _Ref([key], (C, 1, 1))
        if c.kwargs.get("keepdim") or (len(c.args) > 2 and c.args[2]):
            return pooled
        flat = nir.Flatten(input_type={"input": np.array((C, 1, 1))}, start_dim=-3, end_dim=-1)
        key = self.add(f"{c.owner}.global_pool_flatten" if c.owner else "global_pool_flatten", flat, [pooled])
        return _Ref([key], (C,))

    def build(self):
        import nir

        live = self.trace.contributing()  # input checks and other dead glue are left out
        for c in self.trace.calls:
            if c.index in live:
                self.refs[c.index] = self.module(c) if c.kind == "module" else self.glue(c)
        if self.input_shape is None:
            raise NIRExportError("no DirectEncoder found: NIR export needs the encoder that feeds images per step "
                                 "(or an event sequence [T, B, C, H, W] as the example)")
        outs = [self.ref(o, "the model output") for o in self.trace.outputs]
        if len(outs) != 1:
            raise NIRExportError(f"the model returns {len(outs)} tensors; NIR export expects one")
        out = outs[0]
        self.nodes["input"] = nir.Input(input_type={"input": np.array(self.input_shape)})
        self.nodes["output"] = nir.Output(output_type={"output": np.array(out.shape)})
        for n in out.nodes:
            self.edges.append((n, "output"))
        return out


def to_nir(model: nn.Module, example: Tensor, dt: float = DEFAULT_DT, metadata: dict | None = None):
    """Translate ``model`` into a ``nir.NIRGraph`` (BN folded first).

    Args:
        model: the float model.
        example: a valid input: images ``[B, C, H, W]``, or an event sequence
            ``[T, B, C, H, W]`` for a model that takes it past its encoder
            (one sample is enough; only the first is used).
        dt: seconds per time step (see the module docstring).
        metadata: extra entries for the graph metadata.

    Returns:
        The graph. Its metadata holds ``dt``, ``time_steps``, ``readout`` and the threshold convention.

    Raises:
        NIRExportError: naming the first layer NIR cannot express.
        ValueError: ``dt <= 0``, or an example that is neither 4-D nor 5-D.
    """
    import nir

    if not dt > 0:
        raise ValueError(f"dt must be > 0 seconds per time step, got {dt}")
    if example.dim() not in (4, 5):
        raise ValueError(f"example must be images [B, C, H, W] or an event sequence [T, B, C, H, W], "
                         f"got shape {list(example.shape)}")
    is_sequence = example.dim() == 5
    one = example[:, :1] if is_sequence else example[:1]  # one sample: the batch dim is dim 1 of a sequence
    folded, _ = fold_bn(model, one)
    trace = trace_model(folded, one, atomic=ATOMIC_TYPES + (PerStepSynapse,))
    builder = _Builder(trace, dt, tuple(one.shape[2:]) if is_sequence else None)
    out = builder.build()
    T = next((c.out_shape[0] for c in trace.calls if c.kind == "module"
              and isinstance(trace.modules[c.name], DirectEncoder)), one.shape[0] if is_sequence else None)
    meta = {
        "source": "spikevision",
        "dt": float(dt),
        "time_steps": int(T) if T is not None else -1,
        "readout": "mean over time steps of the output" if out.readout else "per-step output",
        "neuron_discretisation": "forward Euler: tau = dt/(1-decay), r = gain/(1-decay); IF: r = gain/dt",
        "threshold": "fire when v > v_threshold (non-strict thresholds exported as nextafter(v_th, -inf), float32)",
    }
    meta.update(metadata or {})
    return nir.NIRGraph(nodes=builder.nodes, edges=builder.edges, metadata=meta)


def export_nir(model: nn.Module, example: Tensor, path: str | Path, dt: float = DEFAULT_DT,
               metadata: dict | None = None):
    """Write ``model`` as a NIR file (HDF5) at ``path``; returns the graph.

    The graph is built completely before the file is opened, so a refused
    model writes nothing.
    """
    import nir

    graph = to_nir(model, example, dt, metadata)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), graph)
    return graph
