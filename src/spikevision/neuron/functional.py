r"""Multi-step spiking neuron dynamics as pure functions.

One engine covers every neuron of the four papers. Per element and time step
``t = 0 .. T-1``, with ``V_{-1} = v_rest``:

.. math::

    H_t &= \text{decay}\,(V_{t-1} - v_\text{rest}) + v_\text{rest} + \text{gain}\, X_t
        && \text{(charge)}\\
    S_t &= \Theta(H_t - v_\text{th}) && \text{(fire; } > \text{ if strict, else } \ge)\\
    V_t &= \begin{cases}
        H_t (1 - S_t) + v_\text{reset} S_t & \text{hard reset}\\
        H_t - v_\text{th} S_t & \text{soft (subtractive) reset}\\
        H_t & \text{no reset}
    \end{cases}

The charge forms of the papers are all special cases:

* tau form (SpikingJelly ``LIFNode``; spiking MLP, tau = 2):
  ``H = V + (X - (V - v_reset)) / tau`` is ``decay = 1 - 1/tau``,
  ``gain = 1/tau`` (``decay_input``) or ``1``, ``v_rest = v_reset``.
  See :meth:`NeuronParams.from_tau`.
* multiplicative decay with hard reset folded in (MS-ResNet, GAC):
  ``u_t = decay * u_{t-1} * (1 - s_{t-1}) + x_t`` is ``H = u``, hard reset to 0.
* leak with subtractive reset (S-ResNet): ``U_t = leak * U_{t-1} + I_t``,
  ``U <- U - v_th s`` is ``decay = leak``, ``reset = "soft"``.
* IF: ``decay = 1``, ``gain = 1``.

The backward pass uses ``ds/dH = surrogate.grad(H - v_th)`` in place of the
Heaviside's derivative; with ``detach_reset`` the spike inside the reset term
carries no gradient.

Tensors are time-major ``[T, B, ...]``. The membrane lives only inside one
call: nothing is kept between calls, so batch size and ``T`` may change freely.

Implementation: :func:`lif_multistep` runs under a custom
:class:`torch.autograd.Function` whose hand-written backward replays the
recurrence in reverse. For backward it keeps the charged membrane ``H`` (one
float per neuron-step) and recomputes spikes, post-reset membranes and
surrogate gradients from it; with the rectangular surrogate (MS-ResNet, GAC) it
keeps only 2 bits per neuron-step instead (spike, in-window), packed four steps
to a byte. Gradients are those of the literal per-step loop either way.

Three kernels compute it, with the same results to round-off and the same saved
state. CPU tensors in float32/float64 with fixed constants go to the C kernel
of :mod:`spikevision.neuron._native` (one pass per direction, compiled on first
use). CUDA tensors go to the Triton kernels of :mod:`spikevision.neuron._triton`
(one pass per direction with the membrane in registers; any float dtype, PLIF,
the membrane output; 16-bit inputs run in float32). Everything else
(``torch.compile`` tracing, CPU calls the C kernel does not take, no C compiler,
no Triton, a surrogate the fused kernels do not implement) runs the fused loop of
standard PyTorch ops below, which ``torch.compile`` traces without graph
breaks. Speed and memory against SpikingJelly and a naive loop:
``python bench/neuron.py``, results in ``bench/neuron.md``. The same equations
as a plain per-step loop: :func:`spikevision.neuron.reference.lif_reference`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from spikevision.neuron import _native, _triton
from spikevision.neuron.surrogate import Rectangular, Sigmoid, Surrogate, get_surrogate

__all__ = ["NeuronParams", "lif_multistep", "plif_multistep", "plif_constants", "check_sequence", "ResetKind"]

ResetKind = Literal["hard", "soft", "none"]
_RESETS = ("hard", "soft", "none")


@dataclass(frozen=True)
class NeuronParams:
    """Constants of a multi-step spiking neuron (see the module docstring).

    All quantities are in membrane units per time step (dimensionless).

    Args:
        decay: multiplier of the post-reset membrane's distance to ``v_rest``
            per step, ``1 - 1/tau`` in the tau form. 1 is an IF neuron.
        gain: multiplier of the input current (``1/tau`` with ``decay_input``).
        v_th: firing threshold.
        v_reset: membrane value after a hard reset.
        v_rest: resting potential the leak decays towards, and the initial
            membrane.
        reset: ``"hard"`` (to ``v_reset``), ``"soft"`` (subtract ``v_th``) or
            ``"none"``.
        strict: fire when ``H > v_th`` (True) or when ``H >= v_th`` (False).
        detach_reset: the spike in the reset term carries no gradient.
        surrogate: surrogate gradient of the Heaviside (an immutable value).

    The defaults are SpikingJelly's ``LIFNode`` defaults used by the spiking
    MLP: tau 2 with ``decay_input`` (decay 0.5, gain 0.5), threshold 1, hard
    reset to 0, firing at equality, sigmoid surrogate with alpha 4, detached
    reset.
    """

    decay: float = 0.5
    gain: float = 0.5
    v_th: float = 1.0
    v_reset: float = 0.0
    v_rest: float = 0.0
    reset: ResetKind = "hard"
    strict: bool = False
    detach_reset: bool = True
    surrogate: Surrogate = field(default_factory=Sigmoid)

    def __post_init__(self) -> None:
        if self.reset not in _RESETS:
            raise ValueError(f"reset must be one of {_RESETS}, got {self.reset!r}")
        if not isinstance(self.surrogate, Surrogate):
            object.__setattr__(self, "surrogate", get_surrogate(self.surrogate))
        for name in ("decay", "gain", "v_th", "v_reset", "v_rest"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value != value:
                raise ValueError(f"neuron constant {name} must be a real number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1] (1 - 1/tau), got {self.decay}")

    @classmethod
    def from_tau(cls, tau: float, decay_input: bool = True, **kwargs) -> "NeuronParams":
        """Tau form ``H = V + (X - (V - v_reset)) / tau`` (SpikingJelly ``LIFNode``).

        Args:
            tau: membrane time constant in time steps, ``tau >= 1``.
            decay_input: divide the input by ``tau`` too (``gain = 1/tau``).
            **kwargs: other fields; ``v_rest`` defaults to ``v_reset``.
        """
        if not tau >= 1.0:
            raise ValueError(f"tau must be >= 1 time step, got {tau}")
        v_reset = kwargs.get("v_reset", 0.0)
        kwargs.setdefault("v_rest", v_reset)
        return cls(decay=1.0 - 1.0 / tau, gain=(1.0 / tau) if decay_input else 1.0, **kwargs)

    def replace(self, **changes) -> "NeuronParams":
        """A copy with some fields changed; unknown names raise TypeError."""
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise TypeError(
                f"unknown neuron constant(s) {sorted(unknown)}; valid: {sorted(self.__dataclass_fields__)}"
            )
        return replace(self, **changes)


def check_sequence(x: Tensor, name: str = "input", min_dim: int = 2) -> None:
    """Raise a clear error unless ``x`` is a floating time-major sequence ``[T, B, ...]``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {x.dtype}; convert with .float()")
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must be a time-major sequence [T, B, ...] with at least {min_dim} dims, "
            f"got shape {list(x.shape)}; add an encoder (e.g. DirectEncoder(T)) in front"
        )


