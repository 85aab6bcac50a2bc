"""Switches that send every neuron call to one kernel (not a test file; imported by the neuron tests)."""

import importlib.util
from contextlib import contextmanager

import pytest

from spikevision.neuron import _triton, use_kernels

KERNELS = ("c", "torch", "triton")


@contextmanager
def only_kernel(name: str):
    """Route every call to one kernel where it applies: ``c`` (the CPU default: C kernel, else PyTorch),
    ``torch`` (the PyTorch kernel alone), ``triton`` (the Triton kernels, on CPU tensors in Triton's
    interpreter; the C kernel off)."""
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; choose from {KERNELS}")
    if name == "triton" and importlib.util.find_spec("triton") is None:
        pytest.skip("Triton is not installed (it comes with torch's Linux wheels)")
    with use_kernels(c=name == "c", triton=name != "torch"):
        interpret = _triton.set_cpu_interpreter(name == "triton")
        try:
            yield name
        finally:
            _triton.set_cpu_interpreter(interpret)
