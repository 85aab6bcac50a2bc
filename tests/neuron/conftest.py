"""Fixtures shared by the neuron tests (the switches that pick a kernel are in neuron_kernels.py)."""

import pytest

from spikevision.neuron import _native, _triton


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

