"""The PyTorch kernel: the multi-step neuron as a fused loop of standard tensor ops.

Runs every call (:class:`TorchKernel` supports everything): ``torch.compile``
tracing (no graph breaks), CPU calls the C kernel does not take, no C
compiler, no Triton, a surrogate the compiled kernels do not implement.

Both passes walk the sequence one time step at a time and keep every
temporary in a few step-sized scratch buffers: a step of ``[B, C, H, W]`` is
small enough to stay in cache while a dozen cheap ops run over it, whereas
whole-sequence ``[T, ...]`` temporaries stream through main memory on every op
(and on CPU cost page faults when freshly allocated). Scalars stay Python
floats or 0-dim tensors on the device, so there is no host sync inside the
loops. Every per-step op is a float op or a float <-> int8 copy: on CPU those
are vectorised, while bool and uint8 outputs or mixed-dtype arithmetic fall
back to slow paths (several times slower per element).
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikevision.neuron.kernel import STEPS_PER_BYTE, Constant, KernelChoice, is_compact
from spikevision.neuron.params import NeuronParams

__all__ = ["TorchKernel", "KERNEL"]


def _charge(x_t: Tensor, v: Tensor | None, decay: Constant, gain: Constant, p: NeuronParams,
            out: Tensor) -> Tensor:
    """``out = decay (V - v_rest) + v_rest + gain X_t``, with ``V = v_rest`` when ``v`` is None."""
    if isinstance(gain, float) and gain == 1.0:
        if v is None:
            out.copy_(x_t)
        elif isinstance(decay, float):
            torch.add(x_t, v, alpha=decay, out=out)
        else:
            torch.addcmul(x_t, v, decay, out=out)
    else:
        torch.mul(x_t, gain, out=out)
        if v is not None:
            out.add_(v, alpha=decay) if isinstance(decay, float) else out.addcmul_(v, decay)
    if p.v_rest != 0.0:
        out.add_(p.v_rest if v is None else (1.0 - decay) * p.v_rest)
    return out


def _reset_into(h: Tensor, s: Tensor, p: NeuronParams, out: Tensor) -> Tensor:
    """Post-reset membrane ``V`` from ``H`` and spikes ``S`` (0/1, any dtype)."""
    if p.reset == "hard":
        torch.addcmul(h, h, s, value=-1.0, out=out)  # H (1 - S), exact for S in {0, 1}
        if p.v_reset != 0.0:
            out.add_(s, alpha=p.v_reset)
        return out
    if p.reset == "soft":
        return torch.add(h, s, alpha=-p.v_th, out=out)
    return h


class _CodeWriter:
    """Packs each step's 2-bit digit (in-window + 2 * spike) into the int8 code, four steps to a byte.

    Four steps' digits form one base-4 number 0..255, stored minus 128, built with exact float
    arithmetic on small integers (the fast vectorised paths).
    """

    def __init__(self, x: Tensor, p: NeuronParams, needs_c_buf: bool) -> None:
        T = x.shape[0]
        self.code = torch.empty((-(-T // STEPS_PER_BYTE), *x.shape[1:]), dtype=torch.int8, device=x.device)
        self.packed = torch.empty_like(x[0])
        self.c_buf = torch.empty_like(x[0]) if needs_c_buf else None
        self.half_width, self.p, self.T = p.surrogate.width / 2.0, p, T

    def add(self, t: int, h: Tensor, s: Tensor, scratch: Tensor) -> None:
        """Step ``t``'s digit from ``H`` and ``S``; ``scratch`` (H's buffer, once V is made) holds the window."""
        hard = self.p.reset == "hard"
        win = torch.sub(h, self.p.v_th, out=scratch)
        win.abs_().lt_(self.half_width)
        j = t % STEPS_PER_BYTE
        if j == 0 and hard:
            torch.add(win, s, alpha=2.0, out=self.packed)
        elif j == 0:
            self.packed.copy_(win)
        else:
            self.packed.add_(win, alpha=4.0**j)
            if hard:
                self.packed.add_(s, alpha=2.0 * 4.0**j)
        if j == STEPS_PER_BYTE - 1 or t == self.T - 1:
            self.code[t // STEPS_PER_BYTE].copy_(self.packed.sub_(128.0))


class _CodeReader:
    """Peels the digits off the code in reverse order: the window (surrogate) and the spike bit of a step."""

    def __init__(self, code: Tensor, like: Tensor, T: int) -> None:
        self.code, self.T = code, T
        self.packed = torch.empty_like(like)  # integers in [-128, 256) while decoding: exact even in bfloat16
        self.offset = 0.0  # the packed number still to decode is packed + offset

    def step(self, t: int, g_buf: Tensor, no_spike: Tensor | None) -> Tensor:
        """Step ``t``'s window bit into ``g_buf`` (returned) and, given ``no_spike``, ``1 - S`` into it."""
        j = t % STEPS_PER_BYTE
        if j == STEPS_PER_BYTE - 1 or t == self.T - 1:
            self.packed.copy_(self.code[t // STEPS_PER_BYTE])
            self.offset = 128.0
        q = 4.0**j
        if no_spike is not None:  # spike iff what is left >= 2 q; then drop that part
            torch.lt(self.packed, 2.0 * q - self.offset, out=no_spike)
            self.packed.add_(no_spike, alpha=2.0 * q)
            self.offset -= 2.0 * q
        sg = torch.ge(self.packed, q - self.offset, out=g_buf)  # in window iff what is left >= q
        if j > 0:
            self.packed.sub_(sg, alpha=q)
        return sg


def _carry(k: Tensor, k_next: Tensor, h: Tensor | None, sg: Tensor, no_spike: Tensor | None,
           factor: Tensor | None, decay: Constant, p: NeuronParams, sg_scale: float) -> None:
    """``K_t += decay dV_t/dH_t K_{t+1}``: the gradient carried back through the membrane."""
    kn = k_next * decay if isinstance(decay, Tensor) else k_next
    c = 1.0 if isinstance(decay, Tensor) else decay
    if p.reset == "hard" and p.detach_reset:  # dV/dH = 1 - S
        k.addcmul_(kn, no_spike, value=c)
    elif p.reset == "hard":  # dV/dH = (1 - S) + (v_reset - H) sg
        torch.sub(h, p.v_reset, out=factor).mul_(sg).mul_(-sg_scale).add_(no_spike)
        k.addcmul_(kn, factor, value=c)
    elif p.reset == "soft" and not p.detach_reset:  # dV/dH = 1 - v_th sg
        torch.mul(sg, -p.v_th * sg_scale, out=factor).add_(1.0)
        k.addcmul_(kn, factor, value=c)
    else:  # dV/dH = 1
        k.add_(kn, alpha=c)


def _decay_term(k_next: Tensor, h: Tensor, no_spike: Tensor | None, p: NeuronParams, v_buf: Tensor) -> Tensor:
    """``sum K_{t+1} (V_t - v_rest)``: this step's share of ``dL/d decay`` (``dH_{t+1}/d decay = V_t - v_rest``)."""
    s_t = 1.0 - no_spike if no_spike is not None else (torch.gt if p.strict else torch.ge)(h, p.v_th).to(h.dtype)
    v_t = _reset_into(h, s_t, p, out=v_buf)
    return torch.sum(k_next * (v_t - p.v_rest))


class _TorchMultiStep(torch.autograd.Function):
    """Fused multi-step neuron with a hand-written BPTT backward, in standard PyTorch ops.

    Saves for backward either the 2-bit code (:func:`~spikevision.neuron.kernel.is_compact`) or the
    charged membrane ``H``; plus ``X`` when the gain itself needs a gradient.
    """

    @staticmethod
    def forward(ctx, x: Tensor, decay: Constant, gain: Constant, p: NeuronParams, return_membrane: bool):
        T = x.shape[0]
        compact = is_compact(p, decay)
        fire = torch.gt if p.strict else torch.ge
        s_seq = torch.empty_like(x)
        h_seq = torch.empty_like(x) if return_membrane else None
        # H kept for backward but not returned: one tensor per step, which the
        # allocator recycles more readily than one fresh [T, ...] block
        h_steps = [torch.empty_like(x[0]) for _ in range(T)] if not (compact or return_membrane) else None
        # without a reset V_t is H_t itself, so H_{t+1} needs another buffer (charging in place
        # would overwrite V before reading it): two buffers, used in turn
        h_buf = [torch.empty_like(x[0]) for _ in range(2 if p.reset == "none" else 1)] \
            if (compact and h_seq is None) else None
        v_buf = torch.empty_like(x[0]) if p.reset != "none" else None
        writer = _CodeWriter(x, p, needs_c_buf=p.reset == "none" or h_seq is not None) if compact else None
        v: Tensor | None = None  # post-reset membrane V_{t-1}; None means v_rest
        for t in range(T):
            h_out = h_seq[t] if h_seq is not None else (h_steps[t] if h_steps is not None else h_buf[t % len(h_buf)])
            h = _charge(x[t], v, decay, gain, p, out=h_out)
            s = fire(h, p.v_th, out=s_seq[t])
            v = _reset_into(h, s, p, out=v_buf)
            if writer is not None:  # the window test reuses H's buffer once V is made
                writer.add(t, h, s, writer.c_buf if (h is v or h_seq is not None) else h)

        ctx.p, ctx.compact, ctx.T, ctx.h_per_step = p, compact, T, h_steps is not None
        ctx.decay, ctx.gain = decay, gain
        ctx.set_materialize_grads(False)
        needs_x = isinstance(gain, Tensor) and gain.requires_grad
        states = [writer.code] if compact else ([h_seq] if h_seq is not None else h_steps)
        ctx.save_for_backward(x if needs_x else None, *states)
        return (s_seq, h_seq) if return_membrane else s_seq

    @staticmethod
    def backward(ctx, grad_s: Tensor | None, grad_h_out: Tensor | None = None):
        p: NeuronParams = ctx.p
        x, *states = ctx.saved_tensors
        decay, gain, T = ctx.decay, ctx.gain, ctx.T
        saved = states if ctx.h_per_step else states[0]  # H per step, H [T, ...], or the code
        grad_x = torch.empty_like(grad_s if grad_s is not None else grad_h_out,
                                  memory_format=torch.contiguous_format)
        step = grad_x[0]
        lt = torch.le if p.strict else torch.lt  # "no spike"

        # The recursion runs on K = G / sg_scale, where G_t = dL/dH_t and the
        # surrogate is sg = sg_scale * g; the constant joins the output scale.
        sg_scale = p.surrogate.grad_scale
        out_scale = gain * sg_scale
        # K_t lives in grad_x[t] and is scaled in place one step later, once used
        scaled = not (isinstance(out_scale, float) and out_scale == 1.0)
        g_buf = torch.empty_like(step)  # surrogate (window) of this step
        reader = _CodeReader(saved, step, T) if ctx.compact else None
        no_spike = torch.empty_like(step) if p.reset == "hard" else None
        factor = torch.empty_like(step) if p.reset != "none" and not p.detach_reset else None
        grad_decay = step.new_zeros(()) if ctx.needs_input_grad[1] else None
        grad_gain = step.new_zeros(()) if ctx.needs_input_grad[2] else None
        v_buf = torch.empty_like(step) if grad_decay is not None else None
        k_next: Tensor | None = None
        h = None

        for t in range(T - 1, -1, -1):
            k = grad_x[t]
            if reader is not None:
                sg = reader.step(t, g_buf, no_spike)
            else:
                h = saved[t]
                sg = p.surrogate.unscaled_grad_(torch.sub(h, p.v_th, out=g_buf))
                if no_spike is not None:
                    lt(h, p.v_th, out=no_spike)
            # direct term: this step's spike (through the surrogate) and membrane outputs
            if grad_s is not None:
                torch.mul(grad_s[t], sg, out=k)
            else:
                k.zero_()
            if grad_h_out is not None:
                k.add_(grad_h_out[t], alpha=1.0 / sg_scale)
            if k_next is not None:  # carried term: dH_{t+1}/dH_t = decay * dV_t/dH_t
                _carry(k, k_next, h, sg, no_spike, factor, decay, p, sg_scale)
                if grad_decay is not None:
                    grad_decay += _decay_term(k_next, h, no_spike, p, v_buf)
            if grad_gain is not None:
                grad_gain += torch.sum(k * x[t])
            if scaled and k_next is not None:
                k_next.mul_(out_scale)
            k_next = k
        if scaled:
            k_next.mul_(out_scale)
        if grad_decay is not None:
            grad_decay = grad_decay * sg_scale
        if grad_gain is not None:
            grad_gain = grad_gain * sg_scale
        return grad_x, grad_decay, grad_gain, None, None


class TorchKernel:
    """The PyTorch kernel: supports every call (the fallback of :mod:`spikevision.neuron.dispatch`)."""

    name = "torch"

    def status(self) -> str:
        """Always available."""
        return "PyTorch kernel"

    def supports(self, x: Tensor, decay: Constant, gain: Constant, p: NeuronParams, return_membrane: bool,
                 choice: KernelChoice) -> bool:
        """Every call."""
        return True

    def apply(self, x: Tensor, decay: Constant, gain: Constant, p: NeuronParams,
              return_membrane: bool) -> Tensor | tuple[Tensor, Tensor]:
        """Spikes (and ``H`` with ``return_membrane``) under :class:`_TorchMultiStep`."""
        return _TorchMultiStep.apply(x, decay, gain, p, return_membrane)


KERNEL = TorchKernel()
