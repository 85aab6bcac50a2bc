"""The C emitters of :class:`~spikevision.deploy.ir.ops.Synapse` (conv/linear with BN folded).

On spikes, event-driven: each step lists the active inputs, then accumulates their int16/int8 weight
columns in int32 (work proportional to the spikes); on analog input, an integer multiply-accumulate
(:mod:`spikevision.deploy.targets.c.dense`). A tiling pooling that is the conv's only reader is fused in
(the conv's full-size output is never stored).
"""

from __future__ import annotations

from spikevision.deploy.ir.ops import ProgramError, Synapse
from spikevision.deploy.targets.c.dense import (conv_dense_by_position, conv_dense_rows, conv_geometry, geom_text,
                                                per_step_inc, tap_tables)
from spikevision.deploy.targets.c.writer import CWriter, emit, indent as _indent

__all__: list[str] = []

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
    elif op.out.shape[2] < 16 and op.pool is None and not w.exact_double:  # rows too short to vectorise: by
        conv_dense_by_position(op, w, k)                                    # output position (int64 only)
    else:
        conv_dense_rows(op, w, k)


def _linear(op: Synapse, w: CWriter, k: int) -> None:
    m, x, y = op.syn, op.x, op.out
    wi = m.weight_int
    nout, nin = wi.shape[1], wi.shape[2]
    rows = x.numel // nin
    B = w.table(f"sv_b{k}", m.bias_q.reshape(-1).tolist(), "int64_t")
    if op.event:
        W = w.table(f"sv_w{k}", wi.transpose(1, 2).reshape(-1).tolist(), w.wtype, weights=True)  # [S][in][out]
        AL = w.table(f"sv_al{k}", m.align.reshape(-1).tolist(), "uint8_t")
        A = w.scratch(k, "a", "int32_t", nout)
        inner = [f"for (int32_t o = 0; o < {nout}; o++) st->{A}[o] = 0;",
                 "int32_t wk = ws;",
                 f"for (int32_t i = 0; i < {nin}; i++) {{",
                 f"    if ({w.spike(x, 'xr + i')}) {{",
                 f"        for (int32_t o = 0; o < {nout}; o++) st->{A}[o] += {W}[wk + o];",
                 "    }",
                 f"    wk += {nout};",
                 "}",
                 f"for (int32_t o = 0; o < {nout}; o++) "
                 f"st->{y.storage}[yr + o] = sv_shl(st->{A}[o], {AL}[cs + o]) + {B}[cs + o];"]
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
    lines = ["int32_t ws = 0, cs = 0;"] + w.steps_loop(y, [x], body, per_step_inc(op, nin * nout, nout))
    w.func(k, op, what, lines)


def _conv_event(op: Synapse, w: CWriter, k: int) -> None:
    """Event-driven conv on spikes. Weights ``[S][kh*kw][cin][cout]``: the column of (tap, input channel) is
    contiguous. Each step first lists, per input pixel, its active input channels (an event list of bytes,
    built branch-free; a table gives each channel's weight offset); then every output position adds the
    columns of the events its taps see into a local accumulator and writes ``(acc << align) + bias`` once (or
    pools the accumulators first)."""
    m, x, y = op.syn, op.x, op.out
    cout, cin, kh, kw, H, W_, Ho, Wo = conv_geometry(op)
    Wt = w.table(f"sv_w{k}", m.weight_int.permute(0, 3, 4, 2, 1).reshape(-1).tolist(), w.wtype, weights=True)
    QS, QP, QT = tap_tables(op, w, k)
    HW = H * W_
    PO = w.table(f"sv_po{k}", [p * cin for p in range(HW)])
    CW = w.table(f"sv_cw{k}", [c * cout for c in range(cin)])  # weight offset of input channel c
    ltype = "int32_t" if not w.byte_events else "uint8_t" if cin <= 255 else "uint16_t"
    L = w.scratch(k, "l", ltype, HW * cin)  # per pixel, its active channels (or their weight offsets)
    N = w.scratch(k, "n", ltype, HW)  # per pixel, how many
    entry, offset = (f"({ltype})c", f"{CW}[st->{L}[l + v]]") if w.byte_events else (f"{CW}[c]", f"st->{L}[l + v]")
    body = [f"for (int32_t p = 0; p < {HW}; p++) st->{N}[p] = 0;",
            "int32_t ic = i0;",
            f"for (int32_t c = 0; c < {cin}; c++) {{",
            f"    for (int32_t p = 0; p < {HW}; p++) {{",
            f"        st->{L}[{PO}[p] + st->{N}[p]] = {entry};",
            f"        st->{N}[p] += {w.spike(x, 'ic + p')};",
            "    }",
            f"    ic += {HW};",
            "}",
            "int32_t yq = o0;"]
    accumulate = [f"for (int32_t o = 0; o < {cout}; o++) acc[o] = 0;",
                  f"for (int32_t e = {QS}[q]; e < {QS}[q + 1]; e++) {{",
                  f"    const int32_t p = {QP}[e], base = ws + {QT}[e];",
                  f"    const int32_t n = st->{N}[p], l = {PO}[p];",
                  "    for (int32_t v = 0; v < n; v++) {",
                  f"        const int32_t wo = base + {offset};",
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
    lines = ["int32_t ws = 0, cs = 0;"] + w.steps_loop(y, [x], body, per_step_inc(op, cin * kh * kw * cout, cout))
    what = (f"conv {geom_text(op)} on spikes, event-driven: per step an event list of the active inputs, then "
            f"int32 accumulation of their {w.wtype} weight columns")
    w.func(k, op, what + (f", fused with the {op.pool.what} that follows it" if op.pool else ""), lines)


def _event_pooled(op: Synapse, w: CWriter, k: int, accumulate: list[str], AL: str, B: str) -> list[str]:
    """Pooled position ``r`` combines the conv outputs of its window: the max of the accumulators (the shift
    and bias per channel are monotonic, so they commute with max) or their sum."""
    pool, y = op.pool, op.out
    cout, _cin, _kh, _kw, _H, _W, _Ho, Wo = conv_geometry(op)
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
