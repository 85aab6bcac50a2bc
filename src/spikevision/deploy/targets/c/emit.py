"""The C code of each operation type, for :mod:`spikevision.deploy.targets.c.codegen`.

:func:`emit` is a :func:`functools.singledispatch` function: one registered emitter per
operation type of :mod:`spikevision.deploy.ir.ops`. Each appends the ``const`` tables it
needs to a :class:`CWriter` and one ``static void sv_op<k>(state *st)`` function. The
rules the code keeps (integers only, floor shifts, no ``*``, ``/`` or ``%`` in layers the
MFI audit calls multiplication-free) are listed in :mod:`spikevision.deploy.targets.c.codegen`.
"""

from __future__ import annotations

import math
from functools import singledispatch
from typing import Sequence

from spikevision.deploy.engine.gac import OPERAND_LIMIT, SIGMOID_BITS, SIGMOID_RANGE
from spikevision.deploy.ir.ops import (
    Add, Affine, Buf, Concat, Gate, Mean, Neuron, Op, Permute, Pool, Program, ProgramError, Relu, Synapse,
)

__all__ = ["CWriter", "emit", "weight_ctype", "SIZES"]

_INDENT = "    "
SIZES = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4, "int64_t": 8}


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


def _indent(lines: list[str], levels: int = 1) -> list[str]:
    return [_INDENT * levels + ln for ln in lines]


class CWriter:
    """What the emitters share: the ``const`` tables, the functions, and the scratch sizes of the state.

    Attributes:
        tables: C definitions of the ``const`` arrays. funcs: one function per op.
        flash: bytes of all tables. weight_bytes: bytes of the synapse weights.
        acc32, acc64, vsize: elements of the int32/int64 scratch and of the membrane array.
        layers: per emitted layer, ``(layer, description, multiplication_free)``.
    """

    def __init__(self, prog: Program, name: str, weight_bits: int, notes: dict[str, tuple[bool, str]]) -> None:
        self.p, self.name, self.notes = prog, name, notes
        self.wtype = weight_ctype(weight_bits)
        self.tables: list[str] = []
        self.funcs: list[str] = []
        self.flash = self.weight_bytes = 0
        self.acc32 = self.acc64 = self.vsize = 1
        self.layers: list[tuple[str, str, bool]] = []

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

    @staticmethod
    def load(b: Buf, idx: str) -> str:
        """The fixed-point value of ``b[idx]``: a spike byte becomes ``SV_ONE``, a mean is divided (rounded)."""
        ref = f"st->{b.storage}[{idx}]"
        if b.kind == "spike":
            return f"({ref} ? SV_ONE : 0)"
        if b.kind == "ratio" and b.divisor != 1:
            return f"sv_round_div({ref}, {b.divisor})"
        return ref

    @staticmethod
    def steps_loop(out: Buf, ins: Sequence[Buf], body: list[str], extra_inc: Sequence[str] = ()) -> list[str]:
        """``for t`` over the output's stored steps with running offsets ``o0`` (out) and ``i0, i1, ...`` (inputs)."""
        lines = [f"int32_t o0 = 0{''.join(f', i{k} = 0' for k in range(len(ins)))};",
                 f"for (int32_t t = 0; t < {out.steps}; t++) {{", *_indent(body)]
        incs = [f"o0 += {out.numel};"] + [f"i{k} += {b.numel};" for k, b in enumerate(ins) if b.steps > 1]
        return lines + [_INDENT + " ".join(incs + list(extra_inc)), "}"]

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
        body = "\n".join(_indent(lines))
        label = "layer" if len(names) == 1 else "layers"
        self.funcs.append(f"/* {label} {' + '.join(repr(n) for n in names)}: {what}.\n * {'; '.join(verdicts)}. */\n"
                          f"static void sv_op{k}({self.name}_state *st)\n{{\n{body}\n}}\n")


@singledispatch
def emit(op: Op, w: CWriter, k: int) -> None:
    """Write the C function ``sv_op<k>`` of ``op`` (one registered emitter per operation type)."""
    raise ProgramError(f"layer {op.layer!r}: the C target has no emitter for {type(op).__name__}")


# ---------------------------------------------------------------------------
# Synapses
# ---------------------------------------------------------------------------


@emit.register
def _synapse(op: Synapse, w: CWriter, k: int) -> None:
    m = op.syn
    S = m.weight_int.shape[0]
    if S > 1 and op.out.steps != S:
        raise ProgramError(f"layer {op.layer!r}: per-step weights for {S} steps, output has {op.out.steps}")
    if op.event:  # the int32 accumulator holds any sum of one output's weights
        worst = int(m.weight_int.abs().reshape(S, m.weight_int.shape[1], -1).sum(-1).max())
        if worst >= 2**31:
            raise ProgramError(f"layer {op.layer!r}: a sum of weights reaches {worst}, beyond the int32 "
                               "accumulator; use fewer weight bits")
    if m.kind != "conv2d":
        _linear(op, w, k)
    elif op.event:
        _conv_event(op, w, k)
    elif op.out.shape[2] < 16 and op.pool is None:  # rows too short to vectorise over: by output position
        _conv_dense_by_position(op, w, k)
    else:
        _conv_dense_rows(op, w, k)


