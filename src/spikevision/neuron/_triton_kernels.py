"""Triton kernels of the multi-step neuron: plain functions, made kernels by :mod:`._triton`.

The recurrence is the one of :mod:`spikevision.neuron.functional` (and of the C
kernel ``_lif_cpu.c``, which these kernels follow operation for operation, so
float32 results agree bit for bit wherever no transcendental function is
involved). One program owns ``BLOCK`` neurons and walks the whole sequence
with the membrane (forward) or the carried gradient (backward) in registers:
one read of the input and one write of the spikes per neuron-step.

The functions carry no ``@triton.jit``: :mod:`._triton` wraps them with
``triton.jit`` for GPUs and, for tests on CPU tensors, with Triton's
interpreter (``triton.knobs.runtime.interpret``), so both come from this one
source. The kernels use Triton's builtins only (``tl.load``, ``tl.where``,
``tl.full``, ...), no ``@triton.jit`` helper of ``triton.language.standard``
such as ``tl.zeros`` or ``tl.sum``, and call no other kernel function: those
were made compiled-only when Triton was imported, and the interpreter cannot
call them. The neuron's discrete choices are ``tl.constexpr``
arguments, so every combination compiles to its own straight loop; ``RESET`` and
``SURROGATE`` are the codes of :mod:`spikevision.neuron.kernel` (``RESET_CODES``,
``SURROGATE_CODES``).

Layout (all contiguous): ``x``, ``s`` and the gradients are ``[T, N]``; ``h``
is ``[T, N]`` in the compute dtype; ``code`` is ``[ceil(T/4), N]`` int8 with
four 2-bit digits per byte (``in-window + 2 * spike`` with a hard reset, the
window bit alone otherwise), stored minus 128, as in the other kernels.
``params`` holds, in the compute dtype (float64 for float64 inputs, else
float32): ``decay, gain, v_th, v_reset, v_rest, sg0, sg1`` with the surrogate's
constants prepared by the caller:

==========  =====================  ===============
surrogate   sg0                    sg1
==========  =====================  ===============
0 rect      ``width / 2``          ``1 / width``
1 sigmoid   ``alpha``              unused
2 atan      ``pi / 2 * alpha``     ``alpha / 2``
3 triangle  ``2 / width``          ``peak``
==========  =====================  ===============

Backward: ``G_t = dL/dS_t sg_t + dL/dH_t(direct) + decay G_{t+1} dV_t/dH_t``
and ``dL/dX_t = gain G_t``. With ``GRAD_DECAY`` neuron ``n`` writes
``sum_t G_{t+1} (V_t - v_rest)`` to ``part[n]``; with ``GRAD_GAIN``
``sum_t G_t X_t`` to ``part[N + n]`` (the caller reduces them over neurons,
in a fixed order).

Row offsets are 64-bit (``offs`` is int64 and rows advance by adding ``N``),
so ``T * N`` may exceed 2^31.
"""

import triton.language as tl


