r"""C99 source for a lowered integer :class:`~spikevision.deploy.ir.lower.Program`.

One generator serves both targets, so they cannot drift apart:

* the **standalone export** (:mod:`spikevision.deploy.targets.c.export`): the source as
  written, one static state, ``<name>_infer(image, logits)``;
* the **native runtime** (:mod:`spikevision.deploy.targets.native`): the same source
  compiled with ``-DSV_NATIVE_RUNTIME``, which adds a batch entry point with a
  caller-owned state per thread.

Rules the generated code keeps (checked by tests):

* integers only: no ``float``/``double`` anywhere, except in the native runtime's ``"fast"`` layout, whose
  dense convs on analog input also get a float64 loop, taken only where it is exact
  (:mod:`spikevision.deploy.targets.c.dense`); weights are ``const`` arrays;
  every buffer is a member of one state struct sized here (no heap);
* right shifts floor (``sv_asr``, defined without relying on the compiler's
  signed shift); left shifts go through ``uint64_t`` (no undefined behaviour);
* a layer the MFI audit calls multiplication-free is emitted without a single
  ``*``, ``/`` or ``%``: index arithmetic uses running offsets and tables
  computed here, values are only added, shifted, compared and selected.

The code of each operation type is written by its emitter (:func:`~spikevision.deploy.targets.c.emit.emit`,
one per type of :mod:`spikevision.deploy.ir.ops`); this module lays out the state and assembles the files.

Memory (issue 23, for microcontrollers): every buffer and scratch array sits in one arena per element type,
placed first-fit among those whose lifetimes overlap (an elementwise op writes over an input that dies at
it); analog buffers are int32 where interval analysis proves it (:mod:`spikevision.deploy.ir.ranges`), else
int64; a neuron keeps its membranes on the stack, 64 units at a time over all steps; spike trains that only
event-driven synapses read are packed 8 to a byte (:func:`bit_packed`). The native runtime asks for the
``"fast"`` layout instead (int64 buffers, bytes per spike, int32 event lists, exact float64 dense convs).

Event-driven synapse (spike input), per time step: an event list per input pixel
(its active input channels as bytes, built branch-free; a table gives each one's
weight offset), then every output
position adds the int16/int8 weight columns of the events its kernel taps see
(a table built here) into a local int32 accumulator and writes
``(acc << align_c) + bias_c`` once. Its work is proportional to the spikes. A
pooling that tiles a conv's output and is its only reader is fused into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

from spikevision.deploy.ir.ops import Mean, Neuron, Op, Program, ProgramError, Synapse
from spikevision.deploy.ir.ranges import Interval, storage_ctypes
from spikevision.deploy.ir.schedule import inplace_input, step_plan
from spikevision.deploy.targets.c.emit import SIZES, CWriter, emit, weight_ctype

__all__ = ["CSource", "MemoryLayout", "Schedule", "generate_c", "weight_ctype"]

#: ``"small"``: the least RAM (microcontrollers); ``"fast"``: the fastest on a desktop CPU (native runtime)
MemoryLayout = Literal["small", "fast"]
#: ``"layers"``: op by op over all steps; ``"steps"``: the network one time step at a time; ``"auto"``: the one
#: needing less RAM
Schedule = Literal["layers", "steps", "auto"]


@dataclass
class CSource:
    """Generated code plus what it costs.

    Attributes:
        c: the ``.c`` file. h: the ``.h`` file.
        flash_bytes: bytes of every ``const`` table (weights, biases, shift tables, LUT).
        ram_bytes: ``sizeof`` the state struct (buffers and scratch), as laid out here.
        weight_bytes: bytes of the synapse weights alone.
        layers: per op, ``(layer, description, mfi)``.
        layout: per buffer and scratch array, ``(byte offset in the state, elements, arena)`` (arena ``a64``:
            int64, ``a32``: int32, ``a16``: uint16, ``a8``: uint8; :data:`ARENAS`).
        packed: the spike storages kept as bits (their element count in ``layout`` is bytes).
        schedule: ``"layers"`` or ``"steps"`` (the one generated).
    """

    c: str
    h: str
    flash_bytes: int
    ram_bytes: int
    weight_bytes: int
    layers: list[tuple[str, str, bool]] = field(default_factory=list)
    layout: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    packed: frozenset[str] = frozenset()
    schedule: str = "layers"


_PRELUDE = r"""
#define SV_ONE ((int64_t)1 << SV_FRAC_BITS)