def _per_step_inc(op: Synapse, weights_per_step: int, channels: int) -> list[str]:
    """Advance the weight (``ws``) and channel (``cs``) offsets each step when the weights differ per step."""
    return [f"ws += {weights_per_step};", f"cs += {channels};"] if op.syn.weight_int.shape[0] > 1 else []


def _linear(op: Synapse, w: CWriter, k: int) -> None:
    m, x, y = op.syn, op.x, op.out
    wi = m.weight_int
    nout, nin = wi.shape[1], wi.shape[2]
    rows = x.numel // nin
    B = w.table(f"sv_b{k}", m.bias_q.reshape(-1).tolist(), "int64_t")
    if op.event:
        W = w.table(f"sv_w{k}", wi.transpose(1, 2).reshape(-1).tolist(), w.wtype, weights=True)  # [S][in][out]
        AL = w.table(f"sv_al{k}", m.align.reshape(-1).tolist(), "uint8_t")
        w.acc32 = max(w.acc32, nout)
        inner = [f"for (int32_t o = 0; o < {nout}; o++) st->acc32[o] = 0;",
                 "int32_t wk = ws;",
                 f"for (int32_t i = 0; i < {nin}; i++) {{",
                 f"    if (st->{x.storage}[xr + i]) {{",
                 f"        for (int32_t o = 0; o < {nout}; o++) st->acc32[o] += {W}[wk + o];",
                 "    }",
                 f"    wk += {nout};",
                 "}",
                 f"for (int32_t o = 0; o < {nout}; o++) "
                 f"st->{y.storage}[yr + o] = sv_shl(st->acc32[o], {AL}[cs + o]) + {B}[cs + o];"]
        what = f"linear {nin}->{nout} on spikes, event-driven (int32 accumulation of {w.wtype} columns)"
    else:
        W = w.table(f"sv_w{k}", wi.reshape(-1).tolist(), w.wtype, weights=True)  # [S][out][in]
        FR = w.table(f"sv_fr{k}", m.weight_frac.reshape(-1).tolist(), "uint8_t")
        inner = [f"for (int32_t o = 0; o < {nout}; o++) {{",
                 "    int64_t acc = 0;",
                 f"    const int32_t wo = ws + o * {nin};",
                 f"    for (int32_t i = 0; i < {nin}; i++) acc += (int64_t){W}[wo + i] * {w.load(x, 'xr + i')};",
                 f"    st->{y.storage}[yr + o] = sv_asr(acc, {FR}[cs + o]) + {B}[cs + o];",
                 "}"]
        what = f"linear {nin}->{nout} on analog input: integer multiply-accumulate (int64)"
    body = ["int32_t xr = i0, yr = o0;", f"for (int32_t r = 0; r < {rows}; r++) {{", *_indent(inner),
            f"    xr += {nin}; yr += {nout};", "}"]
    lines = ["int32_t ws = 0, cs = 0;"] + w.steps_loop(y, [x], body, _per_step_inc(op, nin * nout, nout))
    w.func(k, op, what, lines)


def _conv_geometry(op: Synapse) -> tuple[int, ...]:
    """``cout, cin, kh, kw, H, W, Ho, Wo`` (the conv's own output size, before a fused pooling)."""
    cout, cin, kh, kw = op.syn.weight_int.shape[1:]
    _, H, W_ = op.x.shape
    _, Ho, Wo = op.pool.conv_shape if op.pool else op.out.shape
    return cout, cin, kh, kw, H, W_, Ho, Wo


def _geom_text(op: Synapse) -> str:
    cout, cin, kh, kw, H, W_, Ho, Wo = _conv_geometry(op)
    return f"{cin}->{cout} {kh}x{kw}/{op.syn.stride[0]}, {H}x{W_} -> {Ho}x{Wo}"


def _tap_tables(op: Synapse, w: CWriter, k: int) -> tuple[str, str, str]:
    """Per output position ``q``, the taps inside the map: input pixel (``QP``) and weight offset (``QT``) of
    entries ``QS[q] .. QS[q+1]`` (tables computed here: no index products in C)."""
    cout, cin, kh, kw, H, W_, Ho, Wo = _conv_geometry(op)
    (sh, sw), (dh, dw) = op.syn.stride, op.syn.dilation
    pl, _pr, pt, _pb = op.syn.pad
    start, pix, tap_off = [0], [], []
    for oy in range(Ho):
        for ox in range(Wo):
            for i in range(kh):
                for j in range(kw):
                    iy, ix = oy * sh + i * dh - pt, ox * sw + j * dw - pl
                    if 0 <= iy < H and 0 <= ix < W_:
                        pix.append(iy * W_ + ix)
                        tap_off.append((i * kw + j) * cin * cout)
            start.append(len(pix))
    return w.table(f"sv_qs{k}", start), w.table(f"sv_qp{k}", pix), w.table(f"sv_qt{k}", tap_off)


