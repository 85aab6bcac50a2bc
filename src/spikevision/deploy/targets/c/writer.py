"""What the C emitters share: the ``const`` tables, the functions written so far and the scratch sizes of the
state (:class:`CWriter`), and :func:`emit`, dispatched on the operation's type.

Each operation type of :mod:`spikevision.deploy.ir.ops` has one registered emitter, in
:mod:`spikevision.deploy.targets.c.emit` (synapses in :mod:`spikevision.deploy.targets.c.synapse`).
The rules the code keeps (integers only, floor shifts, no ``*``, ``/`` or ``%`` in layers the MFI
audit calls multiplication-free) are listed in :mod:`spikevision.deploy.targets.c.codegen`.
"""

from __future__ import annotations

from functools import singledispatch
from typing import Sequence

from spikevision.deploy.ir.ops import Buf, Op, Program, ProgramError, Synapse

__all__ = ["CWriter", "emit", "weight_ctype", "indent", "SIZES"]

_INDENT = "    "
SIZES = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4, "int64_t": 8,
         "double": 8}


def weight_ctype(bits: int) -> str:
    """Smallest C integer type holding ``bits``-bit signed weights."""
    return "int8_t" if bits <= 8 else "int16_t" if bits <= 16 else "int32_t"


def _fmt(values: Sequence[int], per_line: int = 16) -> str:
    vals = [str(int(v)) for v in values]
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return "{\n    " + ",\n    ".join(lines) + "\n}" if vals else "{0}"


def _int_type_for(values: Sequence[int]) -> str:
    lo, hi = min(values, default=0), max(values, default=0)
    for t, bits in (("int8_t", 8), ("int16_t", 16), ("int32_t", 32)):
        if -(2 ** (bits - 1)) <= lo and hi < 2 ** (bits - 1):
            return t
    return "int64_t"


def indent(lines: list[str], levels: int = 1) -> list[str]:
    return [_INDENT * levels + ln for ln in lines]


