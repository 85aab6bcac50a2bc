"""Which kernel runs a neuron call, and a scoped switch to choose.

:func:`run` hands each call of :func:`~spikevision.neuron.functional.lif_multistep`
to the first kernel of :data:`KERNELS` that supports it (the
:class:`~spikevision.neuron.kernel.NeuronKernel` contract): the C kernel for
the CPU calls it takes, the Triton kernels for CUDA tensors, the PyTorch
kernel for everything else, including every call traced by ``torch.compile``.
All give the same results to round-off; choosing one is for comparisons,
benchmarks and debugging.

:func:`use_kernels` turns the fused kernels on or off for the length of a
``with`` block and puts the previous choice back on exit, also after an error.
The choice is a :class:`contextvars.ContextVar`, so it holds for the thread
(or asyncio task) that set it and never leaks into another. The environment
variables ``SPIKEVISION_NATIVE=0`` and ``SPIKEVISION_TRITON=0`` turn a kernel
off for a whole process (:meth:`KernelChoice.environment`, read when a call is
dispatched); ``spikevision version`` prints which kernel runs.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch
from torch import Tensor

import spikevision.neuron._native as _native
import spikevision.neuron._torch as _torch
import spikevision.neuron._triton as _triton
from spikevision.neuron.kernel import Constant, KernelChoice, KernelUnavailable, NeuronKernel
from spikevision.neuron.params import NeuronParams

__all__ = ["use_kernels", "run", "current_choice", "select", "KERNELS", "set_native_enabled",
           "set_triton_enabled"]

#: The kernels in the order they are asked; the last supports every call.
KERNELS: tuple[NeuronKernel, ...] = (_native.KERNEL, _triton.KERNEL, _torch.KERNEL)

_CHOICE: ContextVar[KernelChoice] = ContextVar("spikevision_neuron_kernels", default=KernelChoice())


def current_choice() -> KernelChoice:
    """The kernels allowed here: the scoped choice of :func:`use_kernels`, narrowed by the environment."""
    choice, allowed = _CHOICE.get(), KernelChoice.environment()
    return choice if allowed.c and allowed.triton else choice.narrowed(allowed)


def select(x: Tensor, decay: Constant, gain: Constant, p: NeuronParams,
           return_membrane: bool) -> list[NeuronKernel]:
    """The kernels that accept this call, in the order they are tried (the PyTorch kernel last)."""
    if torch.compiler.is_compiling():  # compiled graphs trace the PyTorch kernel (no graph break)
        return [_torch.KERNEL]
    choice = current_choice()
    return [k for k in KERNELS if k.supports(x, decay, gain, p, return_membrane, choice)]


def run(x: Tensor, decay: Constant, gain: Constant, p: NeuronParams,
        return_membrane: bool) -> Tensor | tuple[Tensor, Tensor]:
    """Run the call on the first kernel that supports it; a kernel that cannot launch hands it on."""
    if torch.compiler.is_compiling():  # as in select(), without touching the context variable
        return _torch.KERNEL.apply(x, decay, gain, p, return_membrane)
    choice = current_choice()
    if not choice.broadcast and _native.is_time_broadcast(x):  # the copy the C kernel otherwise avoids
        x = x.contiguous()
    for kernel in KERNELS:  # asked one by one: the first that supports the call runs it
        if kernel.supports(x, decay, gain, p, return_membrane, choice):
            try:
                return kernel.apply(x, decay, gain, p, return_membrane)
            except KernelUnavailable:  # e.g. a Triton launch failed on this GPU (logged, disabled for good)
                continue
    raise AssertionError("unreachable: the PyTorch kernel supports every call")


@contextmanager
def use_kernels(*, c: bool | None = None, triton: bool | None = None, triton_on_cpu: bool | None = None,
                broadcast: bool | None = None) -> Iterator[KernelChoice]:
    """Within the block, use (True) or skip (False) the C kernel and the Triton kernels; None leaves one as it is.

    Args:
        c: the C kernel for the CPU calls it supports.
        triton: the Triton kernels for CUDA tensors.
        triton_on_cpu: also run CPU tensors through the Triton kernels in Triton's interpreter (for
            tests: the source a GPU compiles, checked without one); the C kernel still takes the
            calls it supports unless ``c=False``.
        broadcast: let the C kernel take a time-broadcast input (``u.expand(T, ...)``, stride 0 along
            ``T``) as it is, and give ``u`` its gradient summed over ``T`` directly; False: copy it to
            ``[T, ...]`` first, as before (for comparisons).

    Yields:
        The choice in force inside the block (before the environment narrows it).

    The choice holds for this thread (or asyncio task) only; the environment's
    ``SPIKEVISION_NATIVE=0`` / ``SPIKEVISION_TRITON=0`` still win.

    Example:
        >>> with use_kernels(c=False, triton=False):  # the PyTorch kernel only
        ...     spikes = lif_multistep(x, p)
    """
    changes = {k: bool(v) for k, v in dict(c=c, triton=triton, triton_on_cpu=triton_on_cpu,
                                           broadcast=broadcast).items() if v is not None}
    token = _CHOICE.set(dataclasses.replace(_CHOICE.get(), **changes))
    try:
        yield _CHOICE.get()
    finally:
        _CHOICE.reset(token)


def _set(**change: bool) -> bool:
    (name, value), = change.items()
    previous = _CHOICE.get()
    _CHOICE.set(dataclasses.replace(previous, **{name: bool(value)}))
    return getattr(previous, name)


def set_native_enabled(enabled: bool) -> bool:
    """Use the C kernel where it applies (True, the default) or never; returns the previous value.

    Holds for this thread (or asyncio task) from now on; prefer :func:`use_kernels`, which
    restores the choice after a block. ``SPIKEVISION_NATIVE=0`` disables the C kernel for a
    whole process.
    """
    return _set(c=enabled)


def set_triton_enabled(enabled: bool) -> bool:
    """Use the Triton kernels where they apply (True, the default) or never; returns the previous value.

    Holds for this thread (or asyncio task) from now on; prefer :func:`use_kernels`.
    """
    return _set(triton=enabled)
