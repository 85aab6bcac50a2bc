"""The typed intermediate representation: per-sample buffers and one dataclass per operation.

A :class:`Program` is what every target emits: an input buffer, a list of operations in
execution order, an output buffer. Each operation is a small dataclass naming the engine
layer it computes (for messages and the audit's verdicts) and holding exactly the
parameters its emitters need; targets dispatch on the operation's *type* (a table keyed
by type, :func:`functools.singledispatch`), never on a string.

| op | computes | multiplication-free when |
|---|---|---|
| :class:`Synapse` | conv/linear (BN folded), optionally a tiling pooling fused in | its input is spikes (event-driven) |
| :class:`Pool` | max pooling (compare) or window sum + shift / division | max, or a power-of-two window |
| :class:`Neuron` | LIF/IF/PLIF: leak, drive, threshold, reset, per step | leak and gain are powers of two |
| :class:`Affine` | a BN that could not be folded | its input is spikes (a select) |
| :class:`Add` | a residual sum | always |
| :class:`Mean` | a sum over time or trailing positions, its divisor kept | always (the divisor is exact) |
| :class:`Permute` | a transpose/permutation of the per-sample axes: an index map | always (data movement) |
| :class:`Concat` | a concatenation along a per-sample axis | always (data movement) |
| :class:`Relu` | ``max(x, 0)`` | always (a comparison) |
| :class:`Gate` | GAC's gate: ``O = S ? sigmoid(TA * SCA) : 0``, TA from the stem's output | never (TA's MLP and ``TA * SCA`` multiply) |

Buffers hold one sample. A ``spike`` buffer stores 0/1 bytes (the value ``2^F``); an
``int`` buffer int64 fixed point with ``F`` fraction bits; a ``ratio`` buffer an int64
numerator whose value is ``numerator / divisor`` (a mean). A time-major buffer stores
``steps`` copies of its per-step shape (``steps = 1`` when every step holds the same values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from spikevision.deploy.engine.gac import IntGAC
    from spikevision.deploy.engine.layers import IntAffine, IntNeuron, IntSynapse

__all__ = ["BufKind", "Buf", "Op", "Synapse", "FusedPool", "Pool", "Neuron", "Affine", "Add", "Mean", "Permute",
           "Concat", "Relu", "Gate", "Program", "ProgramError"]

BufKind = Literal["spike", "int", "ratio"]


class ProgramError(ValueError):
    """The integer model holds something the typed program (C target, native runtime) cannot express."""


@dataclass(frozen=True)
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
    kind: BufKind
    divisor: int = 1

    @property
    def numel(self) -> int:
        """Elements per step."""
        return math.prod(self.shape)

    @property
    def size(self) -> int:
        """Elements stored (all steps)."""
        return self.numel * self.steps


@dataclass(kw_only=True)
class Op:
    """Base of every operation: the engine layer it computes, its input buffers and its output buffer."""

    layer: str
    inputs: tuple[Buf, ...]
    out: Buf

    @property
    def x(self) -> Buf:
        """The first (usually only) input."""
        return self.inputs[0]


@dataclass(frozen=True)
class FusedPool:
    """A pooling folded into the convolution before it (its windows tile the conv's output, which nothing else
    reads): the conv's full-size output is never stored."""

    layer: str
    is_max: bool
    k: tuple[int, int]
    s: tuple[int, int]
    n: int
    shift: int | None
    conv_shape: tuple[int, ...]

    @property
    def what(self) -> str:
        return f"{'max' if self.is_max else 'avg'}-pool {self.k[0]}x{self.k[1]}"


@dataclass(kw_only=True)
class Synapse(Op):
    """Conv/linear with BN folded: event-driven accumulation on spikes (``event``), else integer MAC."""

    syn: IntSynapse
    event: bool
    pool: FusedPool | None = None


@dataclass(kw_only=True)
class Pool(Op):
    """Max pooling (comparisons) or average pooling (window sum, then a shift or a division by ``n``)."""

    is_max: bool
    k: tuple[int, int]
    s: tuple[int, int]
    pad: tuple[int, int]
    n: int
    shift: int | None


@dataclass(kw_only=True)
class Neuron(Op):
    """A multi-step neuron (membrane persists over the steps; the output is spikes)."""

    neuron: IntNeuron


@dataclass(kw_only=True)
class Affine(Op):
    """A BN kept in the model: a select between two constants on spikes, a multiply on analog input."""

    affine: IntAffine


@dataclass(kw_only=True)
class Add(Op):
    """The elementwise sum of two buffers of the same shape (a residual connection)."""


@dataclass(kw_only=True)
class Mean(Op):
    """A sum over the time steps (``over="time"``) or over ``n`` trailing positions; the divisor rides in the
    output buffer (a ``ratio``), so no division happens."""

    over: Literal["time", "trailing"]
    n: int


@dataclass(kw_only=True)
class Permute(Op):
    """``out = x.permute(perm)`` over the per-sample axes (a transpose): data movement by running offsets."""

    perm: tuple[int, ...]


@dataclass(kw_only=True)
class Concat(Op):
    """``out = cat(inputs, axis)`` over a per-sample axis: data movement."""

    axis: int


@dataclass(kw_only=True)
class Relu(Op):
    """``out = max(x, 0)`` (a comparison per element)."""


@dataclass(kw_only=True)
class Gate(Op):
    """GAC's gate (Qiu et al., AAAI 2024): inputs ``(S, SCA, U)``; per step and sample TA from the mean and the
    maximum of ``U`` through a two-layer MLP, then ``O = S ? table[z] : 0`` with ``z = TA * SCA``
    (:class:`~spikevision.deploy.engine.gac.IntGAC` holds the weights and the table)."""

    gac: IntGAC


@dataclass
class Program:
    """A lowered integer model: the input buffer, the ops in order, the output buffer.

    Attributes:
        T: time steps.
        frac_bits: ``F`` of every ``int`` buffer (a spike is ``2^F``).
        input: the quantised input (an image stored once, or ``T`` event frames).
        ops: the operations in execution order.
        output: the logits (a ``ratio`` when they are a mean over time).
        storages: every array (name to (C element type, elements)) the ops write.
    """

    T: int
    frac_bits: int
    input: Buf
    ops: list[Op]
    output: Buf
    storages: dict[str, tuple[str, int]]