class CWriter:
    """What the emitters share: the ``const`` tables, the functions, the element type of every buffer and the
    scratch arrays of the ops.

    Attributes:
        tables: C definitions of the ``const`` arrays. funcs: one function per op.
        flash: bytes of all tables. weight_bytes: bytes of the synapse weights.
        types: per storage, its C element type (``uint8_t`` spikes, ``int32_t`` where a proven interval fits,
            else ``int64_t``; :func:`~spikevision.deploy.ir.ranges.storage_ctypes`).
        scratch_bufs: per scratch array, ``(C element type, elements, op index)``: it lives during that op only,
            so it shares memory with the buffers of other ops.
        packed: spike storages kept as bits (spike ``i`` is bit ``i & 7`` of byte ``i >> 3``), not bytes.
        byte_events: event lists of event-driven convs hold input channels as bytes (a table gives their weight
            offsets), else int32 weight offsets (more RAM, faster on a desktop CPU).
        phase, one_step, persistent, k: a step-at-a-time build (set by ``generate_c``): each op's phase, the
            storages holding one step, the arrays that outlive a step, the op being emitted.
        layers: per emitted layer, ``(layer, description, multiplication_free)``.
    """

    def __init__(self, prog: Program, name: str, weight_bits: int, notes: dict[str, tuple[bool, str]],
                 types: dict[str, str] | None = None, packed: frozenset[str] = frozenset(),
                 byte_events: bool = True, exact_double: bool = False) -> None:
        self.p, self.name, self.notes = prog, name, notes
        self.wtype = weight_ctype(weight_bits)
        self.types = types if types is not None else {
            s: "uint8_t" if kind == "uint8" else "int64_t" for s, (kind, _n) in prog.storages.items()}
        self.tables: list[str] = []
        self.funcs: list[str] = []
        self.flash = self.weight_bytes = 0
        self.scratch_bufs: dict[str, tuple[str, int, int]] = {}
        self.packed = packed
        self.byte_events = byte_events
        self.exact_double = exact_double
        self.phase: tuple[str, ...] | None = None  # a step-at-a-time build: per op, "pre", "step" or "post"
        self.one_step: frozenset[str] = frozenset()  # storages that hold one step there
        self.persistent: set[str] = set()  # arrays that live through all the steps (membranes)
        self.k = 0  # the op being emitted
        self.layers: list[tuple[str, str, bool]] = []

    def in_steps(self) -> bool:
        """The op being emitted runs once per time step (a step-at-a-time build), not over all steps."""
        return self.phase is not None and self.phase[self.k] == "step"

    def stored(self, b: Buf) -> int:
        """Elements stored for ``b``: one step's in a step-at-a-time build, else all its steps."""
        return b.numel if b.storage in self.one_step else b.size

    def persist(self, k: int, tag: str, ctype: str, n: int) -> str:
        """An array of op ``k`` that lives through all the steps (a membrane of a step-at-a-time build)."""
        name = self.scratch(k, tag, ctype, n)
        self.persistent.add(name)
        return name

    def step_offset(self, b: Buf, tag: str) -> str:
        """Where step ``t`` of ``b`` starts: 0 when ``b`` holds one step or is the same at every step, else from
        a table of ``t * numel`` (no multiplication)."""
        if b.storage in self.one_step or b.steps == 1:
            return "0"
        return f"{self.table(f'sv_t{self.k}{tag}', [t * b.numel for t in range(b.steps)])}[t]"

    def scratch(self, k: int, tag: str, ctype: str, n: int) -> str:
        """A scratch array of ``n`` ``ctype`` elements for op ``k`` (``st-><name>[i]`` in its code)."""
        name = f"x{k}{tag}"
        self.scratch_bufs[name] = (ctype, max(1, n), k)
        return name

    def table(self, ident: str, values: Sequence[int], ctype: str | None = None, weights: bool = False) -> str:
        """Define ``static const <ctype> ident[]`` (the smallest type that holds the values by default)."""
        values = [int(v) for v in values]
        ctype = ctype or _int_type_for(values)
        self.tables.append(f"static const {ctype} {ident}[{max(1, len(values))}] = {_fmt(values)};")
        nbytes = SIZES[ctype] * max(1, len(values))
        self.flash += nbytes
        if weights:
            self.weight_bytes += nbytes
        return ident

    def spike(self, b: Buf, idx: str) -> str:
        """Spike ``b[idx]`` as 0 or 1 (a byte, or a bit of a packed storage)."""
        if b.storage in self.packed:
            return f"((st->{b.storage}[({idx}) >> 3] >> (({idx}) & 7)) & 1)"
        return f"st->{b.storage}[{idx}]"

    def load(self, b: Buf, idx: str) -> str:
        """The fixed-point value of ``b[idx]`` as int64: a spike byte becomes ``SV_ONE``, a mean is divided
        (rounded), an int32 element is widened (so that sums and products of loads never wrap)."""
        ref = f"st->{b.storage}[{idx}]"
        if self.types.get(b.storage) == "int32_t":
            ref = f"((int64_t){ref})"
        if b.kind == "spike":
            return f"({self.spike(b, idx)} ? SV_ONE : 0)"
        if b.kind == "ratio" and b.divisor != 1:
            return f"sv_round_div({ref}, {b.divisor})"
        return ref

    def steps_loop(self, out: Buf, ins: Sequence[Buf], body: list[str],
                   extra_inc: Sequence[tuple[str, int]] = ()) -> list[str]:
        """``for t`` over the output's stored steps with running offsets ``o0`` (out), ``i0, i1, ...`` (inputs)
        and the ``extra_inc`` variables (name, increment per step); in a step-at-a-time build, step ``t`` alone,
        its offsets from tables."""
        if self.in_steps():
            offs = "".join(f", i{j} = {self.step_offset(b, f'i{j}')}" for j, b in enumerate(ins))
            used = " ".join(f"(void)i{j};" for j in range(len(ins)))
            sets = [f"{v} = {self.table(f'sv_{v}{self.k}', [t * n for t in range(self.p.T)])}[t];"
                    for v, n in extra_inc]
            return [f"int32_t o0 = 0{offs};", f"(void)o0; {used}", *sets, *body]
        lines = [f"int32_t o0 = 0{''.join(f', i{k} = 0' for k in range(len(ins)))};",
                 f"for (int32_t t = 0; t < {out.steps}; t++) {{", *indent(body)]
        incs = [f"o0 += {out.numel};"] + [f"i{k} += {b.numel};" for k, b in enumerate(ins) if b.steps > 1]
        return lines + [_INDENT + " ".join(incs + [f"{v} += {n};" for v, n in extra_inc]), "}"]

    def func(self, k: int, op: Op, what: str, lines: list[str]) -> None:
        """Append ``sv_op<k>`` with the MFI audit's verdict of its layer(s) in the comment."""
        names = [op.layer] + ([op.pool.layer] if isinstance(op, Synapse) and op.pool else [])
        verdicts = []
        for name in names:
            mfi, note = self.notes.get(name, (None, ""))
            self.layers.append((name, what, bool(mfi)))
            verdicts.append(("MFI audit: multiplication-free" if mfi else
                             f"MFI audit: multiplies ({note})" if mfi is False else "MFI audit: not audited")
                            + (f" ('{name}')" if len(names) > 1 else ""))
        body = "\n".join(indent(lines))
        label = "layer" if len(names) == 1 else "layers"
        step = ", int32_t t" if self.phase is not None else ""
        if step:
            body = f"    (void)t;\n{body}"
        self.funcs.append(f"/* {label} {' + '.join(repr(n) for n in names)}: {what}.\n * {'; '.join(verdicts)}. */\n"
                          f"static void sv_op{k}({self.name}_state *st{step})\n{{\n{body}\n}}\n")


@singledispatch
def emit(op: Op, w: CWriter, k: int) -> None:
    """Write the C function ``sv_op<k>`` of ``op`` (one registered emitter per operation type)."""
    raise ProgramError(f"layer {op.layer!r}: the C target has no emitter for {type(op).__name__}")
