"""What the neuron tests share (not a test file): the switch that sends every call to one kernel, and the grid.

The grid (charge forms, resets, surrogates) and :func:`inputs` are what every kernel is run through
against :func:`spikevision.neuron.lif_reference` (``test_kernel.py``), and what the other kernel
tests draw their cases from.
"""

import importlib.util
from contextlib import contextmanager

import pytest
import torch

from spikevision.neuron import ATan, Rectangular, Sigmoid, Triangle, lif_multistep, lif_reference, use_kernels

KERNELS = ("c", "torch", "triton")

SURROGATES = [Sigmoid(4.0), ATan(2.0), Rectangular(1.0), Triangle(width=2.0, peak=0.3)]
CHARGES = {
    "tau_decay_input": dict(decay=0.5, gain=0.5),
    "tau_no_decay_input": dict(decay=0.75, gain=1.0),
    "decay_form": dict(decay=0.25, gain=1.0),
    "if": dict(decay=1.0, gain=1.0),
}
RESETS = [
    dict(reset="hard"),
    dict(reset="hard", v_reset=-0.2, v_rest=-0.2),
    dict(reset="soft"),
    dict(reset="none"),
]


def inputs(dtype=torch.float64, shape=(6, 3, 5, 4), seed=0):
    """Input currents ``[T, B, ...]`` around the threshold (a leaf that requires grad)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=dtype) * 1.2 + 0.4).requires_grad_(True)


def check_against_reference(p, x, g=None, *, return_membrane=False, rtol=1e-10, atol=1e-12):
    """``lif_multistep(x, p)`` against autograd of the plain loop: spikes equal, ``dL/dx`` of ``sum(S * g)``
    to round-off (``g`` of ones by default); with ``return_membrane`` the spikes come from that call form."""
    g = torch.ones_like(x) if g is None else g
    s = lif_multistep(x, p, return_membrane=True)[0] if return_membrane else lif_multistep(x, p)
    gx = torch.autograd.grad((s * g).sum(), x)[0]
    x_ref = x.detach().clone().requires_grad_(True)
    s_ref, _ = lif_reference(x_ref, p)
    gx_ref = torch.autograd.grad((s_ref * g).sum(), x_ref)[0]
    assert torch.equal(s, s_ref.detach())
    torch.testing.assert_close(gx, gx_ref, rtol=rtol, atol=atol)


@contextmanager
def only_kernel(name: str):
    """Route every call to one kernel where it applies: ``c`` (the CPU default: C kernel, else PyTorch),
    ``torch`` (the PyTorch kernel alone), ``triton`` (the Triton kernels, on CPU tensors in Triton's
    interpreter; the C kernel off)."""
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; choose from {KERNELS}")
    if name == "triton" and importlib.util.find_spec("triton") is None:
        pytest.skip("Triton is not installed (it comes with torch's Linux wheels)")
    with use_kernels(c=name == "c", triton=name != "torch", triton_on_cpu=name == "triton"):
        yield name
