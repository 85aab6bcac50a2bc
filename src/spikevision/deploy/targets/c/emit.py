"""The C emitter of every operation type but synapses (:mod:`spikevision.deploy.targets.c.synapse`):
pooling, neurons, kept BN, sums, means, transposes, concatenations, ReLU and GAC's gate.

:func:`emit` (from :mod:`spikevision.deploy.targets.c.writer`) is a :func:`functools.singledispatch`
function with one registered emitter per operation type of :mod:`spikevision.deploy.ir.ops`; importing
this module registers them all.
"""

from __future__ import annotations

import math

from spikevision.deploy.engine.gac import OPERAND_LIMIT, SIGMOID_BITS, SIGMOID_RANGE
from spikevision.deploy.ir.ops import Add, Affine, Concat, Gate, Mean, Neuron, Permute, Pool, Relu
from spikevision.deploy.targets.c import synapse  # noqa: F401  (registers the synapse emitters)
from spikevision.deploy.targets.c.writer import SIZES, CWriter, emit, indent as _indent, weight_ctype

__all__ = ["CWriter", "emit", "weight_ctype", "SIZES"]

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


#: units a neuron updates together: their membranes sit in a local array (the stack), never in the state
NEURON_BLOCK = 64


@emit.register
def _neuron(op: Neuron, w: CWriter, k: int) -> None:
    """Block by block of :data:`NEURON_BLOCK` units, all steps of a block in a row: the membranes live in a
    local array of the block (512 bytes of stack), not in the state; the loop over a block's units vectorises."""
    n, x, y = op.neuron, op.x, op.out
    N = x.numel
    drive, dwhat, leak, lwhat = _neuron_terms(op, w)
    cmp = ">" if n.p.strict else ">="
    reset = {"hard": f"v = s ? {n.v_reset} : h;", "soft": f"v = s ? h - {n.th} : h;", "none": "v = h;"}[n.p.reset]
    x_step = N if x.steps > 1 else 0
    if y.storage in w.packed:  # bit o0 + i of the packed train: the bytes cleared first, then bits or-ed in
        store = f"st->{y.storage}[(o0 + i) >> 3] |= (uint8_t)(s << ((o0 + i) & 7));"
        clear = [f"for (int32_t i = 0; i < {-(-w.stored(y) // 8)}; i++) st->{y.storage}[i] = 0;"]
    else:
        store, clear = f"st->{y.storage}[o0 + i] = (uint8_t)s;", []
    if w.in_steps():
        _neuron_step(op, w, k, store, clear)
        return
    B = min(NEURON_BLOCK, N)
    lines = [*clear,
             f"int64_t vm[{B}];",
             f"for (int32_t u = 0; u < {N}; u += {B}) {{",
             f"    const int32_t nb = {N} - u < {B} ? {N} - u : {B};",
             f"    for (int32_t i = 0; i < nb; i++) vm[i] = {n.v_init};",
             "    int32_t i0 = u, o0 = u;",
             f"    for (int32_t t = 0; t < {y.steps}; t++) {{",
             "        for (int32_t i = 0; i < nb; i++) {",
             "            int64_t v = vm[i];",
             f"            const int64_t h = {leak} + ({drive});",
             f"            const int s = h {cmp} {n.th};",
             f"            {reset}",
             "            vm[i] = v;",
             f"            {store}",
             "        }",
             f"        i0 += {x_step}; o0 += {N};",
             "    }",
             "}"]
    what = (f"neuron, {N} units x {y.steps} steps, {B} units at a time (their membranes on the stack): {lwhat}, "
            f"{dwhat}, threshold {cmp} {n.th} (2^-{n.F + n.E} units), {n.p.reset} reset"
            + (", spikes packed 8 to a byte" if y.storage in w.packed else ""))
    w.func(k, op, what, lines)