/* floor(x / 2^s): an arithmetic right shift, written so that it does not rely on
   the compiler's (implementation-defined) signed right shift */
static inline int64_t sv_asr(int64_t x, int s) { return x >= 0 ? x >> s : ~(~x >> s); }
/* x * 2^s in two's complement, without the undefined signed left shift */
static inline int64_t sv_shl(int64_t x, int s) { return (int64_t)((uint64_t)x << s); }
/* floor(x / n), n > 0 (only in layers the audit reports as dividing) */
static inline int64_t sv_floordiv(int64_t x, int64_t n) { int64_t q = x / n; return (q * n != x && x < 0) ? q - 1 : q; }
/* x / n rounded half to even, n > 0: a mean read by an integer layer (torch.round) */
static inline int64_t sv_round_div(int64_t x, int64_t n)
{
    const int64_t q = sv_floordiv(x, n), r2 = 2 * (x - q * n);
    return (r2 > n || (r2 == n && (q & 1))) ? q + 1 : q;
}
"""


#: C element type -> the arena (a member of the state struct) that holds every buffer of that type
ARENAS = {"int64_t": "a64", "double": "ad", "int32_t": "a32", "uint16_t": "a16", "uint8_t": "a8"}


def _execution_order(prog: Program, phase: tuple[str, ...] | None) -> list[int]:
    """The op indices in the order they run: as listed, or in a step-at-a-time build the ops before the steps,
    those of a step, then those after."""
    n = len(prog.ops)
    if phase is None:
        return list(range(n))
    return [k for want in ("pre", "step", "post") for k in range(n) if phase[k] == want]


def _lifetimes(prog: Program, g: CWriter) -> tuple[dict[str, tuple[int, int]], dict[int, int]]:
    """``(first, last)`` position in the execution order of every storage (the input from -1, the output to the
    end; a scratch array during its op only), and each op's position. In a step-at-a-time build an array used
    during the steps that does not hold one step (a membrane, a buffer computed before the steps, a mean over
    time) lives through all of them."""
    order = _execution_order(prog, g.phase)
    pos = {k: i for i, k in enumerate(order)}
    n = len(order)
    span = {prog.input.storage: (-1, -1), prog.output.storage: (n, n)}
    for k in order:
        op = prog.ops[k]
        for name in [op.out.storage, *(b.storage for b in op.inputs)]:
            lo, hi = span.get(name, (pos[k], pos[k]))
            span[name] = (min(lo, pos[k]), max(hi, pos[k]))
    span[prog.output.storage] = (span[prog.output.storage][0], n)
    span.update({name: (pos[k], pos[k]) for name, (_t, _n, k) in g.scratch_bufs.items()})
    steps = [pos[k] for k in order if g.phase is not None and g.phase[k] == "step"]
    if steps:
        first, last = min(steps), max(steps)
        for name, (lo, hi) in span.items():
            outlives = name in g.persistent or (name not in g.one_step and name not in g.scratch_bufs)
            if outlives and lo <= last and hi >= first:
                span[name] = (min(lo, first), max(hi, last))
    return span, pos


def _first_fit(busy: list[tuple[int, int]], size: int) -> int:
    """The lowest offset where ``size`` elements fit between the sorted ``busy`` ranges."""
    off = 0
    for a, b in busy:
        if off + size <= a:
            break
        off = max(off, b)
    return off


def bit_packed(prog: Program) -> frozenset[str]:
    """Spike storages that can be kept as bits: written by a neuron, read only by event-driven synapses (whose
    event lists test one spike at a time), not the output."""
    readers: dict[str, list[Op]] = {}
    for op in prog.ops:
        for b in op.inputs:
            readers.setdefault(b.storage, []).append(op)
    return frozenset(op.out.storage for op in prog.ops
                     if isinstance(op, Neuron) and op.out.storage != prog.output.storage
                     and readers.get(op.out.storage)
                     and all(isinstance(r, Synapse) and r.event for r in readers[op.out.storage]))


def _allocate(prog: Program, g: CWriter, share: bool) -> dict[str, tuple[str, int, int]]:
    """Arena and element offset of every storage and scratch array: first fit among those of its arena whose
    lifetime overlaps (all of them without ``share``); an elementwise op's output takes the place of an input
    of its size that dies at it (:func:`~spikevision.deploy.ir.schedule.inplace_input`)."""
    span, pos = _lifetimes(prog, g)
    stepping = {k for k in pos if g.phase is not None and g.phase[k] == "step"}
    into = {op.out.storage: [b.storage for b in inplace_input(op) if span[b.storage][1] == pos[k]
                             and (k not in stepping or b.storage in g.one_step)]  # not what later steps read
            for k, op in enumerate(prog.ops)} if share else {}
    numel = {op.out.storage: op.out.numel for op in prog.ops}
    sizes = {}
    for name, (_kind, size) in prog.storages.items():
        size = numel[name] if name in g.one_step else size
        sizes[name] = (g.types[name], -(-size // 8) if name in g.packed else size)
    sizes.update({name: (ctype, size) for name, (ctype, size, _k) in g.scratch_bufs.items()})
    placed: dict[str, list[tuple[int, int, int, int]]] = {a: [] for a in ARENAS.values()}  # (offset, size, life)
    layout = {}
    for name in sorted(sizes, key=lambda s: (span.get(s, (0, 0))[0], -sizes[s][1], s)):
        ctype, size = sizes[name]
        arena = ARENAS[ctype]
        lo, hi = span.get(name, (0, len(prog.ops)))
        same = [s for s in into.get(name, ()) if s in layout and layout[s][0] == arena and layout[s][2] == size]
        if same:  # an elementwise op writes over an input that dies at it (see inplace_input)
            off = layout[same[0]][1]
        else:
            off = _first_fit(sorted((o, o + sz) for o, sz, f, l in placed[arena]
                                    if not share or not (l < lo or hi < f)), size)
        placed[arena].append((off, size, lo, hi))
        layout[name] = (arena, off, size)
    return layout


def comment_text(line: str) -> str:
    """``line`` made safe inside a C block comment: no ``*/``, ``/*``, line breaks or other control
    characters, no trigraphs, printable ASCII only (anything else is written as ``\\xNN``)."""
    out = []
    for ch in str(line):
        code = ord(ch)
        out.append(ch if 32 <= code < 127 else f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}")
    text = "".join(out).replace("*/", "* /").replace("/*", "/ *").replace("??", "? ?")
    return text


def _state(prog: Program, g: CWriter, share: bool) -> tuple[list[str], int, dict[str, tuple[int, int, str]],
                                                            dict[str, tuple[str, int, int]]]:
    """The state struct: one arena per element type (int64, int32, uint16, uint8) holding every buffer and
    scratch array at an offset fixed here, those whose lifetimes do not overlap sharing memory.

    Returns:
        ``(members, size in bytes, byte layout per buffer, arena layout per buffer)``.
    """
    layout = _allocate(prog, g, share)
    members, offsets, ram = [], {}, 0
    for ctype, arena in ARENAS.items():
        n = max([off + size for a, off, size in layout.values() if a == arena], default=0)
        if n or arena == "a64":
            members.append(f"    {ctype} {arena}[{max(1, n)}];")
            offsets[arena] = ram
            ram += SIZES[ctype] * max(1, n)
    ram = -(-ram // 8) * 8  # the struct's size: padded to its 8-byte alignment
    byte_layout = {b: (offsets[arena] + SIZES[_ctype_of(arena)] * off, size, arena)
                   for b, (arena, off, size) in layout.items()}
    return members, ram, byte_layout, layout


def _ctype_of(arena: str) -> str:
    return next(ctype for ctype, a in ARENAS.items() if a == arena)


def _header(prog: Program, name: str, ram: int, has_lut: bool, top: str, input_range: Interval | None) -> str:
    inp, out, N = prog.input, prog.output, name.upper()
    lo, hi = input_range if input_range is not None else (0, 0)
    checked = (f"\n   Every input value must lie in [{lo}, {hi}] (what the pixel table gives: the buffers'\n"
               "   widths are proven for it); otherwise nothing runs and it returns -1." if input_range else "")
    what = (f"uint8 pixels, [C][H][W] = {list(inp.shape)}" if not inp.time else
            f"int64 fixed-point frame values, [T][C][H][W] = {[inp.steps, *inp.shape]}")
    infer = (f"/* Classify one image: writes {out.numel} fixed-point logits, returns the class (their argmax).\n"
             f"   Not reentrant: uses one static state of {ram} bytes. */\n"
             f"int {name}_infer(const uint8_t *image, int64_t *logits);\n\n" if has_lut else "")
    return (f"/* {name}.h: integer spiking network inference, generated by spikevision.\n{top} */\n"
            f"#ifndef {N}_H\n#define {N}_H\n\n#include <stdint.h>\n\n"
            f"#define {N}_CLASSES {out.numel}\n"
            f"#define {N}_INPUT_SIZE {inp.size}   /* {what} */\n"
            f"#define {N}_TIME_STEPS {prog.T}\n"
            f"#define {N}_FRAC_BITS {prog.frac_bits}\n"
            f"/* logits[k] / ({N}_LOGIT_DIVISOR * 2^{N}_FRAC_BITS) is the real-valued logit */\n"
            f"#define {N}_LOGIT_DIVISOR {out.divisor}\n\n" + infer
            + f"/* Same from an already quantised input (int64, {prog.frac_bits} fraction bits), with a caller-owned\n"
              f"   state of {name}_state_bytes() bytes (8-byte aligned): reentrant.{checked} */\n"
              f"int {name}_infer_q(const int64_t *input, int64_t *logits, void *state);\n"
              f"long {name}_state_bytes(void);\n\n#endif\n")