# ---------------------------------------------------------------------------
# Fused kernel
# ---------------------------------------------------------------------------
#
# Both passes walk the sequence one time step at a time and keep every
# temporary in a few step-sized scratch buffers: a step of [B, C, H, W] is small
# enough to stay in cache while a dozen cheap ops run over it, whereas whole-
# sequence [T, ...] temporaries stream through main memory on every op (and on
# CPU cost page faults when freshly allocated). Scalars stay Python floats or
# 0-dim tensors on the device, so there is no host sync inside the loops.


_STEPS_PER_BYTE = 4  # 2-bit digits per int8 code


def _is_compact(p: NeuronParams, decay: Tensor | float) -> bool:
    """Whether backward can run from 2 bits per neuron-step instead of ``H``.

    With the rectangular surrogate the gradient only needs, per neuron-step,
    the spike bit (for a hard reset's ``1 - S`` factor) and whether ``H`` lies in
    the surrogate window: two bits. Four steps share one ``int8`` (a quarter
    byte per neuron-step), packed and unpacked with exact float arithmetic on
    small integers, which stays on the fast vectorised paths. A non-detached hard
    reset needs ``H`` itself (``(v_reset - H) * sg``), and a learnable decay
    needs the post-reset membranes, so those keep ``H``.
    """
    return (
        isinstance(p.surrogate, Rectangular)
        and (p.reset != "hard" or p.detach_reset)
        and not (isinstance(decay, Tensor) and decay.requires_grad)
    )