def _neuron_step(op: Neuron, w: CWriter, k: int, store: str, clear: list[str]) -> None:
    """One step of a neuron in a step-at-a-time build: its membranes live in the state through all the steps
    (initialised at the first)."""
    n, x, y = op.neuron, op.x, op.out
    N = x.numel
    drive, dwhat, leak, lwhat = _neuron_terms(op, w)
    cmp = ">" if n.p.strict else ">="
    reset = {"hard": f"v = s ? {n.v_reset} : h;", "soft": f"v = s ? h - {n.th} : h;", "none": "v = h;"}[n.p.reset]
    M = w.persist(k, "m", "int64_t", N)
    body = [f"for (int32_t i = 0; i < {N}; i++) {{",
            f"    int64_t v = st->{M}[i];",
            f"    const int64_t h = {leak} + ({drive});",
            f"    const int s = h {cmp} {n.th};",
            f"    {reset}",
            f"    st->{M}[i] = v;",
            f"    {store}",
            "}"]
    lines = [f"if (t == 0) for (int32_t i = 0; i < {N}; i++) st->{M}[i] = {n.v_init};", *clear,
             *w.steps_loop(y, [x], body)]
    what = (f"neuron, {N} units, one step (its membranes persist in the state): {lwhat}, {dwhat}, threshold "
            f"{cmp} {n.th} (2^-{n.F + n.E} units), {n.p.reset} reset"
            + (", spikes packed 8 to a byte" if y.storage in w.packed else ""))
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
    inc = [("cs", C)] if m.per_step else []
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
    if op.over == "time" and w.in_steps():  # the sum accumulates step by step
        lines = [f"if (t == 0) for (int32_t i = 0; i < {y.numel}; i++) st->{y.storage}[i] = 0;",
                 f"const int32_t i0 = {w.step_offset(x, 'i0')};",
                 f"for (int32_t i = 0; i < {y.numel}; i++) st->{y.storage}[i] += {val('i0 + i')};"]
        what = f"sum over the {w.p.T} time steps, step by step (the mean's divisor is kept: value = sum / {y.divisor})"
    elif op.over == "time":
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
    """GAC's gate, as :class:`~spikevision.deploy.engine.gac.IntGAC` computes it: ``z`` by
    :func:`~spikevision.deploy.engine.gac.gate_product`, ``sigmoid(z)`` by
    :func:`~spikevision.deploy.engine.gac.sigmoid_lookup`."""
    s, sca, _u = op.inputs
    y, F_ = op.out, w.p.frac_bits
    half, shift = F_ // 2, F_ - SIGMOID_BITS
    lut = w.table(f"sv_sig{k}", op.gac.sigmoid_q.tolist(), "int32_t" if F_ <= 30 else "int64_t")
    lo, hi = -SIGMOID_RANGE << F_, (SIGMOID_RANGE << F_) - 1
    lim = OPERAND_LIMIT
    body = ["const int64_t a = ta[t];",
            f"const int64_t a0 = sv_asr(a, {half});",
            f"const int64_t as = a0 > {lim} ? {lim} : (a0 < -{lim} ? -{lim} : a0);",
            f"const int a_small = a <= {lim} && a >= -{lim};",
            f"for (int32_t i = 0; i < {y.numel}; i++) {{",
            f"    if (!st->{s.storage}[i0 + i]) {{ st->{y.storage}[o0 + i] = 0; continue; }}",
            f"    const int64_t b = st->{sca.storage}[i1 + i];",
            "    int64_t z;",
            f"    if (a_small && b <= {lim} && b >= -{lim}) z = sv_asr(a * b, {F_});",
            "    else {",
            f"        const int64_t b0 = sv_asr(b, {F_ - half});",
            f"        z = as * (b0 > {lim} ? {lim} : (b0 < -{lim} ? -{lim} : b0));",
            "    }",
            f"    z = (z < {lo}LL ? {lo}LL : (z > {hi}LL ? {hi}LL : z)) - ({lo}LL);",
            f"    const int64_t j = z >> {shift}, r = z & {(1 << shift) - 1}LL;",
            f"    const int64_t g = {lut}[j];",
            f"    st->{y.storage}[o0 + i] = g + ((({lut}[j + 1] - g) * r) >> {shift});",
            "}"]
    lines = _gate_ta(op, w, k) + w.steps_loop(y, [s, sca], body)  # the step index t also picks ta[t]
    what = (f"GAC gate, {y.numel} units x {w.p.T} steps: TA (mean and max of U through a {w.p.T}-step MLP: integer "
            f"multiplies), z = TA x SCA (integer multiply), sigmoid(z) from a {op.gac.sigmoid_q.numel()}-entry "
            "table interpolated linearly (an integer multiply), selected by the spikes")
    w.func(k, op, what, lines)
