"""The C code of each layer kind, for :mod:`spikevision.deploy.c_codegen` (one method per op kind).

Each method appends the ``const`` tables it needs and one ``static void sv_op<k>(state *st)``
function; the rules the code keeps (integers only, floor shifts, no ``*``, ``/`` or ``%`` in
layers the MFI audit calls multiplication-free) are listed in :mod:`spikevision.deploy.c_codegen`.
"""

from __future__ import annotations

from spikevision.deploy.program import Buf, Op, Program, ProgramError

__all__ = ["LayerWriter", "weight_ctype", "SIZES"]

_INDENT = "    "


def weight_ctype(bits: int) -> str:
    """Smallest C integer type holding ``bits``-bit signed weights."""
    return "int8_t" if bits <= 8 else "int16_t" if bits <= 16 else "int32_t"


def _fmt(values, per_line: int = 16) -> str:
    vals = [str(int(v)) for v in values]
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return "{\n    " + ",\n    ".join(lines) + "\n}" if vals else "{0}"


def _int_type_for(values) -> str:
    lo, hi = min(values, default=0), max(values, default=0)
    for t, bits in (("int8_t", 8), ("int16_t", 16), ("int32_t", 32)):
        if -(2 ** (bits - 1)) <= lo and hi < 2 ** (bits - 1):
            return t
    return "int64_t"


SIZES = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4, "int64_t": 8}