def _conv_event(op: Synapse, w: CWriter, k: int) -> None:
    """Event-driven conv on spikes. Weights ``[S][kh*kw][cin][cout]``: the column of (tap, input channel) is
    contiguous. Each step first lists, per input pixel, the weight offsets of its active channels (an event
    list, built branch-free); then every output position adds the columns of the events its taps see into a
    local accumulator and writes ``(acc << align) + bias`` once (or pools the accumulators first)."""
    m, x, y = op.syn, op.x, op.out
    cout, cin, kh, kw, H, W_, Ho, Wo = _conv_geometry(op)
    Wt = w.table(f"sv_w{k}", m.weight_int.permute(0, 3, 4, 2, 1).reshape(-1).tolist(), w.wtype, weights=True)
    QS, QP, QT = _tap_tables(op, w, k)
    HW = H * W_
    PO = w.table(f"sv_po{k}", [p * cin for p in range(HW)])
    cnt = HW * cin  # the event lists at acc32[0, HW*cin), the counts after them
    w.acc32 = max(w.acc32, cnt + HW)
    body = [f"for (int32_t p = 0; p < {HW}; p++) st->acc32[{cnt} + p] = 0;",
            "int32_t ic = i0, wc = 0;",
            f"for (int32_t c = 0; c < {cin}; c++) {{",
            f"    for (int32_t p = 0; p < {HW}; p++) {{",
            f"        st->acc32[{PO}[p] + st->acc32[{cnt} + p]] = wc;",
            f"        st->acc32[{cnt} + p] += st->{x.storage}[ic + p];",
            "    }",
            f"    ic += {HW}; wc += {cout};",
            "}",
            "int32_t yq = o0;"]
    accumulate = [f"for (int32_t o = 0; o < {cout}; o++) acc[o] = 0;",
                  f"for (int32_t e = {QS}[q]; e < {QS}[q + 1]; e++) {{",
                  f"    const int32_t p = {QP}[e], base = ws + {QT}[e];",
                  f"    const int32_t n = st->acc32[{cnt} + p], l = {PO}[p];",
                  "    for (int32_t v = 0; v < n; v++) {",
                  "        const int32_t wo = base + st->acc32[l + v];",
                  f"        for (int32_t o = 0; o < {cout}; o++) acc[o] += {Wt}[wo + o];",
                  "    }",
                  "}"]
    AL = w.table(f"sv_al{k}", m.align.reshape(-1).tolist(), "uint8_t")
    B = w.table(f"sv_b{k}", m.bias_q.reshape(-1).tolist(), "int64_t")
    if op.pool is None:
        body += [f"for (int32_t q = 0; q < {Ho * Wo}; q++) {{", f"    int32_t acc[{cout}];", *_indent(accumulate),
                 "    int32_t yo = yq;",
                 f"    for (int32_t o = 0; o < {cout}; o++) {{",
                 f"        st->{y.storage}[yo] = sv_shl(acc[o], {AL}[cs + o]) + {B}[cs + o];",
                 f"        yo += {Ho * Wo};",
                 "    }",
                 "    yq += 1;",
                 "}"]
    else:
        body += _event_pooled(op, w, k, accumulate, AL, B)
    lines = ["int32_t ws = 0, cs = 0;"] + w.steps_loop(y, [x], body, _per_step_inc(op, cin * kh * kw * cout, cout))
    what = (f"conv {_geom_text(op)} on spikes, event-driven: per step an event list of the active inputs, then "
            f"int32 accumulation of their {w.wtype} weight columns")
    w.func(k, op, what + (f", fused with the {op.pool.what} that follows it" if op.pool else ""), lines)


def _event_pooled(op: Synapse, w: CWriter, k: int, accumulate: list[str], AL: str, B: str) -> list[str]:
    """Pooled position ``r`` combines the conv outputs of its window: the max of the accumulators (the shift
    and bias per channel are monotonic, so they commute with max) or their sum."""
    pool, y = op.pool, op.out
    cout, _cin, _kh, _kw, _H, _W, _Ho, Wo = _conv_geometry(op)
    _, Hp, Wp = y.shape
    (ph_, pw_), (psh, psw) = pool.k, pool.s
    order = [(py * psh + i) * Wo + (px * psw + j) for py in range(Hp) for px in range(Wp)
             for i in range(ph_) for j in range(pw_)]
    QO = w.table(f"sv_qo{k}", order)
    if pool.is_max:
        comb, fin, init = "if (acc[o] > m[o]) m[o] = acc[o];", f"sv_shl(m[o], {AL}[cs + o]) + {B}[cs + o]", \
            "m[o] = INT32_MIN;"
    else:
        nb = w.table(f"sv_nb{k}", [int(v) * pool.n for v in op.syn.bias_q.reshape(-1).tolist()], "int64_t")
        comb, init = "m[o] += acc[o];", "m[o] = 0;"
        total = f"sv_shl(m[o], {AL}[cs + o]) + {nb}[cs + o]"
        fin = f"sv_asr({total}, {pool.shift})" if pool.shift is not None else f"sv_floordiv({total}, {pool.n})"
    mt = "int32_t" if pool.is_max else "int64_t"
    return ["int32_t qi = 0;",
            f"for (int32_t r = 0; r < {Hp * Wp}; r++) {{",
            f"    int32_t acc[{cout}];",
            f"    {mt} m[{cout}];",
            f"    for (int32_t o = 0; o < {cout}; o++) {init}",
            f"    for (int32_t u = 0; u < {ph_ * pw_}; u++) {{",
            f"        const int32_t q = {QO}[qi];",
            "        qi += 1;",
            *_indent(accumulate, 2),
            f"        for (int32_t o = 0; o < {cout}; o++) {comb}",
            "    }",
            "    int32_t yo = yq;",
            f"    for (int32_t o = 0; o < {cout}; o++) {{",
            f"        st->{y.storage}[yo] = {fin};",
            f"        yo += {Hp * Wp};",
            "    }",
            "    yq += 1;",
            "}"]