def _run(prog: Program, name: str, phase: tuple[str, ...] | None) -> str:
    """``sv_run``: every op in order, or (step at a time) the ops before the steps, each step's, those after."""
    if phase is None:
        calls = "\n".join(f"    sv_op{k}(st);" for k in range(len(prog.ops)))
        return f"static void sv_run({name}_state *st)\n{{\n{calls}\n}}\n"
    part = {p: [k for k in range(len(prog.ops)) if phase[k] == p] for p in ("pre", "step", "post")}
    lines = [f"    sv_op{k}(st, 0);" for k in part["pre"]]
    lines += [f"    for (int32_t t = 0; t < {prog.T}; t++) {{", *(f"        sv_op{k}(st, t);" for k in part["step"]), "    }"]
    lines += [f"    sv_op{k}(st, 0);" for k in part["post"]]
    return f"static void sv_run({name}_state *st)\n{{\n" + "\n".join(lines) + "\n}\n"


def _entry_points(prog: Program, name: str, has_lut: bool, input_range: Interval | None,
                  phase: tuple[str, ...] | None = None) -> list[str]:
    """``sv_run``, the argmax, ``<name>_infer_q`` (which refuses input outside ``input_range``) and (with an
    input table) ``<name>_infer``."""
    inp, out = prog.input, prog.output
    check = (f"    for (int32_t i = 0; i < {inp.size}; i++)\n"
             f"        if (input[i] < {input_range[0]}LL || input[i] > {input_range[1]}LL) return -1;\n"
             if input_range is not None else "")
    n_cls = out.numel
    c = [_run(prog, name, phase),
         f"static int sv_argmax(const int64_t *logits)\n{{\n    int best = 0;\n"
         f"    for (int k = 1; k < {n_cls}; k++) if (logits[k] > logits[best]) best = k;\n    return best;\n}}\n",
         f"long {name}_state_bytes(void) {{ return (long)sizeof({name}_state); }}\n",
         f"int {name}_infer_q(const int64_t *input, int64_t *logits, void *state)\n{{\n"
         f"    {name}_state *st = ({name}_state *)state;\n{check}"
         f"    for (int32_t i = 0; i < {inp.size}; i++) st->{inp.storage}[i] = input[i];\n"
         f"    sv_run(st);\n"
         f"    for (int32_t k = 0; k < {n_cls}; k++) logits[k] = st->{out.storage}[k];\n"
         f"    return sv_argmax(logits);\n}}\n"]
    if has_lut:
        hw = inp.numel // inp.shape[0]
        c.append(f"static {name}_state sv_state;\n\n"
                 f"int {name}_infer(const uint8_t *image, int64_t *logits)\n{{\n"
                 f"    {name}_state *st = &sv_state;\n"
                 f"    int32_t i = 0, lut = 0;\n"
                 f"    for (int32_t ch = 0; ch < {inp.shape[0]}; ch++) {{\n"
                 f"        for (int32_t p = 0; p < {hw}; p++) {{\n"
                 f"            st->{inp.storage}[i] = sv_lut[lut + image[i]];\n            i++;\n        }}\n"
                 f"        lut += 256;\n    }}\n"
                 f"    sv_run(st);\n"
                 f"    for (int32_t k = 0; k < {n_cls}; k++) logits[k] = st->{out.storage}[k];\n"
                 f"    return sv_argmax(logits);\n}}\n")
    return c


