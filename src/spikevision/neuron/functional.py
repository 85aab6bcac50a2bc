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

Three kernels compute it, each its own autograd Function behind one small
contract (:mod:`spikevision.neuron.kernel`), with the same results to
round-off and the same saved state; :mod:`spikevision.neuron.dispatch` picks
one per call. CPU tensors in float32/float64 with fixed constants go to the C
kernel (:mod:`spikevision.neuron._native`, one pass per direction, compiled on
first use). CUDA tensors go to the Triton kernels
(:mod:`spikevision.neuron._triton`: one pass per direction with the membrane
in registers; any float dtype, PLIF, the membrane output; 16-bit inputs run in
float32). Everything else (``torch.compile`` tracing, CPU calls the C kernel
does not take, no C compiler, no Triton, a surrogate the fused kernels do not
implement) runs the fused loop of standard PyTorch ops of
:mod:`spikevision.neuron._torch`, which ``torch.compile`` traces without graph
breaks. An input that is the same at every step, ``u.unsqueeze(0).expand(T, ...)``
(a static image's stem output under ``stem_once``), reaches the C kernel as it
is: it reads the one step and gives ``u`` its gradient summed over ``T``, with
no ``[T, ...]`` copy either way (``use_kernels(broadcast=False)`` copies first). Speed and memory against SpikingJelly and a naive loop:
``python bench/neuron.py``, results in ``bench/neuron.md``. The same equations
as a plain per-step loop: :func:`spikevision.neuron.reference.lif_reference`.
"""

from __future__ import annotations

from torch import Tensor

from spikevision.neuron.dispatch import run as _run_kernel
from spikevision.neuron.params import NeuronParams, ResetKind, check_sequence, plif_constants

# NeuronParams, check_sequence, plif_constants and ResetKind live in spikevision.neuron.params;
# importing them from here keeps working
__all__ = ["NeuronParams", "lif_multistep", "plif_multistep", "plif_constants", "check_sequence", "ResetKind"]


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
    return _run_kernel(x_seq, p.decay, p.gain, p, return_membrane)


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
    return _run_kernel(x_seq, decay, gain, p, return_membrane)
