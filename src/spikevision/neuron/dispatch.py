"""Which kernel runs a neuron call, and a scoped switch to choose.

:func:`~spikevision.neuron.functional.lif_multistep` picks its kernel per call
(see that module's docstring): the C kernel for the CPU tensors it supports,
the Triton kernels for CUDA tensors, the PyTorch kernel everywhere else. All
give the same results to round-off; choosing one is for comparisons, benchmarks
and debugging. :func:`use_kernels` turns the fused kernels on or off for the
length of a ``with`` block and puts the previous settings back on exit, also
after an error, so no caller leaves a process-wide switch flipped. The
environment variables ``SPIKEVISION_NATIVE=0`` and ``SPIKEVISION_TRITON=0`` turn
them off for a whole process; ``spikevision version`` prints which one runs.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from spikevision.neuron import _native, _triton

__all__ = ["use_kernels"]


@contextmanager
def use_kernels(*, c: bool | None = None, triton: bool | None = None) -> Iterator[None]:
    """Within the block, use (True) or skip (False) the C kernel and the Triton kernels; None leaves one as it is.

    The setting is process-wide while the block runs (not per thread).

    Example:
        >>> with use_kernels(c=False, triton=False):  # the PyTorch kernel only
        ...     spikes = lif_multistep(x, p)
    """
    previous_c = _native.set_native_enabled(c) if c is not None else None
    previous_triton = _triton.set_triton_enabled(triton) if triton is not None else None
    try:
        yield
    finally:
        if previous_c is not None:
            _native.set_native_enabled(previous_c)
        if previous_triton is not None:
            _triton.set_triton_enabled(previous_triton)
