"""The contract every neuron kernel implements, and the tables the kernels share.

A kernel computes :func:`~spikevision.neuron.functional.lif_multistep` (the
recurrence of :mod:`spikevision.neuron.functional`) for the calls it supports,
under its own :class:`torch.autograd.Function` with a hand-written backward.
Three implement :class:`NeuronKernel`, one module each, and
:mod:`spikevision.neuron.dispatch` picks the first that supports a call:

==========================================  ===========================================================
:mod:`spikevision.neuron._native`           the C kernel (``_lif_cpu.c``): CPU, float32/float64, fixed constants
:mod:`spikevision.neuron._triton`           the Triton kernels (``_triton_kernels.py``): CUDA tensors
:mod:`spikevision.neuron._torch`            fused standard PyTorch ops: everything (the fallback)
==========================================  ===========================================================

All give the same results to round-off and keep the same state for backward:
the charged membrane ``H``, or, where :func:`is_compact` holds, a 2-bit code
per neuron-step packed :data:`STEPS_PER_BYTE` steps to an ``int8`` (digit =
in-window + 2 * spike with a hard reset, the window bit alone otherwise;
stored minus 128). The reference every kernel is tested against is the plain
loop of :mod:`spikevision.neuron.reference`.

The compiled kernels name reset kinds and surrogates by integer codes:
:data:`RESET_CODES` and :data:`SURROGATE_CODES` are the one table of both
(``_lif_cpu.c`` and ``_triton_kernels.py`` use the same numbers).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from spikevision.neuron.params import RESET_KINDS, NeuronParams
from spikevision.neuron.surrogate import ATan, Rectangular, Sigmoid, Surrogate, Triangle

__all__ = ["NeuronKernel", "KernelChoice", "KernelUnavailable", "RESET_CODES", "SURROGATE_CODES",
           "STEPS_PER_BYTE", "is_compact", "surrogate_code", "Constant"]

#: A kernel's ``decay`` or ``gain``: a Python float (fixed) or a 0-dim tensor (learnable, PLIF).
Constant = Tensor | float

#: Reset kind -> the compiled kernels' code.
RESET_CODES: dict[str, int] = {kind: code for code, kind in enumerate(RESET_KINDS)}
#: Surrogate class -> (the compiled kernels' code, its two constants ``a, b`` by field name). Exact
#: classes only: a subclass may override ``grad()``, which compiled code would not see.
SURROGATE_CODES: dict[type[Surrogate], tuple[int, str, str | None]] = {
    Rectangular: (0, "width", None), Sigmoid: (1, "alpha", None), ATan: (2, "alpha", None),
    Triangle: (3, "width", "peak"),
}
STEPS_PER_BYTE = 4  # 2-bit digits per int8 code


def surrogate_code(sg: Surrogate) -> tuple[int, float, float] | None:
    """``(code, a, b)`` of a surrogate the compiled kernels implement, else None.

    ``a`` and ``b``: rectangular ``width, 0``; sigmoid and atan ``alpha, 0``; triangle ``width, peak``.
    """
    entry = SURROGATE_CODES.get(type(sg))
    if entry is None:
        return None
    code, a, b = entry
    return code, float(getattr(sg, a)), float(getattr(sg, b)) if b is not None else 0.0


def is_compact(p: NeuronParams, decay: Constant) -> bool:
    """Whether backward can run from 2 bits per neuron-step instead of ``H``.

    With the rectangular surrogate the gradient only needs, per neuron-step,
    the spike bit (for a hard reset's ``1 - S`` factor) and whether ``H`` lies in
    the surrogate window: two bits. Four steps share one ``int8`` (a quarter
    byte per neuron-step). A non-detached hard reset needs ``H`` itself
    (``(v_reset - H) * sg``), and a learnable decay needs the post-reset
    membranes, so those keep ``H``.
    """
    return (
        isinstance(p.surrogate, Rectangular)
        and (p.reset != "hard" or p.detach_reset)
        and not (isinstance(decay, Tensor) and decay.requires_grad)
    )


@dataclass(frozen=True)
class KernelChoice:
    """Which fused kernels may run (the PyTorch kernel always may).

    Args:
        c: the C kernel for the CPU calls it supports.
        triton: the Triton kernels for CUDA tensors.
        triton_on_cpu: also send CPU tensors to the Triton kernels, run by Triton's
            interpreter (for tests: the very source a GPU compiles, checked without one).
            The C kernel still takes the CPU calls it supports unless ``c`` is False.
        broadcast: the C kernel reads a time-broadcast input (stride 0 along ``T``) as its one step
            and returns the gradient of the broadcast tensor directly (no ``[T, ...]`` copies);
            False: the input is made contiguous first, as before.
    """

    c: bool = True
    triton: bool = True
    triton_on_cpu: bool = False
    broadcast: bool = True

    @staticmethod
    def environment() -> "KernelChoice":
        """What the environment allows: ``SPIKEVISION_NATIVE=0`` / ``SPIKEVISION_TRITON=0`` switch a kernel off.

        The one place these variables are read (when a call is dispatched); a scoped choice
        (:func:`~spikevision.neuron.use_kernels`) can narrow it but not turn on what they turn off.
        """
        env = os.environ
        return _ALLOW_ALL if "SPIKEVISION_NATIVE" not in env and "SPIKEVISION_TRITON" not in env else KernelChoice(
            c=env.get("SPIKEVISION_NATIVE", "1") != "0", triton=env.get("SPIKEVISION_TRITON", "1") != "0")

    def narrowed(self, allowed: "KernelChoice") -> "KernelChoice":
        """This choice with the kernels ``allowed`` turns off turned off too (``triton_on_cpu``, ``broadcast`` kept)."""
        return KernelChoice(self.c and allowed.c, self.triton and allowed.triton, self.triton_on_cpu, self.broadcast)


_ALLOW_ALL = KernelChoice()


class KernelUnavailable(RuntimeError):
    """A kernel that accepted a call could not run it (a Triton launch failed); the next kernel runs it."""


class NeuronKernel(Protocol):
    """One implementation of the multi-step neuron (see the module docstring).

    ``decay`` and ``gain`` are Python floats (fixed constants) or 0-dim tensors (PLIF's learned pair);
    ``x`` is a checked floating sequence ``[T, B, ...]``.
    """

    name: str

    def status(self) -> str:
        """Whether this kernel can run on this machine, and why not (loads or builds it if not yet done)."""
        ...

    def supports(self, x: Tensor, decay: Constant, gain: Constant, p: NeuronParams, return_membrane: bool,
                 choice: KernelChoice) -> bool:
        """Whether :meth:`apply` runs this call (cheap checks first)."""
        ...

    def apply(self, x: Tensor, decay: Constant, gain: Constant, p: NeuronParams,
              return_membrane: bool) -> Tensor | tuple[Tensor, Tensor]:
        """Spikes ``[T, B, ...]`` (and ``H`` with ``return_membrane``) under this kernel's autograd Function.

        Raises:
            KernelUnavailable: it could not run after all (the next kernel runs the call).
        """
        ...