class LayerWriter:
    def __init__(self, prog: Program, name: str, weight_bits: int, notes: dict[str, tuple[bool, str]]) -> None:
        self.p, self.name, self.notes = prog, name, notes
        self.wtype = weight_ctype(weight_bits)
        self.tables: list[str] = []
        self.flash = 0
        self.weight_bytes = 0
        self.funcs: list[str] = []
        self.acc32 = 1
        self.acc64 = 1
        self.vsize = 1
        self.layers: list[tuple[str, str, bool]] = []

    # -- tables ----------------------------------------------------------------
    def table(self, ident: str, values, ctype: str | None = None, weights: bool = False) -> str:
        values = [int(v) for v in values]
        ctype = ctype or _int_type_for(values)
        self.tables.append(f"static const {ctype} {ident}[{max(1, len(values))}] = {_fmt(values)};")
        nbytes = SIZES[ctype] * max(1, len(values))
        self.flash += nbytes
        if weights:
            self.weight_bytes += nbytes
        return ident

    # -- loads -----------------------------------------------------------------
    def load(self, b: Buf, idx: str) -> str:
        ref = f"st->{b.storage}[{idx}]"
        if b.kind == "spike":
            return f"({ref} ? SV_ONE : 0)"
        if b.kind == "ratio" and b.divisor != 1:
            return f"sv_round_div({ref}, {b.divisor})"
        return ref

    def steps_loop(self, out: Buf, ins: list[Buf], body: list[str], extra_inc: list[str] = ()) -> list[str]:
        """``for t`` over the output's stored steps with running offsets ``o0`` (out) and ``i0, i1, ...`` (inputs)."""
        lines = [f"int32_t o0 = 0{''.join(f', i{k} = 0' for k in range(len(ins)))};",
                 f"for (int32_t t = 0; t < {out.steps}; t++) {{"]
        lines += [_INDENT + ln for ln in body]
        incs = [f"o0 += {out.numel};"] + [f"i{k} += {b.numel};" for k, b in enumerate(ins) if b.steps > 1]
        lines += [_INDENT + " ".join(incs + list(extra_inc)), "}"]
        return lines

    def func(self, k: int, op: Op, what: str, lines: list[str]) -> None:
        names = [op.layer] + ([op.params["pool"]["layer"]] if op.params.get("pool") else [])
        verdicts = []
        for name in names:
            mfi, note = self.notes.get(name, (None, ""))
            self.layers.append((name, what, bool(mfi)))
            verdicts.append(("MFI audit: multiplication-free" if mfi else
                             f"MFI audit: multiplies ({note})" if mfi is False else "MFI audit: not audited")
                            + (f" ('{name}')" if len(names) > 1 else ""))
        body = "\n".join(_INDENT + ln for ln in lines)
        label = "layer" if len(names) == 1 else "layers"
        self.funcs.append(f"/* {label} {' + '.join(repr(n) for n in names)}: {what}.\n * {'; '.join(verdicts)}. */\n"
                          f"static void sv_op{k}({self.name}_state *st)\n{{\n{body}\n}}\n")

    # -- ops -------------------------------------------------------------------
    def synapse(self, k: int, op: Op) -> None:
        m = op.params["syn"]
        x, y = op.inputs[0], op.out
        S = m.weight_int.shape[0]
        w = m.weight_int
        if op.params["event"]:  # the int32 accumulator holds any sum of one output's weights
            worst = int(w.abs().reshape(S, w.shape[1], -1).sum(-1).max())
            if worst >= 2**31:
                raise ProgramError(f"layer {op.layer!r}: a sum of weights reaches {worst}, beyond the int32 "
                                 "accumulator; use fewer weight bits")
        if m.kind == "conv2d":
            self.conv(k, op, m, x, y, S, w)
        else:
            self.linear(k, op, m, x, y, S, w)

    def _per_set(self, op: Op, x: Buf, y: Buf, S: int) -> bool:
        if S > 1 and y.steps != S:
            raise ProgramError(f"layer {op.layer!r}: per-step weights for {S} steps, output has {y.steps}")
        return S > 1

    def linear(self, k: int, op: Op, m, x: Buf, y: Buf, S: int, w) -> None:
        nout, nin = w.shape[1], w.shape[2]
        rows = x.numel // nin
        per = self._per_set(op, x, y, S)
        B = self.table(f"sv_b{k}", m.bias_q.reshape(-1).tolist(), "int64_t")
        if op.params["event"]:
            W = self.table(f"sv_w{k}", w.transpose(1, 2).reshape(-1).tolist(), self.wtype, weights=True)  # [S][in][out]
            AL = self.table(f"sv_al{k}", m.align.reshape(-1).tolist(), "uint8_t")
            self.acc32 = max(self.acc32, nout)
            body = [f"int32_t xr = i0, yr = o0;",
                    f"for (int32_t r = 0; r < {rows}; r++) {{",
                    f"    for (int32_t o = 0; o < {nout}; o++) st->acc32[o] = 0;",
                    f"    int32_t wk = ws;",
                    f"    for (int32_t i = 0; i < {nin}; i++) {{",
                    f"        if (st->{x.storage}[xr + i]) {{",
                    f"            for (int32_t o = 0; o < {nout}; o++) st->acc32[o] += {W}[wk + o];",
                    "        }",
                    f"        wk += {nout};",
                    "    }",
                    f"    for (int32_t o = 0; o < {nout}; o++) "
                    f"st->{y.storage}[yr + o] = sv_shl(st->acc32[o], {AL}[cs + o]) + {B}[cs + o];",
                    f"    xr += {nin}; yr += {nout};",
                    "}"]
            inc = [f"ws += {nin * nout};", f"cs += {nout};"] if per else []
            lines = ["int32_t ws = 0, cs = 0;"] + self.steps_loop(y, [x], body, inc)
            what = f"linear {nin}->{nout} on spikes, event-driven (int32 accumulation of {self.wtype} columns)"
        else:
            W = self.table(f"sv_w{k}", w.reshape(-1).tolist(), self.wtype, weights=True)  # [S][out][in]
            FR = self.table(f"sv_fr{k}", m.weight_frac.reshape(-1).tolist(), "uint8_t")
            body = [f"int32_t xr = i0, yr = o0;",
                    f"for (int32_t r = 0; r < {rows}; r++) {{",
                    f"    for (int32_t o = 0; o < {nout}; o++) {{",
                    "        int64_t acc = 0;",
                    f"        const int32_t wo = ws + o * {nin};",
                    f"        for (int32_t i = 0; i < {nin}; i++) acc += (int64_t){W}[wo + i] * "
                    f"{self.load(x, 'xr + i')};",
                    f"        st->{y.storage}[yr + o] = sv_asr(acc, {FR}[cs + o]) + {B}[cs + o];",
                    "    }",
                    f"    xr += {nin}; yr += {nout};",
                    "}"]
            inc = [f"ws += {nin * nout};", f"cs += {nout};"] if per else []
            lines = ["int32_t ws = 0, cs = 0;"] + self.steps_loop(y, [x], body, inc)
            what = f"linear {nin}->{nout} on analog input: integer multiply-accumulate (int64)"
        self.func(k, op, what, lines)

    def conv(self, k: int, op: Op, m, x: Buf, y: Buf, S: int, w) -> None:
        cout, cin, kh, kw = w.shape[1:]
        _, H, W_ = x.shape
        pool = op.params.get("pool")  # a pooling fused in: y is the pooled buffer
        _, Ho, Wo = pool["conv_shape"] if pool else y.shape
        (sh, sw), (dh, dw) = m.stride, m.dilation
        pl, _pr, pt, _pb = m.pad
        per = self._per_set(op, x, y, S)
        B = self.table(f"sv_b{k}", m.bias_q.reshape(-1).tolist(), "int64_t")
        geom = f"{cin}->{cout} {kh}x{kw}/{sh}, {H}x{W_} -> {Ho}x{Wo}"
        if op.params["event"]:
            # weights [S][kh*kw][cin][cout]: the column of (tap, input channel) is contiguous.
            # Output position q reads the taps (input pixel p, tap offset) of table QS/QP/QT; each step first
            # lists, per input pixel, the weight offsets of its active channels (an event list, built
            # branch-free), then every output position adds the columns of the events its taps see into a
            # local accumulator and writes (acc << align) + bias once.
            Wt = self.table(f"sv_w{k}", w.permute(0, 3, 4, 2, 1).reshape(-1).tolist(), self.wtype, weights=True)
            AL = self.table(f"sv_al{k}", m.align.reshape(-1).tolist(), "uint8_t")
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
            HW = H * W_
            QS, QP, QT = self.table(f"sv_qs{k}", start), self.table(f"sv_qp{k}", pix), self.table(f"sv_qt{k}", tap_off)
            PO = self.table(f"sv_po{k}", [p * cin for p in range(HW)])
            cnt = HW * cin  # the event lists at acc32[0, HW*cin), the counts after them
            self.acc32 = max(self.acc32, cnt + HW)
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
            accumulate = [f"    for (int32_t o = 0; o < {cout}; o++) acc[o] = 0;",
                          f"    for (int32_t e = {QS}[q]; e < {QS}[q + 1]; e++) {{",
                          f"        const int32_t p = {QP}[e], base = ws + {QT}[e];",
                          f"        const int32_t n = st->acc32[{cnt} + p], l = {PO}[p];",
                          "        for (int32_t v = 0; v < n; v++) {",
                          "            const int32_t wo = base + st->acc32[l + v];",
                          f"            for (int32_t o = 0; o < {cout}; o++) acc[o] += {Wt}[wo + o];",
                          "        }",
                          "    }"]
            if pool is None:
                body += [f"for (int32_t q = 0; q < {Ho * Wo}; q++) {{", f"    int32_t acc[{cout}];", *accumulate,
                         "    int32_t yo = yq;",
                         f"    for (int32_t o = 0; o < {cout}; o++) {{",
                         f"        st->{y.storage}[yo] = sv_shl(acc[o], {AL}[cs + o]) + {B}[cs + o];",
                         f"        yo += {Ho * Wo};",
                         "    }",
                         "    yq += 1;",
                         "}"]
            else:
                # pooled position r combines the conv outputs of its window: max of the accumulators (the
                # shift and bias per channel are monotonic, so they commute with max) or their sum
                _, Hp, Wp = y.shape
                (ph_, pw_), (psh, psw) = pool["k"], pool["s"]
                order = [(py * psh + i) * Wo + (px * psw + j) for py in range(Hp) for px in range(Wp)
                         for i in range(ph_) for j in range(pw_)]
                QO = self.table(f"sv_qo{k}", order)
                if pool["max"]:
                    comb, fin = "if (acc[o] > m[o]) m[o] = acc[o];", f"sv_shl(m[o], {AL}[cs + o]) + {B}[cs + o]"
                    init = "m[o] = INT32_MIN;"
                else:
                    nb = self.table(f"sv_nb{k}", [int(v) * pool["n"] for v in m.bias_q.reshape(-1).tolist()],
                                    "int64_t")
                    comb, init = "m[o] += acc[o];", "m[o] = 0;"
                    total = f"sv_shl(m[o], {AL}[cs + o]) + {nb}[cs + o]"
                    fin = (f"sv_asr({total}, {pool['shift']})" if pool["shift"] is not None
                           else f"sv_floordiv({total}, {pool['n']})")
                mt = "int32_t" if pool["max"] else "int64_t"
                body += ["int32_t qi = 0;",
                         f"for (int32_t r = 0; r < {Hp * Wp}; r++) {{",
                         f"    int32_t acc[{cout}];",
                         f"    {mt} m[{cout}];",
                         f"    for (int32_t o = 0; o < {cout}; o++) {init}",
                         f"    for (int32_t u = 0; u < {ph_ * pw_}; u++) {{",
                         f"        const int32_t q = {QO}[qi];",
                         "        qi += 1;",
                         *["    " + ln for ln in accumulate],
                         f"        for (int32_t o = 0; o < {cout}; o++) {comb}",
                         "    }",
                         "    int32_t yo = yq;",
                         f"    for (int32_t o = 0; o < {cout}; o++) {{",
                         f"        st->{y.storage}[yo] = {fin};",
                         f"        yo += {Hp * Wp};",
                         "    }",
                         "    yq += 1;",
                         "}"]
            inc = [f"ws += {cin * kh * kw * cout};", f"cs += {cout};"] if per else []
            lines = ["int32_t ws = 0, cs = 0;"] + self.steps_loop(y, [x], body, inc)
            what = (f"conv {geom} on spikes, event-driven: per step an event list of the active inputs, then "
                    f"int32 accumulation of their {self.wtype} weight columns")
        else:
            FR = self.table(f"sv_fr{k}", m.weight_frac.reshape(-1).tolist(), "uint8_t")
            if Wo < 16 and pool is None:
                # a narrow map (rows too short to vectorise over): per output position, over output channels
                self.dense_by_position(k, op, m, x, y, S, w, FR, B, geom, per)
                return
            Wd = self.table(f"sv_w{k}", w.reshape(-1).tolist(), self.wtype, weights=True)  # [S][cout][cin][kh][kw]
            lo = [max(0, -(-(pl - j * dw) // sw)) for j in range(kw)]
            hi = [min(Wo, (W_ - 1 + pl - j * dw) // sw + 1) for j in range(kw)]
            LO, HI = self.table(f"sv_lo{k}", lo), self.table(f"sv_hi{k}", hi)
            self.acc64 = max(self.acc64, Ho * Wo)
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
                    f"st->acc64[oy * {Wo} + ox] += wv * {self.load(x, f'row + ox * {sw}')};",
                    "                }",
                    "            }",
                    "        }",
                    "    }",
                    *(self._dense_epilogue(y, Ho, Wo, FR, B, pool)),
                    "}"]
            inc = [f"ws += {cin * kh * kw * cout};", f"cs += {cout};"] if per else []
            lines = ["int32_t ws = 0, cs = 0;"] + self.steps_loop(y, [x], body, inc)
            what = f"conv {geom} on analog input: integer multiply-accumulate (int64)"
        if pool:
            what += f", fused with the {pool['what']} that follows it"
        self.func(k, op, what, lines)

    def dense_by_position(self, k: int, op: Op, m, x: Buf, y: Buf, S: int, w, FR: str, B: str, geom: str,
                          per: bool) -> None:
        """Dense conv, output position by output position: for each tap and input channel, the input value times
        the weight column (vectorised over output channels), skipping zero inputs."""
        cout, cin, kh, kw = w.shape[1:]
        _, H, W_ = x.shape
        _, Ho, Wo = y.shape
        (sh, sw), (dh, dw) = m.stride, m.dilation
        pl, _pr, pt, _pb = m.pad
        Wt = self.table(f"sv_w{k}", w.permute(0, 3, 4, 2, 1).reshape(-1).tolist(), self.wtype, weights=True)
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
        QS, QP, QT = self.table(f"sv_qs{k}", start), self.table(f"sv_qp{k}", pix), self.table(f"sv_qt{k}", tap_off)
        body = ["int32_t yq = o0;",
                f"for (int32_t q = 0; q < {Ho * Wo}; q++) {{",
                f"    int64_t acc[{cout}];",
                f"    for (int32_t o = 0; o < {cout}; o++) acc[o] = 0;",
                f"    for (int32_t e = {QS}[q]; e < {QS}[q + 1]; e++) {{",
                f"        int32_t xi = i0 + {QP}[e], wo = ws + {QT}[e];",
                f"        for (int32_t c = 0; c < {cin}; c++) {{",
                f"            const int64_t xv = {self.load(x, 'xi')};",
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
        inc = [f"ws += {cin * kh * kw * cout};", f"cs += {cout};"] if per else []
        lines = ["int32_t ws = 0, cs = 0;"] + self.steps_loop(y, [x], body, inc)
        self.func(k, op, f"conv {geom} on analog input: integer multiply-accumulate (int64), by output position",
                  lines)

    def _dense_epilogue(self, y: Buf, Ho: int, Wo: int, FR: str, B: str, pool) -> list[str]:
        """Write channel ``o`` of a dense conv from its accumulator plane: straight, or pooled (fused)."""
        if pool is None:
            return [f"    for (int32_t p = 0; p < {Ho * Wo}; p++) "
                    f"st->{y.storage}[o0 + o * {Ho * Wo} + p] = sv_asr(st->acc64[p], {FR}[cs + o]) + {B}[cs + o];"]
        _, Hp, Wp = y.shape
        (kh, kw), (sh, sw) = pool["k"], pool["s"]
        taps = [i * Wo + j for i in range(kh) for j in range(kw)]
        if pool["max"]:
            first, upd, fin = f"st->acc64[b + {taps[0]}]", "if (v > m) m = v;", "m"
            rest = taps[1:]
        else:
            first, upd = "0", "m += v;"
            fin = f"sv_asr(m, {pool['shift']})" if pool["shift"] is not None else f"sv_floordiv(m, {pool['n']})"
            rest = taps
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

    def pool(self, k: int, op: Op) -> None:
        x, y, q = op.inputs[0], op.out, op.params
        C, H, W_ = x.shape
        _, Ho, Wo = y.shape
        (kh, kw), (sh, sw), (ph, pw) = q["k"], q["s"], q["pad"]
        # window start row/col of each output position, and the valid tap ranges (tables: no index products)
        rows = [oy * sh - ph for oy in range(Ho)]
        cols = [ox * sw - pw for ox in range(Wo)]
        if ph or pw or (Ho - 1) * sh + kh > H or (Wo - 1) * sw + kw > W_:
            RY, RX = self.table(f"sv_ry{k}", [r * W_ for r in rows]), self.table(f"sv_rx{k}", cols)
            YL = self.table(f"sv_yl{k}", [max(0, -r) for r in rows])
            YH = self.table(f"sv_yh{k}", [min(kh, H - r) for r in rows])
            XL = self.table(f"sv_xl{k}", [max(0, -c) for c in cols])
            XH = self.table(f"sv_xh{k}", [min(kw, W_ - c) for c in cols])
        if q["max"]:
            init = "0" if x.kind == "spike" else "INT64_MIN"
            acc_t = "uint8_t" if x.kind == "spike" else "int64_t"
            upd = "if (v > m) m = v;"
            fin = "m"
            val = f"st->{x.storage}[base + xx]"
            what = f"max-pool {kh}x{kw}/{sh} (comparisons)"
        else:
            init, acc_t, upd = "0", "int64_t", "m += v;"
            fin = f"sv_asr(m, {q['shift']})" if q["shift"] is not None else f"sv_floordiv(m, {q['n']})"
            val = self.load(x, "base + xx")
            what = (f"avg-pool {kh}x{kw}/{sh}: window sum then "
                    + (f">> {q['shift']}" if q["shift"] is not None else f"division by {q['n']}"))
        inside = ph == 0 and pw == 0 and (Ho - 1) * sh + kh <= H and (Wo - 1) * sw + kw <= W_
        if inside:  # every window lies inside the map: the taps unrolled at constant offsets
            taps = [i * W_ + j for i in range(kh) for j in range(kw)]
            val0 = val.replace("base + xx", f"b + {taps[0]}")
            body = ["int32_t xc = i0, yp = o0;",
                    f"for (int32_t c = 0; c < {C}; c++) {{",
                    "    int32_t rb = xc;",
                    f"    for (int32_t oy = 0; oy < {Ho}; oy++) {{",
                    "        int32_t b = rb;",
                    f"        for (int32_t ox = 0; ox < {Wo}; ox++) {{",
                    f"            {acc_t} m = {val0 if q['max'] else init};"]
            for t in (taps[1:] if q["max"] else taps):
                body.append(f"            {{ const {acc_t} v = {val.replace('base + xx', f'b + {t}')}; {upd} }}")
            body += [f"            st->{y.storage}[yp] = {fin};",
                     f"            yp += 1; b += {sw};",
                     "        }",
                     f"        rb += {sh * W_};",
                     "    }",
                     f"    xc += {H * W_};",
                     "}"]
        else:  # padding: the valid part of each window from tables, running offsets only
            body = ["int32_t xc = i0, yc = o0;",
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
        self.func(k, op, what, self.steps_loop(y, [x], body))

    def neuron(self, k: int, op: Op) -> None:
        n = op.params["neuron"]
        x, y = op.inputs[0], op.out
        N = x.numel
        self.vsize = max(self.vsize, N)
        if n.gain_shift is not None:
            drive = f"sv_shl({self.load(x, 'i0 + i')}, {n.gain_shift})"
            dwhat = f"drive << {n.gain_shift}"
        else:
            drive = f"{self.load(x, 'i0 + i')} * {n.gain_int}"
            dwhat = f"drive x {n.gain_int} (multiply)"
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
        lines = [f"for (int32_t i = 0; i < {N}; i++) st->v[i] = {n.v_init};"]
        lines += self.steps_loop(y, [x], body)
        what = (f"neuron, {N} units x {y.steps} steps: {lwhat}, {dwhat}, threshold {cmp} {n.th} "
                f"(2^-{n.F + n.E} units), {n.p.reset} reset")
        self.func(k, op, what, lines)

    def affine(self, k: int, op: Op) -> None:
        m = op.params["affine"]
        x, y = op.inputs[0], op.out
        C = x.shape[0]
        inner = x.numel // C
        per = m.per_step
        B = self.table(f"sv_bb{k}", m.b_q.reshape(-1).tolist(), "int64_t")
        if x.kind == "spike":
            ON = self.table(f"sv_on{k}", m.on_q.reshape(-1).tolist(), "int64_t")
            val = f"st->{x.storage}[xi] ? {ON}[cs + c] : {B}[cs + c]"
            what = "BN kept, on spikes: a select between two constants per channel"
        else:
            A = self.table(f"sv_a{k}", m.a_int.reshape(-1).tolist(), "int64_t")
            val = f"sv_asr({self.load(x, 'xi')} * {A}[cs + c], {m.a_frac}) + {B}[cs + c]"
            what = "BN kept, on analog input: multiply and shift per element"
        body = ["int32_t xi = i0, yi = o0;",
                f"for (int32_t c = 0; c < {C}; c++) {{",
                f"    for (int32_t i = 0; i < {inner}; i++) {{",
                f"        st->{y.storage}[yi] = {val};",
                "        xi += 1; yi += 1;",
                "    }",
                "}"]
        inc = [f"cs += {C};"] if per else []
        self.func(k, op, what, ["int32_t cs = 0;"] + self.steps_loop(y, [x], body, inc))

    def add(self, k: int, op: Op) -> None:
        a, b = op.inputs
        y = op.out
        body = [f"for (int32_t i = 0; i < {y.numel}; i++) "
                f"st->{y.storage}[o0 + i] = {self.load(a, 'i0 + i')} + {self.load(b, 'i1 + i')};"]
        self.func(k, op, "residual sum (additions)", self.steps_loop(y, [a, b], body))

    def mean(self, k: int, op: Op) -> None:
        x, y = op.inputs[0], op.out
        raw = "({v} ? SV_ONE : 0)" if x.kind == "spike" else "{v}"  # a ratio's numerator is summed as is
        val = lambda idx: raw.format(v=f"st->{x.storage}[{idx}]")  # noqa: E731
        if op.params["over"] == "time":
            lines = [f"for (int32_t i = 0; i < {y.numel}; i++) st->{y.storage}[i] = 0;",
                     "int32_t i0 = 0;",
                     f"for (int32_t t = 0; t < {self.p.T}; t++) {{",
                     f"    for (int32_t i = 0; i < {y.numel}; i++) st->{y.storage}[i] += {val('i0 + i')};",
                     f"    i0 += {x.numel if x.steps > 1 else 0};",
                     "}"]
            what = f"sum over the {self.p.T} time steps (the mean's divisor is kept: value = sum / {y.divisor})"
        else:
            n = op.params["n"]
            body = ["int32_t xi = i0;",
                    f"for (int32_t g = 0; g < {y.numel}; g++) {{",
                    "    int64_t m = 0;",
                    f"    for (int32_t i = 0; i < {n}; i++) m += {val('xi + i')};",
                    f"    st->{y.storage}[o0 + g] = m;",
                    f"    xi += {n};",
                    "}"]
            lines = self.steps_loop(y, [x], body)
            what = f"sum over {n} positions (mean's divisor kept: value = sum / {y.divisor})"
        self.func(k, op, what, lines)