def _conv_dense_rows(op: Synapse, w: CWriter, k: int) -> None:
    """Dense conv on analog input, plane by plane: each weight times a row segment (valid columns from tables)."""
    m, x, y = op.syn, op.x, op.out
    cout, cin, kh, kw, H, W_, Ho, Wo = _conv_geometry(op)
    (sh, sw), (dh, dw) = m.stride, m.dilation
    pl, _pr, pt, _pb = m.pad
    FR = w.table(f"sv_fr{k}", m.weight_frac.reshape(-1).tolist(), "uint8_t")
    B = w.table(f"sv_b{k}", m.bias_q.reshape(-1).tolist(), "int64_t")
    Wd = w.table(f"sv_w{k}", m.weight_int.reshape(-1).tolist(), w.wtype, weights=True)  # [S][cout][cin][kh][kw]
    lo = [max(0, -(-(pl - j * dw) // sw)) for j in range(kw)]
    hi = [min(Wo, (W_ - 1 + pl - j * dw) // sw + 1) for j in range(kw)]
    LO, HI = w.table(f"sv_lo{k}", lo), w.table(f"sv_hi{k}", hi)
    w.acc64 = max(w.acc64, Ho * Wo)
    body = [f"for (int32_t o = 0; o < {cout}; o++) {{",
            f"    for (int32_t p = 0; p < {Ho * Wo}; p++) st->acc64[p] = 0;",
            f"    for (int32_t c = 0; c < {cin}; c++) {{",
            f"        for (int32_t i = 0; i < {kh}; i++) {{",
            f"            for (int32_t j = 0; j < {kw}; j++) {{",
            f"                const int64_t wv = {Wd}[ws + ((o * {cin} + c) * {kh} + i) * {kw} + j];",
            f"                for (int32_t oy = 0; oy < {Ho}; oy++) {{",
            f"                    const int32_t iy = oy * {sh} + i * {dh} - {pt};",
            f"                    if (iy < 0 || iy >= {H}) continue;",
            f"                    const int32_t row = i0 + (c * {H} + iy) * {W_} + j * {dw} - {pl};",
            f"                    for (int32_t ox = {LO}[j]; ox < {HI}[j]; ox++) "
            f"st->acc64[oy * {Wo} + ox] += wv * {w.load(x, f'row + ox * {sw}')};",
            "                }",
            "            }",
            "        }",
            "    }",
            *_dense_epilogue(op, FR, B),
            "}"]
    lines = ["int32_t ws = 0, cs = 0;"] + w.steps_loop(y, [x], body, _per_step_inc(op, cin * kh * kw * cout, cout))
    what = f"conv {_geom_text(op)} on analog input: integer multiply-accumulate (int64)"
    w.func(k, op, what + (f", fused with the {op.pool.what} that follows it" if op.pool else ""), lines)


def _conv_dense_by_position(op: Synapse, w: CWriter, k: int) -> None:
    """Dense conv, output position by output position: for each tap and input channel, the input value times
    the weight column (vectorised over output channels), skipping zero inputs."""
    m, x, y = op.syn, op.x, op.out
    cout, cin, kh, kw, H, W_, Ho, Wo = _conv_geometry(op)
    FR = w.table(f"sv_fr{k}", m.weight_frac.reshape(-1).tolist(), "uint8_t")
    B = w.table(f"sv_b{k}", m.bias_q.reshape(-1).tolist(), "int64_t")
    Wt = w.table(f"sv_w{k}", m.weight_int.permute(0, 3, 4, 2, 1).reshape(-1).tolist(), w.wtype, weights=True)
    QS, QP, QT = _tap_tables(op, w, k)
    body = ["int32_t yq = o0;",
            f"for (int32_t q = 0; q < {Ho * Wo}; q++) {{",
            f"    int64_t acc[{cout}];",
            f"    for (int32_t o = 0; o < {cout}; o++) acc[o] = 0;",
            f"    for (int32_t e = {QS}[q]; e < {QS}[q + 1]; e++) {{",
            f"        int32_t xi = i0 + {QP}[e], wo = ws + {QT}[e];",
            f"        for (int32_t c = 0; c < {cin}; c++) {{",
            f"            const int64_t xv = {w.load(x, 'xi')};",
            "            if (xv != 0) {",
            f"                for (int32_t o = 0; o < {cout}; o++) acc[o] += (int64_t){Wt}[wo + o] * xv;",
            "            }",
            f"            xi += {H * W_}; wo += {cout};",
            "        }",
            "    }",
            "    int32_t yo = yq;",
            f"    for (int32_t o = 0; o < {cout}; o++) {{",
            f"        st->{y.storage}[yo] = sv_asr(acc[o], {FR}[cs + o]) + {B}[cs + o];",
            f"        yo += {Ho * Wo};",
            "    }",
            "    yq += 1;",
            "}"]
    lines = ["int32_t ws = 0, cs = 0;"] + w.steps_loop(y, [x], body, _per_step_inc(op, cin * kh * kw * cout, cout))
    w.func(k, op, f"conv {_geom_text(op)} on analog input: integer multiply-accumulate (int64), by output position",
           lines)


def _dense_epilogue(op: Synapse, FR: str, B: str) -> list[str]:
    """Write channel ``o`` of a dense conv from its accumulator plane: straight, or pooled (fused)."""
    y, pool = op.out, op.pool
    *_, Ho, Wo = _conv_geometry(op)
    if pool is None:
        return [f"    for (int32_t p = 0; p < {Ho * Wo}; p++) "
                f"st->{y.storage}[o0 + o * {Ho * Wo} + p] = sv_asr(st->acc64[p], {FR}[cs + o]) + {B}[cs + o];"]
    _, Hp, Wp = y.shape
    (kh, kw), (sh, sw) = pool.k, pool.s
    taps = [i * Wo + j for i in range(kh) for j in range(kw)]
    if pool.is_max:
        first, upd, fin, rest = f"st->acc64[b + {taps[0]}]", "if (v > m) m = v;", "m", taps[1:]
    else:
        first, upd, rest = "0", "m += v;", taps
        fin = f"sv_asr(m, {pool.shift})" if pool.shift is not None else f"sv_floordiv(m, {pool.n})"
    return [f"    for (int32_t p = 0; p < {Ho * Wo}; p++) "
            f"st->acc64[p] = sv_asr(st->acc64[p], {FR}[cs + o]) + {B}[cs + o];",
            f"    int32_t rb = 0, yp = o0 + o * {Hp * Wp};",
            f"    for (int32_t py = 0; py < {Hp}; py++) {{",
            "        int32_t b = rb;",
            f"        for (int32_t px = 0; px < {Wp}; px++) {{",
            f"            int64_t m = {first};",
            *[f"            {{ const int64_t v = st->acc64[b + {t}]; {upd} }}" for t in rest],
            f"            st->{y.storage}[yp] = {fin};",
            f"            yp += 1; b += {sw};",
            "        }",
            f"        rb += {sh * Wo};",
            "    }"]


# ---------------------------------------------------------------------------
# Pooling, neurons, affine maps
# ---------------------------------------------------------------------------


def _pool_ops(op: Pool, w: CWriter) -> tuple[str, str, str, str, str, str]:
    """``(init, accumulator type, update, final value, value of base + xx, description)`` of a pooling."""
    x = op.x
    if op.is_max:
        init = "0" if x.kind == "spike" else "INT64_MIN"
        acc_t = "uint8_t" if x.kind == "spike" else "int64_t"
        return (init, acc_t, "if (v > m) m = v;", "m", f"st->{x.storage}[base + xx]",
                f"max-pool {op.k[0]}x{op.k[1]}/{op.s[0]} (comparisons)")
    fin = f"sv_asr(m, {op.shift})" if op.shift is not None else f"sv_floordiv(m, {op.n})"
    what = (f"avg-pool {op.k[0]}x{op.k[1]}/{op.s[0]}: window sum then "
            + (f">> {op.shift}" if op.shift is not None else f"division by {op.n}"))
    return "0", "int64_t", "m += v;", fin, w.load(x, "base + xx"), what


@emit.register
def _pool(op: Pool, w: CWriter, k: int) -> None:
    x, y = op.x, op.out
    C, H, W_ = x.shape
    _, Ho, Wo = y.shape
    (kh, kw), (sh, sw), (ph, pw) = op.k, op.s, op.pad
    init, acc_t, upd, fin, val, what = _pool_ops(op, w)
    if ph == 0 and pw == 0 and (Ho - 1) * sh + kh <= H and (Wo - 1) * sw + kw <= W_:
        # every window lies inside the map: the taps unrolled at constant offsets
        taps = [i * W_ + j for i in range(kh) for j in range(kw)]
        first = val.replace("base + xx", f"b + {taps[0]}") if op.is_max else init
        window = [f"            {{ const {acc_t} v = {val.replace('base + xx', f'b + {t}')}; {upd} }}"
                  for t in (taps[1:] if op.is_max else taps)]
        body = ["int32_t xc = i0, yp = o0;",
                f"for (int32_t c = 0; c < {C}; c++) {{",
                "    int32_t rb = xc;",
                f"    for (int32_t oy = 0; oy < {Ho}; oy++) {{",
                "        int32_t b = rb;",
                f"        for (int32_t ox = 0; ox < {Wo}; ox++) {{",
                f"            {acc_t} m = {first};", *window,
                f"            st->{y.storage}[yp] = {fin};",
                f"            yp += 1; b += {sw};",
                "        }",
                f"        rb += {sh * W_};",
                "    }",
                f"    xc += {H * W_};",
                "}"]
    else:
        body = _pool_padded(op, w, k, init, acc_t, upd, fin, val)
    w.func(k, op, what, w.steps_loop(y, [x], body))


def _pool_padded(op: Pool, w: CWriter, k: int, init: str, acc_t: str, upd: str, fin: str, val: str) -> list[str]:
    """Padded windows: the valid part of each window from tables (window starts, tap ranges), running offsets."""
    x, y = op.x, op.out
    C, H, W_ = x.shape
    _, Ho, Wo = y.shape
    (kh, kw), (sh, sw), (ph, pw) = op.k, op.s, op.pad
    rows = [oy * sh - ph for oy in range(Ho)]
    cols = [ox * sw - pw for ox in range(Wo)]
    RY, RX = w.table(f"sv_ry{k}", [r * W_ for r in rows]), w.table(f"sv_rx{k}", cols)
    YL = w.table(f"sv_yl{k}", [max(0, -r) for r in rows])
    YH = w.table(f"sv_yh{k}", [min(kh, H - r) for r in rows])
    XL = w.table(f"sv_xl{k}", [max(0, -c) for c in cols])
    XH = w.table(f"sv_xh{k}", [min(kw, W_ - c) for c in cols])
    return ["int32_t xc = i0, yc = o0;",
            f"for (int32_t c = 0; c < {C}; c++) {{",
            "    int32_t yp = yc;",
            f"    for (int32_t oy = 0; oy < {Ho}; oy++) {{",
            f"        for (int32_t ox = 0; ox < {Wo}; ox++) {{",
            f"            {acc_t} m = {init};",
            f"            int32_t base = xc + {RY}[oy] + {RX}[ox];",
            f"            for (int32_t yy = 0; yy < {kh}; yy++) {{",
            f"                if (yy >= {YL}[oy] && yy < {YH}[oy]) {{",
            f"                    for (int32_t xx = {XL}[ox]; xx < {XH}[ox]; xx++) {{",
            f"                        const {acc_t} v = {val};",
            f"                        {upd}",
            "                    }",
            "                }",
            f"                base += {W_};",
            "            }",
            f"            st->{y.storage}[yp] = {fin};",
            "            yp += 1;",
            "        }",
            "    }",
            f"    xc += {H * W_}; yc += {Ho * Wo};",
            "}"]


def _neuron_terms(op: Neuron, w: CWriter) -> tuple[str, str, str, str]:
    """``(drive, its description, leak of v, its description)`` of a neuron's update."""
    n = op.neuron
    if n.gain_shift is not None:
        drive, dwhat = f"sv_shl({w.load(op.x, 'i0 + i')}, {n.gain_shift})", f"drive << {n.gain_shift}"
    else:
        drive, dwhat = f"{w.load(op.x, 'i0 + i')} * {n.gain_int}", f"drive x {n.gain_int} (multiply)"
    if n.const:
        drive = f"{drive} + {n.const}"
    if n.decay == 1.0:
        leak, lwhat = "v", "no leak (IF)"
    elif n.decay == 0.0:
        leak, lwhat = "0", "no memory"
    elif n.leak_shift is not None:
        leak, lwhat = f"sv_asr(v, {n.leak_shift})", f"leak v >> {n.leak_shift}"
    elif n.leak_mul is not None:
        leak, lwhat = f"sv_asr(v * {n.leak_mul}, {n.leak_bits})", f"leak (v x {n.leak_mul}) >> {n.leak_bits}"
    else:
        terms = " ".join(f"{'+' if s > 0 else '-'} sv_asr(v, {kk})" for s, kk in n.leak_terms)
        leak, lwhat = f"(0 {terms})", f"leak by shift-add {n.leak_terms}"
    return drive, dwhat, leak, lwhat


@emit.register
def _neuron(op: Neuron, w: CWriter, k: int) -> None:
    n, x, y = op.neuron, op.x, op.out
    N = x.numel
    w.vsize = max(w.vsize, N)
    drive, dwhat, leak, lwhat = _neuron_terms(op, w)
    cmp = ">" if n.p.strict else ">="
    reset = {"hard": f"v = s ? {n.v_reset} : h;", "soft": f"v = s ? h - {n.th} : h;", "none": "v = h;"}[n.p.reset]
    body = [f"for (int32_t i = 0; i < {N}; i++) {{",
            "    int64_t v = st->v[i];",
            f"    const int64_t h = {leak} + ({drive});",
            f"    const int s = h {cmp} {n.th};",
            f"    {reset}",
            "    st->v[i] = v;",
            f"    st->{y.storage}[o0 + i] = (uint8_t)s;",
            "}"]
    lines = [f"for (int32_t i = 0; i < {N}; i++) st->v[i] = {n.v_init};"] + w.steps_loop(y, [x], body)
    what = (f"neuron, {N} units x {y.steps} steps: {lwhat}, {dwhat}, threshold {cmp} {n.th} "
            f"(2^-{n.F + n.E} units), {n.p.reset} reset")
    w.func(k, op, what, lines)


@emit.register
def _affine(op: Affine, w: CWriter, k: int) -> None:
    m, x, y = op.affine, op.x, op.out
    C = x.shape[0]
    inner = x.numel // C
    B = w.table(f"sv_bb{k}", m.b_q.reshape(-1).tolist(), "int64_t")
    if x.kind == "spike":
        ON = w.table(f"sv_on{k}", m.on_q.reshape(-1).tolist(), "int64_t")
        val = f"st->{x.storage}[xi] ? {ON}[cs + c] : {B}[cs + c]"
        what = "BN kept, on spikes: a select between two constants per channel"
    else:
        A = w.table(f"sv_a{k}", m.a_int.reshape(-1).tolist(), "int64_t")
        val = f"sv_asr({w.load(x, 'xi')} * {A}[cs + c], {m.a_frac}) + {B}[cs + c]"
        what = "BN kept, on analog input: multiply and shift per element"
    body = ["int32_t xi = i0, yi = o0;",
            f"for (int32_t c = 0; c < {C}; c++) {{",
            f"    for (int32_t i = 0; i < {inner}; i++) {{",
            f"        st->{y.storage}[yi] = {val};",
            "        xi += 1; yi += 1;",
            "    }",
            "}"]
    inc = [f"cs += {C};"] if m.per_step else []
    w.func(k, op, what, ["int32_t cs = 0;"] + w.steps_loop(y, [x], body, inc))


# ---------------------------------------------------------------------------
# Sums, means, data movement
# ---------------------------------------------------------------------------


@emit.register
def _add(op: Add, w: CWriter, k: int) -> None:
    a, b = op.inputs
    y = op.out
    body = [f"for (int32_t i = 0; i < {y.numel}; i++) "
            f"st->{y.storage}[o0 + i] = {w.load(a, 'i0 + i')} + {w.load(b, 'i1 + i')};"]
    w.func(k, op, "residual sum (additions)", w.steps_loop(y, [a, b], body))


@emit.register
def _mean(op: Mean, w: CWriter, k: int) -> None:
    x, y = op.x, op.out
    raw = "({v} ? SV_ONE : 0)" if x.kind == "spike" else "{v}"  # a ratio's numerator is summed as is
    val = lambda idx: raw.format(v=f"st->{x.storage}[{idx}]")  # noqa: E731
    if op.over == "time":
        T = w.p.T
        lines = [f"for (int32_t i = 0; i < {y.numel}; i++) st->{y.storage}[i] = 0;",
                 "int32_t i0 = 0;",
                 f"for (int32_t t = 0; t < {T}; t++) {{",
                 f"    for (int32_t i = 0; i < {y.numel}; i++) st->{y.storage}[i] += {val('i0 + i')};",
                 f"    i0 += {x.numel if x.steps > 1 else 0};",
                 "}"]
        what = f"sum over the {T} time steps (the mean's divisor is kept: value = sum / {y.divisor})"
    else:
        body = ["int32_t xi = i0;",
                f"for (int32_t g = 0; g < {y.numel}; g++) {{",
                "    int64_t m = 0;",
                f"    for (int32_t i = 0; i < {op.n}; i++) m += {val('xi + i')};",
                f"    st->{y.storage}[o0 + g] = m;",
                f"    xi += {op.n};",
                "}"]
        lines = w.steps_loop(y, [x], body)
        what = f"sum over {op.n} positions (mean's divisor kept: value = sum / {y.divisor})"
    w.func(k, op, what, lines)


@emit.register
def _permute(op: Permute, w: CWriter, k: int) -> None:
    """Nested loops over the output's axes; the input offset runs by the permuted strides (additions only)."""
    x, y = op.x, op.out
    strides = [math.prod(x.shape[d + 1:]) for d in range(len(x.shape))]
    dims = [(y.shape[d], strides[op.perm[d]]) for d in range(len(op.perm))]
    inner = [f"st->{y.storage}[yo] = st->{x.storage}[a{len(dims) - 1}];", "yo += 1;"]
    for depth in reversed(range(len(dims))):
        inner = _permute_level(depth, *dims[depth], inner)
    body = ["int32_t yo = o0;", *inner]
    what = f"transpose {list(x.shape)} -> {list(y.shape)} (axes {list(op.perm)}): data movement"
    w.func(k, op, what, w.steps_loop(y, [x], body))


def _permute_level(depth: int, size: int, stride: int, inner: list[str]) -> list[str]:
    """One loop of :func:`_permute`: ``a<depth>`` starts at the enclosing loop's offset and runs by ``stride``."""
    start = "i0" if depth == 0 else f"a{depth - 1}"
    return [f"int32_t a{depth} = {start};",
            f"for (int32_t j{depth} = 0; j{depth} < {size}; j{depth}++) {{",
            *_indent(inner),
            f"    a{depth} += {stride};",
            "}"]


@emit.register
def _concat(op: Concat, w: CWriter, k: int) -> None:
    """For each index of the axes before ``axis``, copy each input's contiguous block in turn."""
    y = op.out
    outer = math.prod(y.shape[:op.axis])
    body = ["int32_t yo = o0;", *[f"int32_t r{j} = i{j};" for j in range(len(op.inputs))],
            f"for (int32_t g = 0; g < {outer}; g++) {{"]
    for j, b in enumerate(op.inputs):
        block = math.prod(b.shape[op.axis:])
        val = f"st->{b.storage}[r{j} + i]" if y.kind == "spike" else w.load(b, f"r{j} + i")
        body += [f"    for (int32_t i = 0; i < {block}; i++) st->{y.storage}[yo + i] = {val};",
                 f"    yo += {block}; r{j} += {block};"]
    body.append("}")
    what = f"concatenation of {len(op.inputs)} buffers along axis {op.axis} -> {list(y.shape)}: data movement"
    w.func(k, op, what, w.steps_loop(y, list(op.inputs), body))


@emit.register
def _relu(op: Relu, w: CWriter, k: int) -> None:
    x, y = op.x, op.out
    body = [f"for (int32_t i = 0; i < {y.numel}; i++) {{",
            f"    const int64_t v = {w.load(x, 'i0 + i')};",
            f"    st->{y.storage}[o0 + i] = v > 0 ? v : 0;",
            "}"]
    w.func(k, op, "ReLU (comparisons)", w.steps_loop(y, [x], body))


def _gate_mlp(W: str, FR: str, n_in: int, n_out: int, src: str, dst: str) -> list[str]:
    """``dst[o] = (sum_i W[o][i] * src[i]) >> FR[o]`` (TA's bias-free linear layers: integer MAC)."""
    return [f"for (int32_t o = 0, wo = 0; o < {n_out}; o++, wo += {n_in}) {{",
            "    int64_t acc = 0;",
            f"    for (int32_t i = 0; i < {n_in}; i++) acc += (int64_t){W}[wo + i] * {src}[i];",
            f"    {dst}[o] = sv_asr(acc, {FR}[o]);",
            "}"]


def _gate_ta(op: Gate, w: CWriter, k: int) -> list[str]:
    """TA per step: the mean (rounded half to even) and maximum of ``U``, each through the MLP, summed."""
    u, m, T = op.inputs[2], op.gac, w.p.T
    hidden = m.fc1.weight_int.shape[1]
    W1 = w.table(f"sv_t1w{k}", m.fc1.weight_int.reshape(-1).tolist(), w.wtype, weights=True)  # [hidden][T]
    F1 = w.table(f"sv_t1f{k}", m.fc1.weight_frac.reshape(-1).tolist(), "uint8_t")
    W2 = w.table(f"sv_t2w{k}", m.fc2.weight_int.reshape(-1).tolist(), w.wtype, weights=True)  # [T][hidden]
    F2 = w.table(f"sv_t2f{k}", m.fc2.weight_frac.reshape(-1).tolist(), "uint8_t")
    lines = [f"int64_t ta[{T}], avg[{T}], peak[{T}], hid[{hidden}], out[{T}];",
             "int32_t ui = 0;",
             f"for (int32_t t = 0; t < {T}; t++) {{",
             "    int64_t sum = 0, mx = INT64_MIN;",
             f"    for (int32_t i = 0; i < {u.numel}; i++) {{",
             f"        const int64_t v = st->{u.storage}[ui + i];",
             "        sum += v;",
             "        if (v > mx) mx = v;",
             "    }",
             f"    avg[t] = sv_round_div(sum, {u.numel}); peak[t] = mx;",
             f"    ui += {u.numel if u.steps > 1 else 0};",
             "}",
             f"for (int32_t t = 0; t < {T}; t++) ta[t] = 0;"]
    for src in ("avg", "peak"):
        lines += _gate_mlp(W1, F1, T, hidden, src, "hid")
        lines += [f"for (int32_t j = 0; j < {hidden}; j++) if (hid[j] < 0) hid[j] = 0;"]
        lines += _gate_mlp(W2, F2, hidden, T, "hid", "out")
        lines += [f"for (int32_t t = 0; t < {T}; t++) ta[t] += out[t];"]
    return lines


@emit.register
def _gate(op: Gate, w: CWriter, k: int) -> None:
    s, sca, _u = op.inputs
    y, F_ = op.out, w.p.frac_bits
    half = F_ // 2
    lut = w.table(f"sv_sig{k}", op.gac.sigmoid_q.tolist(), "int32_t" if F_ <= 30 else "int64_t")
    lo, hi = -SIGMOID_RANGE << F_, (SIGMOID_RANGE << F_) - 1
    lim = OPERAND_LIMIT
    body = ["const int64_t a0 = sv_asr(ta[t], %d);" % half,
            f"const int64_t a = a0 > {lim} ? {lim} : (a0 < -{lim} ? -{lim} : a0);",
            f"for (int32_t i = 0; i < {y.numel}; i++) {{",
            f"    if (!st->{s.storage}[i0 + i]) {{ st->{y.storage}[o0 + i] = 0; continue; }}",
            f"    const int64_t b0 = sv_asr(st->{sca.storage}[i1 + i], {F_ - half});",
            f"    const int64_t b = b0 > {lim} ? {lim} : (b0 < -{lim} ? -{lim} : b0);",
            "    int64_t z = a * b;",
            f"    z = z < {lo}LL ? {lo}LL : (z > {hi}LL ? {hi}LL : z);",
            f"    st->{y.storage}[o0 + i] = {lut}[(z - ({lo}LL)) >> {F_ - SIGMOID_BITS}];",
            "}"]
    lines = _gate_ta(op, w, k) + w.steps_loop(y, [s, sca], body)  # the step index t also picks ta[t]
    what = (f"GAC gate, {y.numel} units x {w.p.T} steps: TA (mean and max of U through a {w.p.T}-step MLP: integer "
            f"multiplies), z = TA x SCA (integer multiply), sigmoid(z) from a {op.gac.sigmoid_q.numel()}-entry "
            "table, selected by the spikes")
    w.func(k, op, what, lines)
