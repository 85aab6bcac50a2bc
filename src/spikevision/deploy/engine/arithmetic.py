"""Count every arithmetic operation a model executes, by kind and by layer: the proof of multiplication-free inference.

(The synaptic operation counts of the energy estimates, ACs and MACs per
layer, are :mod:`spikevision.analysis.synops`.)

:class:`ArithmeticCounter` is a ``TorchDispatchMode``: it sees each ATen operation
that actually runs (whatever Python code issued it) and classifies it:

| kind | ATen operations | counted |
|---|---|---|
| ``add`` | add, sub, neg, sum, index_add, cumsum | per output element (reductions: per summed element; |
| | | index_add: per source element) |
| ``shift`` | ``<<``, ``>>`` | per element |
| ``compare`` | gt, ge, lt, le, eq, ne, max/min, clamp, relu, max-pooling, bit logic | per element (pooling: window) |
| ``select`` | where, masked_fill (a multiplexer) | per element |
| ``mul`` | mul, div, convolution, mm/bmm/addmm, addcmul, mean, avg-pooling, batch norm | per multiplication (MACs) |
| ``float`` | sigmoid, exp, log, tanh, sqrt, pow, softmax | per element (transcendental) |
| ``other`` | data movement, listed by name (see below) | per output element |
| ``unknown`` | anything not listed: fails the multiplication-free check | per output element |

Operations that only move data (views, copies, dtype conversions, indexing,
``nonzero``, concatenation, padding, ``im2col``, rounding) are listed by name
and counted as ``other``. **Any operation in none of these lists is counted as
``unknown`` and treated like a multiplication**: the counter fails closed, so
an operation nobody classified (``addmv``, ``layer_norm``, a new ATen op)
cannot pass for multiplication-free. Because it watches ATen, not our Python,
a multiplication hidden anywhere in a layer (``x * w``, ``x @ w``,
``F.conv2d``) is caught: that is what :meth:`ArithmeticCounter.assert_multiplication_free`
relies on.

Each operation is charged to the innermost module running when it executed
(module forward hooks keep a stack of qualified names); operations in a
block's own ``forward`` (a residual ``+``) are charged to the block.

**Only what reaches the output counts.** The counter also records the data flow
between the operations (which operation last wrote each storage), so that
:meth:`ArithmeticCounter.keep_reaching` can drop every operation whose result never
reaches the given output: a model's input check (``torch.isfinite(x).all()``), or
statistics nobody reads, is not part of the model's arithmetic.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections import defaultdict
from typing import Iterable

from torch import Tensor, UntypedStorage, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["ArithmeticCounter", "KINDS", "NOT_MFI_KINDS", "MultiplicationError", "uncounted"]

_ACTIVE: list["ArithmeticCounter"] = []


@contextlib.contextmanager
def uncounted():
    """Pause the active :class:`ArithmeticCounter` (if any) for bookkeeping: input checks, statistics."""
    counter = _ACTIVE[-1] if _ACTIVE else None
    if counter is None:
        yield
        return
    with counter.paused():
        yield

KINDS = ("add", "shift", "compare", "select", "mul", "float", "other", "unknown")
#: kinds that break multiplication-free execution (``unknown``: not classified, so not proven free)
NOT_MFI_KINDS = ("mul", "float", "unknown")

_ADD = {"add", "add_", "sub", "sub_", "rsub", "neg", "neg_", "cumsum"}
_REDUCE_ADD = {"sum"}
_SHIFT = {"__lshift__", "__rshift__", "__ilshift__", "__irshift__", "bitwise_left_shift", "bitwise_right_shift"}
_COMPARE = {
    "gt", "ge", "lt", "le", "eq", "ne", "maximum", "minimum", "clamp", "clamp_", "clamp_min", "clamp_max",
    "relu", "relu_", "sign", "abs", "logical_and", "logical_or", "logical_not", "bitwise_and", "bitwise_or",
    "bitwise_not", "bitwise_xor", "__and__", "__or__", "__xor__",
}
_REDUCE_COMPARE = {"max", "min", "amax", "amin", "argmax", "argmin", "all", "any"}
_SELECT = {"where", "masked_fill", "masked_fill_"}
_MUL = {"mul", "mul_", "div", "div_", "floor_divide", "remainder", "reciprocal", "addcmul", "addcdiv", "lerp"}
#: pure data movement: no arithmetic on values (``round``/``floor``: fixed-point rounding, a bit operation)
_MOVE = {
    "view", "_unsafe_view", "reshape", "_reshape_alias", "as_strided", "alias", "detach", "lift_fresh",
    "t", "transpose", "permute", "expand", "unsqueeze", "squeeze", "flatten", "unflatten", "select", "slice",
    "narrow", "split", "split_with_sizes", "chunk", "unbind", "cat", "stack", "clone", "copy_", "_to_copy",
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like", "new_zeros",
    "ones", "ones_like", "new_ones", "full", "full_like", "new_full", "fill_", "zero_", "scalar_tensor", "arange",
    "index", "index_select", "gather", "nonzero", "constant_pad_nd", "im2col", "repeat", "flip", "roll",
    "round", "floor", "ceil", "trunc", "_local_scalar_dense", "item",
}
_FLOAT = {"sigmoid", "exp", "log", "tanh", "sqrt", "rsqrt", "pow", "_softmax", "_log_softmax", "erf", "gelu", "silu"}


#: ops that hand back a tensor created outside the dispatcher (``torch.tensor(...)``): a new value, not a view
_FRESH = {"lift_fresh", "lift", "lift_fresh_copy"}


class MultiplicationError(AssertionError):
    """A layer that must be multiplication-free executed a multiplication."""


def _numel(x) -> int:
    return x.numel() if isinstance(x, Tensor) else 1


def _classify(name: str, args: tuple, out) -> dict[str, int]:
    """Kinds and element counts of one ATen call."""
    first = args[0] if args else None
    o = out[0] if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor) else out
    n_out = _numel(o)
    if name in _ADD:
        return {"add": n_out}
    if name in _REDUCE_ADD:
        return {"add": max(_numel(first) - n_out, 0)}
    if name in ("index_add", "index_add_"):
        return {"add": _numel(args[3])}
    if name in _SHIFT:
        return {"shift": n_out}
    if name in _COMPARE:
        return {"compare": n_out}
    if name in _REDUCE_COMPARE:
        return {"compare": _numel(first)}
    if name in ("max_pool2d_with_indices", "max_pool2d", "adaptive_max_pool2d"):
        return {"compare": _numel(first)}
    if name in _SELECT:
        return {"select": n_out}
    if name in _MUL:
        return {"mul": n_out}
    if name in ("mean", "avg_pool2d", "_adaptive_avg_pool2d", "adaptive_avg_pool2d"):
        return {"add": _numel(first), "mul": n_out}
    if name == "convolution":
        w = args[1]
        macs = n_out * w.shape[1] * math.prod(w.shape[2:])
        return {"mul": macs, "add": macs}
    if name in ("mm", "bmm", "addmm", "baddbmm", "mv", "dot"):
        a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
        macs = n_out * a.shape[-1]
        return {"mul": macs, "add": macs}
    if "batch_norm" in name:
        return {"mul": 2 * n_out, "add": 2 * n_out}
    if name in _FLOAT:
        return {"float": n_out}
    if name in _MOVE:
        return {"other": n_out}
    return {"unknown": n_out}


class ArithmeticCounter(TorchDispatchMode):
    """Count executed operations per layer and kind (see the module docstring).

    Use as a context manager around a forward pass::

        counter = ArithmeticCounter(model)
        with counter:
            model(x)
        counter.totals()            # {"add": ..., "mul": ...}
        counter.assert_multiplication_free(["conv2"])

    Args:
        model: the module whose submodule names label the counts.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KINDS, 0))
        self.ops: dict[str, set[str]] = defaultdict(set)
        self._stack: list[str] = [""]
        self._paused = 0
        self._handles: list = []
        # the data flow: per executed op (layer, counts, ops that wrote what it read); per live storage (by
        # address), a weak reference to it and its writers
        self._nodes: list[tuple[str, dict[str, int], frozenset[int], str]] = []
        self._writers: dict[int, tuple[weakref.ref, set[int]]] = {}

    # -- layer attribution -------------------------------------------------
    def __enter__(self):
        names = {id(m): n for n, m in self.model.named_modules()}

        def pre(module, args):
            self._stack.append(names.get(id(module), "?"))

        def post(module, args, out):
            self._stack.pop()

        for m in self.model.modules():
            if m is not self.model:
                self._handles.append(m.register_forward_pre_hook(pre))
                self._handles.append(m.register_forward_hook(post))
        _ACTIVE.append(self)
        return super().__enter__()

    def __exit__(self, *exc):
        _ACTIVE.remove(self)
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._stack[:] = [""]
        return super().__exit__(*exc)

    @contextlib.contextmanager
    def paused(self):
        """Run bookkeeping (checks, statistics) without counting it."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        layer = self._stack[-1]
        counts = {} if self._paused else {k: int(n) for k, n in _classify(name, args, out).items()}
        for kind, n in counts.items():
            self.counts[layer][kind] += n
            if kind in NOT_MFI_KINDS:
                self.ops[layer].add(name)
        self._record_flow(name, layer, counts, args, kwargs or {}, out)
        return out

    @staticmethod
    def _storage(t: Tensor) -> tuple[int, UntypedStorage] | None:
        try:
            storage = t.untyped_storage()
            return storage.data_ptr(), storage
        except (RuntimeError, NotImplementedError):  # no storage (meta, sparse)
            return None

    def _writers_of(self, t: Tensor) -> set[int]:
        """The ops that wrote ``t``'s storage during the run; none for memory made outside the dispatcher.

        Storages are found by address, and an address is reused as soon as its storage is freed (``torch.tensor``
        builds its value outside the dispatcher, often in just-freed memory), so a record counts only while the
        storage it was made for is alive (PyTorch keeps one Python object per live storage: a weak reference to
        it dies with the memory).
        """
        found = self._storage(t)
        record = self._writers.get(found[0]) if found is not None else None
        return record[1] if record is not None and record[0]() is not None else set()

    def _record_flow(self, name: str, layer: str, counts: dict[str, int], args, kwargs, out) -> None:
        """One node of the data-flow graph: what it read (the writers of its inputs' storages) and what it wrote
        (its outputs: a new value; an in-place, ``out=`` or view op adds itself to the writers of that storage)."""
        ins = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, Tensor)]
        read = [] if name in _FRESH else ins  # a fresh value's input was made outside the run: nothing wrote it
        deps = frozenset().union(*(self._writers_of(t) for t in read))
        node = len(self._nodes)
        self._nodes.append((layer, counts, deps, name))
        inputs = {id(found[1]) for t in read if (found := self._storage(t)) is not None}
        for t in tree_flatten(out)[0]:
            found = self._storage(t) if isinstance(t, Tensor) else None
            if found is None:
                continue
            key, storage = found
            record = self._writers.get(key)
            if id(storage) in inputs and record is not None and record[0]() is not None:
                record[1].add(node)  # written in place, or a view of an input: the storage keeps its writers
            else:  # a new value, or the first write into memory made before the run
                self._writers[key] = (weakref.ref(storage), {node})

    def keep_reaching(self, *outputs: Tensor) -> None:
        """Recount: keep only the operations whose results reach ``outputs`` (through any chain of reads).

        Call after the counted run with what it returned. Operations that fed nothing the model returns (an
        input check, unused statistics) leave :attr:`counts` and :attr:`ops`.
        """
        stack = [n for t in outputs for n in self._writers_of(t)]
        live: set[int] = set()
        while stack:
            n = stack.pop()
            if n not in live:
                live.add(n)
                stack.extend(self._nodes[n][2])
        self.counts = defaultdict(lambda: dict.fromkeys(KINDS, 0))
        self.ops = defaultdict(set)
        for n in sorted(live):
            layer, counts, _deps, name = self._nodes[n]
            if not counts:
                continue  # paused bookkeeping: part of the data flow, not of the arithmetic
            row = self.counts[layer]
            for kind, v in counts.items():
                row[kind] += v
                if kind in NOT_MFI_KINDS and v:
                    self.ops[layer].add(name)

    # -- results -------------------------------------------------------------
    def totals(self, layers: Iterable[str] | None = None) -> dict[str, int]:
        """Summed counts over ``layers`` (default: all, including the model's own code)."""
        keys = list(self.counts) if layers is None else list(layers)
        total = dict.fromkeys(KINDS, 0)
        for k in keys:
            for kind, n in self.counts.get(k, {}).items():
                total[kind] += n
        return total

    def layer_counts(self, prefix: str) -> dict[str, int]:
        """Counts of the layer named ``prefix`` and everything below it."""
        return self.totals(k for k in self.counts if k == prefix or k.startswith(prefix + ".") or prefix == "")

    def assert_multiplication_free(self, layers: Iterable[str]) -> None:
        """Raise :class:`MultiplicationError` if any of ``layers`` multiplied (or ran an unclassified op).

        Raises:
            MultiplicationError: naming each offending layer and ATen operation.
        """
        bad = []
        for layer in layers:
            c = self.layer_counts(layer)
            if any(c[k] for k in NOT_MFI_KINDS):
                below = [k for k in self.counts if k == layer or k.startswith(layer + ".")]
                ops = sorted(set().union(*(self.ops[k] for k in below)))
                bad.append(f"{layer}: {c['mul']} mul + {c['float']} float + {c['unknown']} unclassified ops "
                           f"({', '.join(ops)})")
        if bad:
            raise MultiplicationError("layers expected to be multiplication-free multiplied:\n  " + "\n  ".join(bad))