def lif_forward(x_ptr, s_ptr, h_ptr, code_ptr, params_ptr, T, N,
                RESET: tl.constexpr, STRICT: tl.constexpr, KEEP_H: tl.constexpr, KEEP_CODE: tl.constexpr,
                BLOCK: tl.constexpr):
    """Spikes; and ``H`` (``KEEP_H``) or the 2-bit code (``KEEP_CODE``) for backward."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    decay = tl.load(params_ptr)
    gain = tl.load(params_ptr + 1)
    v_th = tl.load(params_ptr + 2)
    v_reset = tl.load(params_ptr + 3)
    v_rest = tl.load(params_ptr + 4)
    half_width = tl.load(params_ptr + 5)
    v = tl.full([BLOCK], 0.0, params_ptr.dtype.element_ty) + v_rest
    acc = tl.full([BLOCK], 0, tl.int32)
    row = offs  # element offset of step t
    code_row = offs  # element offset of byte t // 4
    for t in range(T):
        xt = tl.load(x_ptr + row, mask=mask, other=0.0).to(params_ptr.dtype.element_ty)
        # same operation order as the C kernel; with V = v_rest this is v_rest + gain X
        h = decay * (v - v_rest) + v_rest + gain * xt
        if STRICT:
            fired = h > v_th
        else:
            fired = h >= v_th
        tl.store(s_ptr + row, tl.where(fired, 1.0, 0.0).to(s_ptr.dtype.element_ty), mask=mask)
        if KEEP_H:
            tl.store(h_ptr + row, h, mask=mask)
        if RESET == 0:
            v = tl.where(fired, v_reset, h)
        elif RESET == 1:
            v = tl.where(fired, h - v_th, h)
        else:
            v = h
        if KEEP_CODE:
            digit = (tl.abs(h - v_th) < half_width).to(tl.int32)
            if RESET == 0:
                digit = digit + 2 * fired.to(tl.int32)
            shift = 2 * (t % 4)
            acc = tl.where(shift == 0, 0, acc) + (digit << shift)
            done = (shift == 6) | (t == T - 1)  # the byte is full, or the sequence ends
            tl.store(code_ptr + code_row, (acc - 128).to(tl.int8), mask=mask & done)
            code_row = tl.where(done, code_row + N, code_row)
        row = row + N


def lif_backward(gs_ptr, gh_ptr, h_ptr, code_ptr, x_ptr, params_ptr, gx_ptr, part_ptr, T, N, last_row,
                 last_code_row,
                 RESET: tl.constexpr, STRICT: tl.constexpr, DETACH: tl.constexpr, SURROGATE: tl.constexpr,
                 COMPACT: tl.constexpr, HAS_GS: tl.constexpr, HAS_GH: tl.constexpr, GRAD_DECAY: tl.constexpr,
                 GRAD_GAIN: tl.constexpr, BLOCK: tl.constexpr):
    """``dL/dX`` by the reverse recurrence on ``G_t = dL/dH_t``; per-neuron sums for PLIF (module docstring)."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    decay = tl.load(params_ptr)
    gain = tl.load(params_ptr + 1)
    v_th = tl.load(params_ptr + 2)
    v_reset = tl.load(params_ptr + 3)
    v_rest = tl.load(params_ptr + 4)
    sg0 = tl.load(params_ptr + 5)
    sg1 = tl.load(params_ptr + 6)
    g_next = tl.full([BLOCK], 0.0, params_ptr.dtype.element_ty)
    sum_decay = tl.full([BLOCK], 0.0, params_ptr.dtype.element_ty)
    sum_gain = tl.full([BLOCK], 0.0, params_ptr.dtype.element_ty)
    acc = tl.full([BLOCK], 0, tl.int32)
    row = offs + last_row  # element offset of step t, walking back
    code_row = offs + last_code_row
    for i in range(T):
        t = T - 1 - i
        shift = 2 * (t % 4)
        if COMPACT:
            # the code: the window bit gives the surrogate, the spike bit the hard reset's 1 - S
            fresh = (shift == 6) | (t == T - 1)
            byte = tl.load(code_ptr + code_row, mask=mask & fresh, other=0).to(tl.int32) + 128
            acc = tl.where(fresh, byte, acc)
            digit = (acc >> shift) & 3
            sg = tl.where((digit & 1) == 1, sg1, 0.0)
            fired = (digit >> 1) == 1
            code_row = tl.where(shift == 0, code_row - N, code_row)
        else:
            h = tl.load(h_ptr + row, mask=mask, other=0.0)
            u = h - v_th
            if SURROGATE == 0:
                sg = tl.where(tl.abs(u) < sg0, sg1, 0.0)
            elif SURROGATE == 1:
                sig = 1.0 / (1.0 + tl.exp(-(u * sg0)))
                sg = sig * (1.0 - sig) * sg0
            elif SURROGATE == 2:
                z = u * sg0
                sg = sg1 / (1.0 + z * z)
            else:
                tri = 1.0 - tl.abs(u) * sg0
                sg = tl.where(tri > 0.0, tri, 0.0) * sg1
            if STRICT:
                fired = h > v_th
            else:
                fired = h >= v_th
        if HAS_GS:
            g = tl.load(gs_ptr + row, mask=mask, other=0.0).to(params_ptr.dtype.element_ty) * sg
        else:
            g = tl.full([BLOCK], 0.0, params_ptr.dtype.element_ty)
        if HAS_GH:
            g = g + tl.load(gh_ptr + row, mask=mask, other=0.0).to(params_ptr.dtype.element_ty)
        # carried term: dH_{t+1}/dH_t = decay dV_t/dH_t
        if RESET == 0 and DETACH:
            g = g + decay * g_next * tl.where(fired, 0.0, 1.0)
        elif RESET == 0:
            g = g + decay * g_next * (tl.where(fired, 0.0, 1.0) + (v_reset - h) * sg)
        elif RESET == 1 and not DETACH:
            g = g + decay * g_next * (1.0 - v_th * sg)
        else:  # a detached soft reset, or none: dV/dH = 1
            g = g + decay * g_next
        if GRAD_DECAY:  # dH_{t+1}/d decay = V_t - v_rest (COMPACT is never set here: V needs H)
            v = tl.where(fired, v_reset, h) if RESET == 0 else (tl.where(fired, h - v_th, h) if RESET == 1 else h)
            sum_decay = sum_decay + g_next * (v - v_rest)
        if GRAD_GAIN:
            sum_gain = sum_gain + g * tl.load(x_ptr + row, mask=mask, other=0.0).to(params_ptr.dtype.element_ty)
        tl.store(gx_ptr + row, (gain * g).to(gx_ptr.dtype.element_ty), mask=mask)
        g_next = g
        row = row - N
    if GRAD_DECAY:
        tl.store(part_ptr + offs, sum_decay, mask=mask)
    if GRAD_GAIN:
        tl.store(part_ptr + N + offs, sum_gain, mask=mask)
