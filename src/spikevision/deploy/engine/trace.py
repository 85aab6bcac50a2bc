"""Record the data flow of a model on one example input.

Deployment needs to know how tensors flow between layers (which BN reads a
conv's output and nothing else reads it; which additions form residual sums;
which code between layers is not a plain addition). :func:`trace_model` runs
the model once under a ``TorchFunctionMode`` plus module hooks and records two
kinds of calls in execution order:

* **atomic calls**: modules of a known layer type (:data:`ATOMIC_TYPES`:
  ``TimeFolded``, convolutions, linear layers, pooling, normalisation,
  neurons, encoders) seen as a whole;
* **glue calls**: torch functions executed in a model's own ``forward`` code
  outside any atomic module (residual ``+``, ``torch.cat``, reshapes, the mean
  over time of the head, a gate's product, ...), each attributed to the
  innermost module whose ``forward`` ran it.

Every recorded tensor gets a producer (the call index that created it,
``"input"`` for the model input, ``"const"`` for parameters and other
tensors from outside the graph). Calls that return no tensor (shape queries)
are not recorded. The trace is data, not code: nothing of the model is
modified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from spikevision.layers.encoders import DirectEncoder, PoissonEncoder
from spikevision.layers.norm import BNTT2d
from spikevision.layers.temporal import TimeFolded
from spikevision.neuron.modules import SpikingNeuron

__all__ = ["ATOMIC_TYPES", "Call", "Trace", "trace_model", "batch_head", "batch_size"]

#: Module types the deploy path understands as a whole (never looked inside).
ATOMIC_TYPES: tuple[type[nn.Module], ...] = (
    TimeFolded, nn.Conv1d, nn.Conv2d, nn.Linear,
    nn.modules.batchnorm._BatchNorm, BNTT2d,
    nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d, nn.AdaptiveMaxPool2d,
    nn.Flatten, nn.Identity, nn.Dropout,
    SpikingNeuron, DirectEncoder, PoissonEncoder,
)


@dataclass
class Call:
    """One recorded call.

    Attributes:
        index: position in execution order.
        kind: ``"module"`` (an atomic module) or ``"glue"`` (a torch function).
        name: qualified module name (``"layer1.0.conv1"``) or the function name.
        owner: for glue, the qualified name of the module whose forward ran it
            (``""`` is the model itself); for modules, the module's own name.
        inputs: producers of the tensor arguments, in order (call indices,
            ``"input"`` or ``"const"``).
        in_shapes: shapes of those tensor arguments.
        out_shape: shape of the (first) output tensor.
        func: the torch function for glue calls.
        args: the glue call's positional arguments (tensors replaced by None).
        kwargs: the glue call's keyword arguments.
    """

    index: int
    kind: str
    name: str
    owner: str
    inputs: list[Any]
    in_shapes: list[tuple[int, ...]]
    out_shape: tuple[int, ...]
    func: Callable | None = None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass
class Trace:
    """Result of :func:`trace_model`: calls in order, and the output's producer(s)."""

    calls: list[Call]
    outputs: list[Any]
    modules: dict[str, nn.Module]

    def contributing(self) -> set[int]:
        """Indices of the calls whose results reach the output.

        The others compute nothing the model returns: an input check
        (``torch.isfinite(x).all()``) or other bookkeeping.
        """
        live: set[int] = set()
        stack = [p for p in self.outputs if isinstance(p, int)]
        while stack:
            i = stack.pop()
            if i not in live:
                live.add(i)
                stack.extend(p for p in self.calls[i].inputs if isinstance(p, int))
        return live

    def consumers(self, index: int) -> list[Call]:
        """Calls that read a tensor produced by call ``index``."""
        return [c for c in self.calls if index in c.inputs]

    def module_call(self, name: str) -> list[Call]:
        """All atomic calls of the module named ``name``."""
        return [c for c in self.calls if c.kind == "module" and c.name == name]


class _Recorder(TorchFunctionMode):
    def __init__(self, owner_stack: list[str], atomic_depth: list[int], record: Callable) -> None:
        super().__init__()
        self.owner_stack, self.atomic_depth, self.record = owner_stack, atomic_depth, record

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.atomic_depth[0] == 0:
            self.record(func, args, kwargs, out)
        return out


def _name_of(func: Callable) -> str:
    name = getattr(func, "__name__", None) or repr(func)
    return name


