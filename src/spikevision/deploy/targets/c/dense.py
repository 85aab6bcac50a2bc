"""The C emitters of dense convolutions on analog input (a :class:`~spikevision.deploy.ir.ops.Synapse` whose input
is not spikes), and the conv geometry the event-driven emitters share.

Two loop orders: by output plane (each weight times a row segment; wide maps) and by output position (each
input value times a weight column, vectorised over output channels; narrow maps). Both multiply-accumulate
in int64. AVX2 has no vector int64 multiply, so in the native runtime's ``"fast"`` layout
(:attr:`CWriter.exact_double`) each call first checks the input's largest magnitude against a bound from the
weights: where ``max|x| * max_o sum|w_o| <= 2^53 - 1``, every product and every partial sum is an integer of
magnitude below ``2^53``, which float64 holds exactly, so the same sums run in double precision (vectorised,
four lanes) with no rounding at any step and the result converted back to int64 is the int64 sum bit for
bit. Input beyond the bound takes the int64 loop. The standalone export keeps the int64 loops only.
"""

from __future__ import annotations

from spikevision.deploy.ir.ops import Synapse
from spikevision.deploy.targets.c.writer import CWriter, indent

__all__ = ["conv_dense_by_position", "conv_dense_rows", "conv_geometry", "exact_double_limit", "geom_text",
           "per_step_inc", "tap_tables"]

#: the largest integer magnitude below which float64 sums and products of integers are exact
_EXACT = 2**53 - 1
#: widest output row block whose float64 accumulators stay in registers (AVX2: 16 registers of 4 doubles)
_ROW_BLOCK = 32


def per_step_inc(op: Synapse, weights_per_step: int, channels: int) -> list[tuple[str, int]]:
    """Advance the weight (``ws``) and channel (``cs``) offsets each step when the weights differ per step."""
    return [("ws", weights_per_step), ("cs", channels)] if op.syn.weight_int.shape[0] > 1 else []


def conv_geometry(op: Synapse) -> tuple[int, ...]:
    """``cout, cin, kh, kw, H, W, Ho, Wo`` (the conv's own output size, before a fused pooling)."""
    cout, cin, kh, kw = op.syn.weight_int.shape[1:]
    _, H, W_ = op.x.shape
    _, Ho, Wo = op.pool.conv_shape if op.pool else op.out.shape
    return cout, cin, kh, kw, H, W_, Ho, Wo


def geom_text(op: Synapse) -> str:
    """``cin->cout khxkw/stride, HxW -> HoxWo`` for the function's comment."""
    cout, cin, kh, kw, H, W_, Ho, Wo = conv_geometry(op)
    return f"{cin}->{cout} {kh}x{kw}/{op.syn.stride[0]}, {H}x{W_} -> {Ho}x{Wo}"


def tap_tables(op: Synapse, w: CWriter, k: int) -> tuple[str, str, str]:
    """Per output position ``q``, the taps inside the map: input pixel (``QP``) and weight offset (``QT``) of
    entries ``QS[q] .. QS[q+1]`` (tables computed here: no index products in C)."""
    cout, cin, kh, kw, H, W_, Ho, Wo = conv_geometry(op)
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


def exact_double_limit(op: Synapse) -> int:
    """The largest input magnitude for which the conv's float64 sums are exact: ``(2^53 - 1) // max sum|w|``
    over output channels (and steps); every partial sum of ``w * x`` is bounded by ``max|x| * sum|w|``."""
    w = op.syn.weight_int
    worst = int(w.abs().reshape(w.shape[0], w.shape[1], -1).sum(-1).max())
    return _EXACT // max(1, worst)


def _rows_loop(op: Synapse, w: CWriter, Wd: str, LO: str, HI: str, P: str, x_ref) -> list[str]:
    """The plane-by-plane int64 accumulation of output channel ``o`` into ``P``."""
    cout, cin, kh, kw, H, W_, Ho, Wo = conv_geometry(op)
    (sh, sw), (dh, dw) = op.syn.stride, op.syn.dilation
    pl, _pr, pt, _pb = op.syn.pad
    return [f"for (int32_t p = 0; p < {Ho * Wo}; p++) st->{P}[p] = 0;",
            f"for (int32_t c = 0; c < {cin}; c++) {{",
            f"    for (int32_t i = 0; i < {kh}; i++) {{",
            f"        for (int32_t j = 0; j < {kw}; j++) {{",
            f"            const int64_t wv = (int64_t){Wd}[ws + ((o * {cin} + c) * {kh} + i) * {kw} + j];",
            f"            for (int32_t oy = 0; oy < {Ho}; oy++) {{",
            f"                const int32_t iy = oy * {sh} + i * {dh} - {pt};",
            f"                if (iy < 0 || iy >= {H}) continue;",
            f"                const int32_t row = (c * {H} + iy) * {W_} + j * {dw} - {pl};",
            f"                for (int32_t ox = {LO}[j]; ox < {HI}[j]; ox++) "
            f"st->{P}[oy * {Wo} + ox] += wv * {x_ref(f'row + ox * {sw}')};",
            "            }",
            "        }",
            "    }",
            "}"]