def _charge(x_t: Tensor, v: Tensor | None, decay: Tensor | float, gain: Tensor | float,
            p: NeuronParams, out: Tensor) -> Tensor:
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


class _MultiStep(torch.autograd.Function):
    """Fused multi-step neuron with a hand-written BPTT backward.

    ``decay`` and ``gain`` are Python floats (fixed constants) or 0-dim tensors
    (learnable, PLIF). Saves for backward either a 2-bit code per neuron-step
    (rectangular surrogate, see :func:`_is_compact`) or the charged
    membrane ``H``; plus ``X`` when the gain itself needs a gradient.

    Every per-step op is a float op or a float <-> int8 copy: on CPU those are
    vectorised, while bool and uint8 outputs or mixed-dtype arithmetic fall back
    to slow paths (several times slower per element).
    """

    @staticmethod
    def forward(ctx, x: Tensor, decay: Tensor | float, gain: Tensor | float, p: NeuronParams,
                return_membrane: bool):
        T = x.shape[0]
        compact = _is_compact(p, decay)
        ctx.native = not return_membrane and _native.supports(x, decay, gain, p)
        ctx.triton = not ctx.native and _triton.supports(x, p)
        if ctx.triton:  # the Triton kernel: one pass, same results (see _triton.py)
            out = _triton_forward(ctx, x, decay, gain, p, return_membrane)
            if out is not None:
                return out
            ctx.triton = False  # it failed to launch on this device: PyTorch from now on
        if ctx.native:  # the C kernel: one pass, same results (see _native.py)
            needs_grad = ctx.needs_input_grad[0]
            s_seq, h_seq, code = _native.forward(x, p, decay, gain, keep_h=needs_grad and not compact,
                                                 keep_code=needs_grad and compact)
            ctx.p, ctx.decay, ctx.gain = p, decay, gain
            ctx.set_materialize_grads(False)
            ctx.save_for_backward(code, *(h_seq or ()))
            return s_seq
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
        if compact:
            code = torch.empty((-(-T // _STEPS_PER_BYTE), *x.shape[1:]), dtype=torch.int8, device=x.device)
            packed = torch.empty_like(x[0])
            c_buf = torch.empty_like(x[0]) if (p.reset == "none" or h_seq is not None) else None
            half_width = p.surrogate.width / 2.0
        v: Tensor | None = None  # post-reset membrane V_{t-1}; None means v_rest
        for t in range(T):
            h_out = h_seq[t] if h_seq is not None else (h_steps[t] if h_steps is not None else h_buf[t % len(h_buf)])
            h = _charge(x[t], v, decay, gain, p, out=h_out)
            s = fire(h, p.v_th, out=s_seq[t])
            v = _reset_into(h, s, p, out=v_buf)
            if compact:
                # digit = in-window + 2 * spike (hard reset; else the window alone), in
                # {0, 1, 2, 3}; four steps' digits form one base-4 number 0..255, stored
                # minus 128 as int8. The window test reuses H's buffer once V is made.
                win = torch.sub(h, p.v_th, out=c_buf if (h is v or h_seq is not None) else h)
                win.abs_().lt_(half_width)
                j = t % _STEPS_PER_BYTE
                if j == 0 and p.reset == "hard":
                    torch.add(win, s, alpha=2.0, out=packed)
                elif j == 0:
                    packed.copy_(win)
                else:
                    packed.add_(win, alpha=4.0**j)
                    if p.reset == "hard":
                        packed.add_(s, alpha=2.0 * 4.0**j)
                if j == _STEPS_PER_BYTE - 1 or t == T - 1:
                    code[t // _STEPS_PER_BYTE].copy_(packed.sub_(128.0))

        ctx.p, ctx.compact, ctx.T, ctx.h_per_step = p, compact, T, h_steps is not None
        ctx.decay, ctx.gain = decay, gain
        ctx.set_materialize_grads(False)
        needs_x = isinstance(gain, Tensor) and gain.requires_grad
        states = [code] if compact else ([h_seq] if h_seq is not None else h_steps)
        ctx.save_for_backward(x if needs_x else None, *states)
        return (s_seq, h_seq) if return_membrane else s_seq

    @staticmethod
    def backward(ctx, grad_s: Tensor | None, grad_h_out: Tensor | None = None):
        p: NeuronParams = ctx.p
        if ctx.triton:
            if grad_s is None and grad_h_out is None:
                return None, None, None, None, None
            x, h, code = ctx.saved_tensors
            grad_x, grad_decay, grad_gain = _triton.backward(
                grad_s, grad_h_out, h, code, x, p, ctx.params, ctx.needs_input_grad[1], ctx.needs_input_grad[2])
            if grad_decay is not None:
                grad_decay = grad_decay.to(ctx.decay.dtype)
            if grad_gain is not None:
                grad_gain = grad_gain.to(ctx.gain.dtype)
            return grad_x, grad_decay, grad_gain, None, None
        if ctx.native:
            if grad_s is None:
                return None, None, None, None, None
            code, *h_steps = ctx.saved_tensors
            grad_x = _native.backward(grad_s, h_steps or None, code, p, ctx.decay, ctx.gain)
            return grad_x, None, None, None, None
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
        # while unpacking, packed holds integers in [-128, 256): exact even in bfloat16
        packed = torch.empty_like(step) if ctx.compact else None
        offset = 0.0  # the packed number still to decode is packed + offset
        no_spike = torch.empty_like(step) if p.reset == "hard" else None
        factor = torch.empty_like(step) if p.reset != "none" and not p.detach_reset else None
        decay_is_tensor = isinstance(decay, Tensor)
        grad_decay = step.new_zeros(()) if ctx.needs_input_grad[1] else None
        grad_gain = step.new_zeros(()) if ctx.needs_input_grad[2] else None
        v_buf = torch.empty_like(step) if grad_decay is not None else None
        k_next: Tensor | None = None

        for t in range(T - 1, -1, -1):
            k = grad_x[t]
            if ctx.compact:  # peel this step's digit (window + 2 spike) off the top
                j = t % _STEPS_PER_BYTE
                if j == _STEPS_PER_BYTE - 1 or t == T - 1:
                    packed.copy_(saved[t // _STEPS_PER_BYTE])
                    offset = 128.0
                q = 4.0**j
                if no_spike is not None:  # spike iff what is left >= 2 q; then drop that part
                    torch.lt(packed, 2.0 * q - offset, out=no_spike)
                    packed.add_(no_spike, alpha=2.0 * q)
                    offset -= 2.0 * q
                sg = torch.ge(packed, q - offset, out=g_buf)  # in window iff what is left >= q
                if j > 0:
                    packed.sub_(sg, alpha=q)
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
            # carried term: dH_{t+1}/dH_t = decay * dV_t/dH_t
            if k_next is not None:
                kn = k_next * decay if decay_is_tensor else k_next
                c = 1.0 if decay_is_tensor else decay
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
                if grad_decay is not None:  # dH_{t+1}/d decay = V_t - v_rest
                    s_t = 1.0 - no_spike if no_spike is not None else \
                        (torch.gt if p.strict else torch.ge)(h, p.v_th).to(h.dtype)
                    v_t = _reset_into(h, s_t, p, out=v_buf)
                    grad_decay += torch.sum(k_next * (v_t - p.v_rest))
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


def _triton_forward(ctx, x: Tensor, decay: Tensor | float, gain: Tensor | float, p: NeuronParams,
                    return_membrane: bool):
    """Forward through :mod:`._triton`; None if its kernel could not launch (then PyTorch runs)."""
    needs_grad = any(ctx.needs_input_grad[:3])
    # with the membrane returned, backward reads that H instead of a code
    compact = _is_compact(p, decay) and not return_membrane
    params = _triton.params_tensor(p, decay, gain, _triton.compute_dtype(x.dtype), x.device)
    out = _triton.forward(x, p, params, keep_h=return_membrane or (needs_grad and not compact),
                          keep_code=needs_grad and compact)
    if out is None:
        return None
    s_seq, h_seq, code = out
    ctx.p, ctx.params, ctx.decay, ctx.gain = p, params, decay, gain
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(x if ctx.needs_input_grad[2] else None, h_seq, code)
    if return_membrane:  # H is kept in the compute precision; the caller gets it in x's dtype
        return s_seq, h_seq.to(x.dtype)
    return s_seq


def lif_multistep(
    x_seq: Tensor,
    p: NeuronParams = NeuronParams(),
    *,
    return_membrane: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Run a spiking neuron over a whole sequence.

    Args:
        x_seq: input current ``[T, B, ...]`` (floating point).
        p: neuron constants (see :class:`NeuronParams`).
        return_membrane: also return the charged membrane ``H`` (before reset).

    Returns:
        Spikes ``[T, B, ...]`` (0./1. in ``x_seq``'s dtype), and ``H`` if asked.

    Raises:
        TypeError: non-floating input. ValueError: fewer than 2 dims.
    """
    check_sequence(x_seq)
    return _MultiStep.apply(x_seq, p.decay, p.gain, p, return_membrane)


def plif_multistep(
    x_seq: Tensor,
    w: Tensor,
    p: NeuronParams = NeuronParams(),
    *,
    decay_input: bool = True,
    return_membrane: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Parametric LIF (Fang et al., ICCV 2021): ``1/tau = sigmoid(w)`` is learned.

    ``decay = 1 - sigmoid(w)``; ``gain = sigmoid(w)`` with ``decay_input``, else 1.
    ``p.decay`` and ``p.gain`` are ignored; every other constant applies.

    Args:
        x_seq: input ``[T, B, ...]``.
        w: scalar parameter (one per layer).
        p: the other neuron constants.
        decay_input: scale the input by ``1/tau``.
        return_membrane: also return ``H``.
    """
    check_sequence(x_seq)
    decay, gain = plif_constants(w.to(x_seq.dtype), decay_input)
    return _MultiStep.apply(x_seq, decay, gain, p, return_membrane)


def plif_constants(w: Tensor, decay_input: bool = True) -> tuple[Tensor, Tensor | float]:
    """PLIF's effective ``(decay, gain)`` from its parameter: ``1/tau = sigmoid(w)``.

    ``decay = 1 - sigmoid(w)``; ``gain = sigmoid(w)`` with ``decay_input``, else ``1.0``.
    The one place the formula lives: the kernels, the reference loop's callers, analysis
    and deploy all take PLIF's constants from here.

    Args:
        w: the scalar parameter (any shape with one element); the result keeps its dtype
            and its autograd graph.
        decay_input: scale the input by ``1/tau``.

    Returns:
        0-dim tensors ``(decay, gain)`` (``gain`` is the float ``1.0`` without ``decay_input``).

    Raises:
        ValueError: ``w`` has more than one element.
    """
    if w.numel() != 1:
        raise ValueError(f"PLIF expects one scalar time-constant parameter, got shape {list(w.shape)}")
    inv_tau = torch.sigmoid(w.reshape(()))
    return 1.0 - inv_tau, (inv_tau if decay_input else 1.0)
