"""Value ranges of a lowered :class:`~spikevision.deploy.ir.ops.Program`'s buffers, and the narrowest C integer
type each buffer needs.

Interval analysis, sound for every input inside ``input_range``: each operation maps the intervals of
its inputs to an interval that holds every value it can store, from its quantised constants alone
(weights, biases, shifts, tables), never from sample data. Where the interval fits int32 the target may
store the buffer as int32 with no change to any value (the arithmetic stays int64 in registers), so the
results stay bit-exact with the Python engine; where it does not, or the input is unbounded
(``input_range=None``: event frames, the native runtime's float input), the buffer stays int64.

| op | interval of its output |
|---|---|
| :class:`Synapse` on spikes | per channel ``(sum of negative weights, sum of positive weights) << align + bias`` |
| :class:`Synapse` on analog input | per channel ``(sum of min/max of w * x, with 0 for padding) >> frac + bias`` |
| :class:`Pool` | the input's (max), or with 0 added where padding enters an average |
| :class:`Affine` | a select between two constants (spikes) or ``(x * a) >> frac + b`` per channel |
| :class:`Add` | the sum of the intervals |
| :class:`Permute`, :class:`Concat` | the union of the inputs' |
| :class:`Relu` | clipped at 0 |
| :class:`Gate` | the sigmoid table's values and 0 |

Spike buffers are bytes (0/1) and ``ratio`` buffers (means: the logits) stay int64.
"""

from __future__ import annotations

from functools import singledispatch

import torch

from spikevision.deploy.ir.ops import Add, Affine, Buf, Concat, Gate, Op, Permute, Pool, Program, Relu, Synapse

__all__ = ["Interval", "buffer_ranges", "storage_ctypes", "INT32"]

Interval = tuple[int, int]
INT32: Interval = (-(2**31), 2**31 - 1)


def _union(*ivs: Interval | None) -> Interval | None:
    if any(iv is None for iv in ivs):
        return None
    return min(iv[0] for iv in ivs), max(iv[1] for iv in ivs)


class _Ranges:
    """The interval of every buffer's stored values so far (None: unbounded)."""

    def __init__(self, prog: Program, input_range: Interval | None) -> None:
        self.one = 1 << prog.frac_bits
        self.by_storage: dict[str, Interval | None] = {prog.input.storage: input_range}

    def value(self, b: Buf) -> Interval | None:
        """The interval of what a consumer reads from ``b`` (a spike is ``2^F``, a mean its rounded quotient)."""
        if b.kind == "spike":
            return 0, self.one
        iv = self.by_storage.get(b.storage)
        if iv is None or b.kind != "ratio" or b.divisor == 1:
            return iv
        return iv[0] // b.divisor, -(-iv[1] // b.divisor)


@singledispatch
def _out_range(op: Op, r: _Ranges) -> Interval | None:
    """The interval of ``op``'s stored output (None: not bounded here)."""
    return None


def _weight_sums(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (step, output channel): the sums of the negative and of the positive integer weights."""
    flat = w.reshape(w.shape[0], w.shape[1], -1)
    return flat.clamp(max=0).sum(-1), flat.clamp(min=0).sum(-1)


def _shift(v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``v << s`` (s >= 0) or ``v >> -s`` (floor), elementwise on int64 (Python ints would be exact too)."""
    return torch.where(s >= 0, v << s.clamp(min=0), v >> (-s).clamp(min=0))


@_out_range.register
def _synapse(op: Synapse, r: _Ranges) -> Interval | None:
    m = op.syn
    w = m.weight_int
    if op.event:
        neg, pos = _weight_sums(w)
        lo, hi = _shift(neg, m.align) + m.bias_q, _shift(pos, m.align) + m.bias_q
    else:
        x = r.value(op.x)
        if x is None or max(abs(x[0]), abs(x[1])) * int(w.abs().sum()) >= 2**62:
            return None
        flat = w.reshape(w.shape[0], w.shape[1], -1)
        a, b = flat * x[0], flat * x[1]
        lo = torch.minimum(torch.minimum(a, b), torch.zeros_like(a)).sum(-1)  # 0: a padded tap
        hi = torch.maximum(torch.maximum(a, b), torch.zeros_like(a)).sum(-1)
        lo, hi = (lo >> m.weight_frac) + m.bias_q, (hi >> m.weight_frac) + m.bias_q
    return int(lo.min()), int(hi.max())


@_out_range.register
def _pool(op: Pool, r: _Ranges) -> Interval | None:
    x = r.value(op.x)
    if x is None or op.is_max:
        return x
    return (min(x[0], 0), max(x[1], 0)) if op.pad != (0, 0) else x


@_out_range.register
def _affine(op: Affine, r: _Ranges) -> Interval | None:
    m = op.affine
    if op.x.kind == "spike":
        both = torch.cat([m.on_q.reshape(-1), m.b_q.reshape(-1)])
        return int(both.min()), int(both.max())
    x = r.value(op.x)
    if x is None or max(abs(x[0]), abs(x[1])) * int(m.a_int.abs().max()) >= 2**62:
        return None
    p, q = (m.a_int * x[0]) >> m.a_frac, (m.a_int * x[1]) >> m.a_frac
    if m.b_q.shape != m.a_int.shape:  # not channel by channel: the extremes of each part
        return int(torch.minimum(p, q).min() + m.b_q.min()), int(torch.maximum(p, q).max() + m.b_q.max())
    return int((torch.minimum(p, q) + m.b_q).min()), int((torch.maximum(p, q) + m.b_q).max())


@_out_range.register
def _add(op: Add, r: _Ranges) -> Interval | None:
    a, b = (r.value(x) for x in op.inputs)
    return None if a is None or b is None else (a[0] + b[0], a[1] + b[1])


@_out_range.register(Permute)
@_out_range.register(Concat)
def _movement(op: Op, r: _Ranges) -> Interval | None:
    return _union(*(r.value(x) for x in op.inputs))


@_out_range.register
def _relu(op: Relu, r: _Ranges) -> Interval | None:
    x = r.value(op.x)
    return None if x is None else (max(x[0], 0), max(x[1], 0))


@_out_range.register
def _gate(op: Gate, r: _Ranges) -> Interval | None:
    table = op.gac.sigmoid_q
    return min(0, int(table.min())), max(0, int(table.max()))


def buffer_ranges(prog: Program, input_range: Interval | None) -> dict[str, Interval | None]:
    """The interval of every ``int`` storage's values (None where unbounded), ops taken in order.

    Args:
        prog: the lowered program.
        input_range: the smallest and largest quantised input value (None: any int64).
    """
    r = _Ranges(prog, input_range)
    for op in prog.ops:
        if op.out.kind == "int":
            iv = _out_range(op, r)
            r.by_storage[op.out.storage] = iv
    return r.by_storage


def storage_ctypes(prog: Program, input_range: Interval | None) -> dict[str, str]:
    """The C element type of every storage: ``uint8_t`` for spikes, ``int32_t`` for an ``int`` buffer whose
    interval fits (:func:`buffer_ranges`), else ``int64_t`` (every ``ratio``, the output, unbounded buffers)."""
    ranges = buffer_ranges(prog, input_range)
    types = {}
    for name, (ctype, _size) in prog.storages.items():
        iv = ranges.get(name)
        if ctype == "uint8":
            types[name] = "uint8_t"
        elif name != prog.output.storage and iv is not None and INT32[0] <= iv[0] and iv[1] <= INT32[1]:
            types[name] = "int32_t"
        else:
            types[name] = "int64_t"
    return types