def _row_width(op: Synapse) -> int:
    """Columns of the output row block whose float64 accumulators stay in registers: whole vectors of 4
    doubles (a row block of more than one row measured slower: GCC no longer keeps the sums in registers)."""
    Wo = conv_geometry(op)[-1]
    return -(-Wo // 4) * 4 if Wo <= _ROW_BLOCK else _ROW_BLOCK // 2


def _padded_double(op: Synapse, w: CWriter, k: int) -> tuple[str, int, int, list[str]]:
    """A zero-padded float64 copy ``XP`` of the step's input, ``Hp`` rows of ``Wr`` per channel (every tap of
    every output block lies inside it), and the flag ``ok`` (:func:`exact_double_limit`). With a column stride
    ``s`` > 1 each row is stored by phase (the padded columns ``s*m + f`` at ``f*(Wr/s) + m``), so that a tap
    reads consecutive doubles."""
    cout, cin, kh, kw, H, W_, Ho, Wo = conv_geometry(op)
    (sh, sw), (dh, dw) = op.syn.stride, op.syn.dilation
    pl, _pr, pt, _pb = op.syn.pad
    width = _row_width(op)
    Hp = max(H + pt, (Ho - 1) * sh + (kh - 1) * dh + 1)
    Wq = -(-max(W_ + pl, (-(-Wo // width) * width - 1) * sw + (kw - 1) * dw + 1) // sw)  # per phase
    lim = exact_double_limit(op)
    XP = w.scratch(k, "xd", "double", cin * Hp * Wq * sw)
    CX = w.table(f"sv_cx{k}", [((ix + pl) % sw) * Wq + (ix + pl) // sw for ix in range(W_)])
    return XP, Hp, Wq, [f"for (int32_t p = 0; p < {cin * Hp * Wq * sw}; p++) st->{XP}[p] = 0;",
                        "int32_t ok = 1;",
                        f"for (int32_t c = 0; c < {cin}; c++) {{",
                        f"    for (int32_t iy = 0; iy < {H}; iy++) {{",
                        f"        const int32_t xr = (c * {Hp} + iy + {pt}) * {Wq * sw};",
                        f"        for (int32_t ix = 0; ix < {W_}; ix++) {{",
                        f"            const int64_t v = {w.load(op.x, f'i0 + (c * {H} + iy) * {W_} + ix')};",
                        f"            ok &= (v <= {lim}LL) & (v >= -{lim}LL);",
                        f"            st->{XP}[xr + {CX}[ix]] = (double)v;",
                        "        }",
                        "    }",
                        "}"]


def _rows_exact(op: Synapse, Wd: str, XP: str, Hp: int, Wq: int, P: str) -> list[str]:
    """Output channel ``o`` in float64, ``width`` columns of one output row at a time (:func:`_row_width`):
    the block's accumulators stay in registers over all ``cin * kh * kw`` taps (no bounds checks: ``XP`` is
    padded; columns past the map are computed on the padding and dropped)."""
    cout, cin, kh, kw, H, W_, Ho, Wo = conv_geometry(op)
    (sh, sw), (dh, dw) = op.syn.stride, op.syn.dilation
    width = _row_width(op)
    taps = [f"                {{ const double wv = (double){Wd}[wr + {j}]; for (int32_t u = 0; u < {width}; u++) "
            f"acc[u] += wv * xr[{((j * dw) % sw) * Wq + (j * dw) // sw} + u]; }}" for j in range(kw)]
    return [f"for (int32_t oy = 0; oy < {Ho}; oy++) {{",
            f"    for (int32_t ox0 = 0; ox0 < {Wo}; ox0 += {width}) {{",
            f"        double acc[{width}];",
            f"        for (int32_t u = 0; u < {width}; u++) acc[u] = 0;",
            f"        for (int32_t c = 0; c < {cin}; c++) {{",
            f"            for (int32_t i = 0; i < {kh}; i++) {{",
            f"                const double *xr = &st->{XP}[(c * {Hp} + oy * {sh} + i * {dh}) * {Wq * sw} + ox0];",
            f"                const int32_t wr = ws + ((o * {cin} + c) * {kh} + i) * {kw};",
            *taps,
            "            }",
            "        }",
            f"        for (int32_t u = 0; u < {width} && ox0 + u < {Wo}; u++) "
            f"st->{P}[oy * {Wo} + ox0 + u] = (int64_t)acc[u];",
            "    }",
            "}"]


def conv_dense_rows(op: Synapse, w: CWriter, k: int) -> None:
    """Dense conv on analog input, plane by plane: each weight times a row segment (valid columns from tables)."""
    m, x, y = op.syn, op.x, op.out
    cout, cin, kh, kw, H, W_, Ho, Wo = conv_geometry(op)
    (_sh, sw), (_dh, dw) = m.stride, m.dilation
    pl = m.pad[0]
    FR = w.table(f"sv_fr{k}", m.weight_frac.reshape(-1).tolist(), "uint8_t")
    B = w.table(f"sv_b{k}", m.bias_q.reshape(-1).tolist(), "int64_t")
    Wd = w.table(f"sv_w{k}", m.weight_int.reshape(-1).tolist(), w.wtype, weights=True)  # [S][cout][cin][kh][kw]
    lo = [max(0, -(-(pl - j * dw) // sw)) for j in range(kw)]
    hi = [min(Wo, (W_ - 1 + pl - j * dw) // sw + 1) for j in range(kw)]
    LO, HI = w.table(f"sv_lo{k}", lo), w.table(f"sv_hi{k}", hi)
    P = w.scratch(k, "p", "int64_t", Ho * Wo)  # one output plane's accumulators
    wide = _rows_loop(op, w, Wd, LO, HI, P, lambda i: w.load(x, f"i0 + {i}"))
    what = f"conv {geom_text(op)} on analog input: integer multiply-accumulate (int64"
    if w.exact_double:
        XP, Hp, Wq, prologue = _padded_double(op, w, k)
        exact = _rows_exact(op, Wd, XP, Hp, Wq, P)
        per_o = ["if (ok) {", *indent(exact), "} else {", *indent(wide), "}"]
        what += "; exact in float64 where the input's magnitude allows"
    else:
        prologue, per_o = [], wide
    body = [*prologue, f"for (int32_t o = 0; o < {cout}; o++) {{", *indent(per_o),
            *_dense_epilogue(op, FR, B, P), "}"]
    lines = ["int32_t ws = 0, cs = 0;"] + w.steps_loop(y, [x], body, per_step_inc(op, cin * kh * kw * cout, cout))
    w.func(k, op, what + ")" + (f", fused with the {op.pool.what} that follows it" if op.pool else ""), lines)


def conv_dense_by_position(op: Synapse, w: CWriter, k: int) -> None:
    """Dense conv in int64, output position by output position: for each tap and input channel, the input value
    times the weight column (over output channels), skipping zero inputs (the standalone export's narrow maps)."""
    m, x, y = op.syn, op.x, op.out
    cout, cin, kh, kw, H, W_, Ho, Wo = conv_geometry(op)
    FR = w.table(f"sv_fr{k}", m.weight_frac.reshape(-1).tolist(), "uint8_t")
    B = w.table(f"sv_b{k}", m.bias_q.reshape(-1).tolist(), "int64_t")
    Wt = w.table(f"sv_w{k}", m.weight_int.permute(0, 3, 4, 2, 1).reshape(-1).tolist(), w.wtype, weights=True)
    QS, QP, QT = tap_tables(op, w, k)
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
    lines = ["int32_t ws = 0, cs = 0;"] + w.steps_loop(y, [x], body, per_step_inc(op, cin * kh * kw * cout, cout))
    w.func(k, op, f"conv {geom_text(op)} on analog input: integer multiply-accumulate (int64), by output position",
           lines)


def _dense_epilogue(op: Synapse, FR: str, B: str, P: str) -> list[str]:
    """Write channel ``o`` of a dense conv from its accumulator plane: straight, or pooled (fused)."""
    y, pool = op.out, op.pool
    *_, Ho, Wo = conv_geometry(op)
    if pool is None:
        return [f"    for (int32_t p = 0; p < {Ho * Wo}; p++) "
                f"st->{y.storage}[o0 + o * {Ho * Wo} + p] = sv_asr(st->{P}[p], {FR}[cs + o]) + {B}[cs + o];"]
    _, Hp, Wp = y.shape
    (kh, kw), (sh, sw) = pool.k, pool.s
    taps = [i * Wo + j for i in range(kh) for j in range(kw)]
    if pool.is_max:
        first, upd, fin, rest = f"st->{P}[b + {taps[0]}]", "if (v > m) m = v;", "m", taps[1:]
    else:
        first, upd, rest = "0", "m += v;", taps
        fin = f"sv_asr(m, {pool.shift})" if pool.shift is not None else f"sv_floordiv(m, {pool.n})"
    return [f"    for (int32_t p = 0; p < {Ho * Wo}; p++) "
            f"st->{P}[p] = sv_asr(st->{P}[p], {FR}[cs + o]) + {B}[cs + o];",
            f"    int32_t rb = 0, yp = o0 + o * {Hp * Wp};",
            f"    for (int32_t py = 0; py < {Hp}; py++) {{",
            "        int32_t b = rb;",
            f"        for (int32_t px = 0; px < {Wp}; px++) {{",
            f"            int64_t m = {first};",
            *[f"            {{ const int64_t v = st->{P}[b + {t}]; {upd} }}" for t in rest],
            f"            st->{y.storage}[yp] = {fin};",
            f"            yp += 1; b += {sw};",
            "        }",
            f"        rb += {sh * Wo};",
            "    }"]