def _native_entry_points(prog: Program, name: str) -> str:
    """The native runtime's batch entry points (not part of the standalone export): samples ``[lo, hi)`` with one
    state, from quantised int64 input, or from float32 input quantised exactly as
    ``torch.round(x.double() * 2^F)`` does (round half to even in double precision)."""
    size, n_cls, inp, out = prog.input.size, prog.output.numel, prog.input, prog.output
    return (f"#ifdef SV_NATIVE_RUNTIME\n/* The native runtime's batch entry points (not part of the standalone\n"
            f"   export): samples [lo, hi) with one state, from quantised int64 input, or from float32\n"
            f"   input quantised here exactly as torch.round(x.double() * 2^F) does (round half to even\n"
            f"   in double precision). */\n"
            f"#include <math.h>\n"
            f"void {name}_run_batch(const int64_t *input, int64_t *logits, int64_t lo, int64_t hi,\n"
            f"                      void *state)\n{{\n"
            f"    for (int64_t b = lo; b < hi; b++)\n"
            f"        {name}_infer_q(input + b * {size}, logits + b * {n_cls}, state);\n}}\n"
            f"void {name}_run_batch_f32(const float *input, int64_t *logits, int64_t lo, int64_t hi,\n"
            f"                          void *state)\n{{\n"
            f"    {name}_state *st = ({name}_state *)state;\n"
            f"    for (int64_t b = lo; b < hi; b++) {{\n"
            f"        const float *x = input + b * {size};\n"
            f"        for (int32_t i = 0; i < {size}; i++) st->{inp.storage}[i] = "
            f"(int64_t)nearbyint((double)x[i] * (double)SV_ONE);\n"
            f"        sv_run(st);\n"
            f"        for (int32_t k = 0; k < {n_cls}; k++)\n"
            f"            logits[b * {n_cls} + k] = st->{out.storage}[k];\n"
            f"    }}\n}}\n#endif\n")


