r"""The neuron written once in plain form: the update equations as a per-step loop.

:func:`lif_reference` is the recurrence of :mod:`spikevision.neuron.functional`
(charge, fire, reset; the equations are in that module's docstring) written out
literally, one time step at a time, in ordinary differentiable PyTorch ops. It
is slow on purpose and shares no code with the fused kernels (C, Triton,
PyTorch; :mod:`spikevision.neuron.kernel`) behind :func:`~spikevision.neuron.functional.lif_multistep`, which
makes it the reference they are tested against: spikes equal, membranes and
gradients equal to round-off against autograd of this loop
(``tests/neuron/test_kernel.py``). Analysis uses it where it needs the
membranes of a layer (:class:`~spikevision.analysis.monitors.SurrogateWindowMonitor`).

Gradient: the spike is the exact Heaviside in value. Its derivative is the
surrogate's, obtained by autograd of the surrogate's primitive ``P`` through a
straight-through estimator, ``S = Theta(H - v_th) + P(H - v_th) - stop_grad(P(H - v_th))``;
with ``detach_reset`` the spike inside the reset term is detached.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikevision.neuron.params import NeuronParams, check_sequence

__all__ = ["lif_reference"]


def lif_reference(x_seq: Tensor, p: NeuronParams = NeuronParams(), *, decay: float | Tensor | None = None,
                  gain: float | Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Spikes and charged membranes of a neuron, by a plain loop over time.

    Args:
        x_seq: input current ``[T, B, ...]`` (floating point).
        p: neuron constants (see :class:`~spikevision.neuron.params.NeuronParams`).
        decay, gain: replace ``p.decay`` / ``p.gain``; may be tensors that need a gradient
            (PLIF: :func:`~spikevision.neuron.params.plif_constants`,
            or a module's :meth:`~spikevision.neuron.SpikingNeuron.kernel_constants`).

    Returns:
        ``(S, H)``: spikes (0./1.) and the charged membranes before reset, both ``[T, B, ...]``.

    Raises:
        TypeError: non-floating input. ValueError: fewer than 2 dims.
    """
    check_sequence(x_seq)
    decay = p.decay if decay is None else decay
    gain = p.gain if gain is None else gain
    v = torch.full_like(x_seq[0], p.v_rest)  # V_{-1} = v_rest
    spikes, membranes = [], []
    for x_t in x_seq:
        h = decay * (v - p.v_rest) + p.v_rest + gain * x_t  # charge
        s = ((h > p.v_th) if p.strict else (h >= p.v_th)).to(h.dtype)  # fire
        if h.requires_grad:  # value: the Heaviside; gradient: the surrogate's
            prim = p.surrogate.primitive(h - p.v_th)
            s = s + (prim - prim.detach())
        s_reset = s.detach() if p.detach_reset else s
        if p.reset == "hard":  # reset
            v = h * (1 - s_reset) + p.v_reset * s_reset
        elif p.reset == "soft":
            v = h - p.v_th * s_reset
        else:
            v = h
        spikes.append(s)
        membranes.append(h)
    return torch.stack(spikes), torch.stack(membranes)
