"""Surrogate gradients: the kernel helpers against the plain formulas and autograd."""

import pytest
import torch

from spikevision.neuron import ATan, Rectangular, Sigmoid, Surrogate, Triangle

SURROGATES = [Sigmoid(4.0), Sigmoid(2.5), ATan(2.0), Rectangular(1.0), Rectangular(0.6), Triangle(2.0, 0.3)]


@pytest.mark.parametrize("sg", SURROGATES, ids=repr)
def test_unscaled_grad_times_scale_is_grad(sg):
    x = torch.linspace(-2.0, 2.0, 401, dtype=torch.float64)
    scratch = x.clone()
    g = sg.unscaled_grad_(scratch) * sg.grad_scale
    torch.testing.assert_close(g, sg.grad(x), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("sg", SURROGATES, ids=repr)
def test_grad_is_derivative_of_primitive(sg):
    # points away from the kinks of the piecewise surrogates
    x = (torch.linspace(-1.9, 1.9, 97, dtype=torch.float64) + 1e-3).requires_grad_(True)
    (d,) = torch.autograd.grad(sg.primitive(x).sum(), x)
    torch.testing.assert_close(d, sg.grad(x.detach()), rtol=1e-10, atol=1e-12)


def test_custom_surrogate_needs_only_grad():
    class Box(Surrogate):
        def grad(self, x):
            return (x.abs() < 0.25).to(x.dtype) * 2.0

    x = torch.linspace(-1, 1, 11)
    assert Box().grad_scale == 1.0
    torch.testing.assert_close(Box().unscaled_grad_(x.clone()), Box().grad(x))