class _Tracer:
    """The recording state of one :func:`trace_model` run: calls, each tensor's producer, the owner stack."""

    def __init__(self, model: nn.Module, atomic: tuple[type[nn.Module], ...]) -> None:
        self.calls: list[Call] = []
        self.producer: dict[int, Any] = {}
        self.keep: list[Tensor] = []  # holds every recorded tensor so ids stay unique
        self.owner_stack: list[str] = [""]
        self.atomic_depth = [0]
        self.atomic = atomic
        self.names = {id(m): n for n, m in model.named_modules()}
        self.pending: dict[int, list] = {}

    def producers_of(self, values) -> tuple[list[Any], list[tuple[int, ...]]]:
        flat, _ = tree_flatten(values)
        tensors = [v for v in flat if isinstance(v, Tensor)]
        return [self.producer.get(id(t), "const") for t in tensors], [tuple(t.shape) for t in tensors]

    def register_outputs(self, out, index: int) -> tuple[int, ...] | None:
        flat, _ = tree_flatten(out)
        shape = None
        for t in flat:
            if isinstance(t, Tensor):
                self.producer[id(t)] = index
                self.keep.append(t)
                shape = tuple(t.shape) if shape is None else shape
        return shape

    def record_glue(self, func, args, kwargs, out) -> None:
        flat, _ = tree_flatten(out)
        if not any(isinstance(t, Tensor) for t in flat):
            return
        inputs, shapes = self.producers_of((args, kwargs))
        index = len(self.calls)
        shape = self.register_outputs(out, index)
        plain_args = tuple(None if isinstance(a, Tensor) else a for a in args)
        plain_kwargs = {k: v for k, v in kwargs.items() if not isinstance(v, Tensor)}
        self.calls.append(Call(index, "glue", _name_of(func), self.owner_stack[-1], inputs, shapes, shape or (),
                               func=func, args=plain_args, kwargs=plain_kwargs))

    def pre_hook(self, module, args) -> None:
        if isinstance(module, self.atomic):
            if self.atomic_depth[0] == 0:
                self.pending[id(module)] = list(self.producers_of(args))
            self.atomic_depth[0] += 1
        else:
            self.owner_stack.append(self.names[id(module)])

    def post_hook(self, module, args, out) -> None:
        if not isinstance(module, self.atomic):
            self.owner_stack.pop()
            return
        self.atomic_depth[0] -= 1
        if self.atomic_depth[0] == 0:
            inputs, shapes = self.pending.pop(id(module))
            index = len(self.calls)
            shape = self.register_outputs(out, index)
            name = self.names[id(module)]
            self.calls.append(Call(index, "module", name, name, inputs, shapes, shape or ()))


def trace_model(model: nn.Module, example: Tensor, atomic: tuple[type[nn.Module], ...] = ATOMIC_TYPES) -> Trace:
    """Run ``model(example)`` once (no grad) and record its data flow.

    Args:
        model: any module; put it in eval mode first if BN statistics matter.
        example: a valid input (e.g. ``[B, C, H, W]`` images).
        atomic: module types recorded as a whole.

    Returns:
        The :class:`Trace`.
    """
    tracer = _Tracer(model, atomic)
    modules = dict(model.named_modules())
    handles = []
    for m in modules.values():
        if m is not model:
            handles.append(m.register_forward_pre_hook(tracer.pre_hook))
            handles.append(m.register_forward_hook(tracer.post_hook))
    tracer.producer[id(example)] = "input"
    tracer.keep.append(example)
    try:
        with torch.no_grad(), _Recorder(tracer.owner_stack, tracer.atomic_depth, tracer.record_glue):
            out = model(example)
    finally:
        for h in handles:
            h.remove()
    outputs, _ = tracer.producers_of(out)
    return Trace(tracer.calls, outputs, modules)

def batch_head(x: Tensor, n: int) -> Tensor:
    """The first ``n`` samples of a model input: images ``[B, C, H, W]`` or event frames ``[T, B, C, H, W]``
    (every 5-D model input is time-major, so its batch axis is 1)."""
    return x[:, :n] if x.dim() == 5 else x[:n]


def batch_size(x: Tensor) -> int:
    """Samples in a model input (see :func:`batch_head`)."""
    return x.shape[1] if x.dim() == 5 else x.shape[0]