def _plan_steps(prog: Program, g: CWriter) -> None:
    """Set up ``g`` for a step-at-a-time build: each op's phase and the storages that hold one step (what the
    ops of a step write, but the means over time, which outlive the steps)."""
    plan = step_plan(prog)
    if plan.blocker:
        raise ProgramError(f"the program cannot run one time step at a time: {plan.blocker}")
    g.phase = plan.phase
    g.one_step = frozenset(op.out.storage for k, op in enumerate(prog.ops) if plan.phase[k] == "step"
                           and not (isinstance(op, Mean) and op.over == "time"))


def generate_c(prog: Program, name: str, weight_bits: int, *, lut: list[list[int]] | None = None,
               notes: dict[str, tuple[bool, str]] | None = None, header_lines: Sequence[str] = (),
               share_buffers: bool = True, memory: MemoryLayout = "small", schedule: Schedule = "layers",
               native: bool = False) -> CSource:
    """C99 source (``.c`` and ``.h``) for ``prog``.

    Args:
        prog: the lowered program.
        name: C identifier prefix.
        weight_bits: the engine's weight bits (picks int8/int16/int32 tables).
        lut: per input channel, the 256 fixed-point values of the uint8 pixel values (the input
            quantiser: normalisation and ``round(x * 2^F)`` folded into a table). Without it,
            ``<name>_infer`` is not generated (only the fixed-point entry points). Images only.
        notes: per layer, the MFI audit's ``(multiplication_free, reason)``.
        header_lines: comment lines for the top of both files (made comment-safe: :func:`comment_text`).
        share_buffers: let buffers whose lifetimes do not overlap share memory (less RAM). Without
            it every buffer keeps its values after a run (for inspecting spike trains).
        memory: ``"small"`` (for microcontrollers): an analog buffer is int32 where interval analysis
            proves its values fit (:func:`~spikevision.deploy.ir.ranges.storage_ctypes`; the input's range is
            the table's, and ``<name>_infer_q`` refuses input outside it), spike trains that only
            event-driven synapses read are bits (:func:`bit_packed`), event lists hold a byte per active
            channel. ``"fast"`` (the native runtime, where RAM is plentiful): int64 analog buffers, a byte
            per spike, int32 weight offsets in the event lists: measured faster on a desktop CPU.
        schedule: ``"layers"``: each op over all its steps, one op after the other; ``"steps"``: the ops
            that read the input image once, then the network one time step at a time (activations hold one
            step, every neuron layer's membranes persist; :func:`~spikevision.deploy.ir.schedule.step_plan`),
            then what reads the mean over time. ``"auto"``: whichever needs the smaller state (layer by layer
            where the program cannot run step by step). Layer by layer needs less RAM at small ``T``.
        native: append the native runtime's batch entry points (compiled with ``-DSV_NATIVE_RUNTIME``;
            one of them quantises float input, so it is left out of the standalone export).

    Raises:
        ValueError: ``name`` is not a C identifier, or an input table for event-frame input.
        ProgramError: a layer the generated code cannot hold exactly (named).
    """
    if not name.isidentifier() or not name.isascii():
        raise ValueError(f"name must be a C identifier, got {name!r}")
    if lut is not None and prog.input.time:
        raise ValueError("an input table (lut) maps uint8 pixels; this model takes event frames")
    lut_values = [v for ch in lut for v in ch] if lut is not None else []
    if schedule == "auto":  # both, keeping the smaller state (layer by layer where steps are ruled out)
        kwargs = dict(lut=lut, notes=notes, header_lines=header_lines, share_buffers=share_buffers, memory=memory,
                      native=native)
        both = [generate_c(prog, name, weight_bits, schedule=sched, **kwargs)
                for sched in ("layers", "steps")[:1 if step_plan(prog).blocker else 2]]
        return min(both, key=lambda src: src.ram_bytes)
    if memory not in ("small", "fast"):
        raise ValueError(f"memory must be 'small' or 'fast', got {memory!r}")
    small = memory == "small"
    input_range = (min(lut_values), max(lut_values)) if lut_values and small else None
    types = storage_ctypes(prog, input_range) if small else None
    g = CWriter(prog, name, weight_bits, notes or {}, types, bit_packed(prog) if small else frozenset(), small,
                exact_double=not small)
    if schedule == "steps":
        _plan_steps(prog, g)
    elif schedule != "layers":
        raise ValueError(f"schedule must be 'layers', 'steps' or 'auto', got {schedule!r}")
    for k, op in enumerate(prog.ops):
        g.k = k
        emit(op, g, k)
    if lut is not None:
        g.table("sv_lut", lut_values)
    members, ram, byte_layout, layout = _state(prog, g, share_buffers)
    top = "".join(f" * {comment_text(ln)}\n" for ln in header_lines)
    h = _header(prog, name, ram, lut is not None, top, input_range)
    c = [f"/* {name}.c: integer spiking network inference, generated by spikevision (C99, integers only,\n"
         f" * no heap). Layers, in order, with the MFI audit's verdict in each function's comment.\n{top}"
         f" * flash (const tables): {g.flash} bytes, of which weights {g.weight_bytes}; RAM (state): {ram} bytes;\n"
         f" * {'layer by layer' if g.phase is None else 'one time step at a time'}.\n */",
         f'#include "{name}.h"\n', f"#define SV_FRAC_BITS {prog.frac_bits}", _PRELUDE,
         "typedef struct {\n" + "\n".join(members) + f"\n}} {name}_state;\n",
         "\n".join(g.tables), "", "\n".join(g.funcs), *_entry_points(prog, name, lut is not None, input_range, g.phase)]
    if native:
        c.append(_native_entry_points(prog, name))
    c_text = "\n".join(c)
    for sname, (arena, off, _size) in sorted(layout.items(), key=lambda kv: -len(kv[0])):
        c_text = c_text.replace(f"st->{sname}[", f"(st->{arena} + {off})[")
    return CSource(c_text, h, g.flash, ram, g.weight_bytes, g.layers, byte_layout, g.packed,
                   "layers" if g.phase is None else "steps")
