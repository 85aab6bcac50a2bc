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

Implementation: :func:`lif_multistep` runs a fused loop under a custom
:class:`torch.autograd.Function` whose hand-written backward replays the
recurrence in reverse. It saves only the charged membrane ``H`` (one float per
neuron-step); spikes, post-reset membranes and surrogate gradients are
recomputed from it. The same code runs on CPU and CUDA tensors and under
``torch.compile``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from spikevision.neuron.surrogate import Sigmoid, Surrogate, get_surrogate

__all__ = ["NeuronParams", "lif_multistep", "plif_multistep", "check_sequence", "ResetKind"]

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


def _fire(h: Tensor, p: NeuronParams, out: Tensor | None = None) -> Tensor:
    op = torch.gt if p.strict else torch.ge
    if out is None:
        return op(h, p.v_th).to(h.dtype)
    return op(h, p.v_th, out=out)


def _reset(h: Tensor, s: Tensor, p: NeuronParams) -> Tensor:
    if p.reset == "hard":
        v = h * (1.0 - s)
        return v + s * p.v_reset if p.v_reset != 0.0 else v
    if p.reset == "soft":
        return h - s * p.v_th
    return h


def _forward_loop(drive: Tensor, decay: Tensor | float, p: NeuronParams) -> tuple[Tensor, Tensor]:
    """Run the recurrence given ``drive_t = gain * X_t + (1 - decay) v_rest``.

    ``decay`` is a Python float, or a 0-dim tensor for learnable time constants
    (kept on the device to avoid a host sync). Returns the charged membranes
    ``H`` and the spikes ``S``, both shaped like ``drive``.
    """
    T = drive.shape[0]
    h_seq = torch.empty_like(drive)
    s_seq = torch.empty_like(drive)
    v: Tensor | None = None  # post-reset membrane V_{t-1}; None means v_rest
    for t in range(T):
        if v is None:
            if p.v_rest == 0.0:
                h_seq[0].copy_(drive[0])
            else:
                torch.add(drive[0], decay * p.v_rest, out=h_seq[0])
        elif isinstance(decay, float):
            torch.add(drive[t], v, alpha=decay, out=h_seq[t])
        else:
            torch.addcmul(drive[t], v, decay, out=h_seq[t])
        _fire(h_seq[t], p, out=s_seq[t])
        v = _reset(h_seq[t], s_seq[t], p)
    return h_seq, s_seq


def _as_float(value: Tensor | float) -> float:
    return float(value.detach()) if isinstance(value, Tensor) else value


class _MultiStep(torch.autograd.Function):
    """Fused multi-step neuron with a hand-written BPTT backward.

    ``decay`` and ``gain`` are Python floats (fixed constants) or 0-dim tensors
    (learnable, PLIF). Saves only ``H`` for backward, plus ``X`` when the gain
    itself needs a gradient.
    """

    @staticmethod
    def forward(ctx, x: Tensor, decay: Tensor | float, gain: Tensor | float, p: NeuronParams):
        drive = x if (isinstance(gain, float) and gain == 1.0) else x * gain
        if p.v_rest != 0.0:
            drive = drive + (1.0 - decay) * p.v_rest
        h_seq, s_seq = _forward_loop(drive, decay, p)
        ctx.p = p
        ctx.decay, ctx.gain = _as_float(decay), _as_float(gain)
        ctx.save_for_backward(h_seq, x if isinstance(gain, Tensor) and gain.requires_grad else None)
        return s_seq, h_seq

    @staticmethod
    def backward(ctx, grad_s: Tensor | None, grad_h_out: Tensor | None):
        p: NeuronParams = ctx.p
        h_seq, x = ctx.saved_tensors
        decay, gain = ctx.decay, ctx.gain
        s_seq = _fire(h_seq, p)
        sg = p.surrogate.grad(h_seq - p.v_th)
        # gradient reaching H_t directly from this step's outputs (spike, membrane)
        direct = grad_s * sg if grad_s is not None else torch.zeros_like(h_seq)
        if grad_h_out is not None:
            direct = direct + grad_h_out
        # dH_{t+1}/dH_t = decay * dV_t/dH_t: the factor carrying gradient back in time
        if p.reset == "hard":
            dv_dh = 1.0 - s_seq
            if not p.detach_reset:
                dv_dh = dv_dh + (p.v_reset - h_seq) * sg
        elif p.reset == "soft" and not p.detach_reset:
            dv_dh = 1.0 - p.v_th * sg
        else:
            dv_dh = None  # identity
        if dv_dh is None:
            carry = torch.full_like(h_seq, decay)
        else:
            carry = dv_dh * decay if decay != 1.0 else dv_dh
        grad_h = torch.empty_like(h_seq)
        T = h_seq.shape[0]
        grad_h[T - 1].copy_(direct[T - 1])
        for t in range(T - 2, -1, -1):
            torch.addcmul(direct[t], carry[t], grad_h[t + 1], out=grad_h[t])
        grad_x = grad_h * gain if gain != 1.0 else grad_h

        grad_decay = grad_gain = None
        if ctx.needs_input_grad[1]:
            # dH_t/d decay = V_{t-1} - v_rest, with V_{-1} = v_rest
            v_prev = _reset(h_seq[:-1], s_seq[:-1], p)
            grad_decay = (grad_h[1:] * (v_prev - p.v_rest)).sum()
        if ctx.needs_input_grad[2]:
            grad_gain = (grad_h * x).sum()
        return grad_x, grad_decay, grad_gain, None


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
    s, h = _MultiStep.apply(x_seq, p.decay, p.gain, p)
    return (s, h) if return_membrane else s


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
    if w.numel() != 1:
        raise ValueError(f"PLIF expects one scalar time-constant parameter, got shape {list(w.shape)}")
    inv_tau = torch.sigmoid(w.reshape(()).to(x_seq.dtype))
    decay = 1.0 - inv_tau
    gain = inv_tau if decay_input else 1.0
    s, h = _MultiStep.apply(x_seq, decay, gain, p)
    return (s, h) if return_membrane else s
