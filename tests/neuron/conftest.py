"""Fixtures shared by the neuron tests: which kernel runs, and which one ran."""

import importlib.util
from contextlib import contextmanager

import pytest

from spikevision.neuron import _native, _triton, set_native_enabled


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the forward and backward calls of the C and Triton kernels, so a test knows which one ran."""
    counts = {"c_forward": 0, "c_backward": 0, "triton_forward": 0, "triton_backward": 0}
    for prefix, module in (("c", _native), ("triton", _triton)):
        for name in ("forward", "backward"):
            real = getattr(module, name)

            def spy(*args, _real=real, _key=f"{prefix}_{name}", **kwargs):
                counts[_key] += 1
                return _real(*args, **kwargs)

            monkeypatch.setattr(module, name, spy)
    return counts


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
    native = set_native_enabled(name == "c")
    triton = _triton.set_triton_enabled(name != "torch")
    interpret = _triton.set_cpu_interpreter(name == "triton")
    try:
        yield name
    finally:
        set_native_enabled(native)
        _triton.set_triton_enabled(triton)
        _triton.set_cpu_interpreter(interpret)


@pytest.fixture
def use_kernel(request):
    """Parametrise indirectly with a name of :data:`KERNELS`."""
    with only_kernel(request.param):
        yield request.param
