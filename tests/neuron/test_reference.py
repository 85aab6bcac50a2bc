"""The plain reference loop by hand, and PLIF's constants (the kernels are checked against the loop in test_kernel.py)."""

import math

import pytest
import torch

from spikevision.neuron import PLIF, NeuronParams, Rectangular, lif_reference, plif_constants


def test_lif_reference_by_hand():
    # hard reset to 0, v_th 1, decay 0.5, gain 1, fire at >=: x = 0.6 each step
    p = NeuronParams(decay=0.5, gain=1.0, v_th=1.0, strict=False)
    s, h = lif_reference(torch.full((4, 1), 0.6), p)
    # H: 0.6; 0.9; 1.05 (spike, reset to 0); 0.6
    assert h.flatten().tolist() == pytest.approx([0.6, 0.9, 1.05, 0.6])
    assert s.flatten().tolist() == [0, 0, 1, 0]


def test_lif_reference_soft_reset_rest_potential_and_strict_threshold():
    # soft reset subtracts v_th; v_rest is where the leak decays to and where V starts
    p = NeuronParams(decay=0.5, gain=1.0, v_th=1.0, v_rest=0.25, reset="soft", strict=True)
    s, h = lif_reference(torch.tensor([[0.75], [1.0], [0.0]], dtype=torch.float64), p)
    # H_0 = 0.25 + 0.75 = 1 (not > 1: no spike); H_1 = 0.5 (1 - 0.25) + 0.25 + 1 = 1.625 (spike, V = 0.625);
    # H_2 = 0.5 (0.625 - 0.25) + 0.25 = 0.4375 (all exact in binary)
    assert h.flatten().tolist() == [1.0, 1.625, 0.4375]
    assert s.flatten().tolist() == [0, 1, 0]


def test_lif_reference_gradient_is_the_surrogate():
    # one step: dS/dX = gain * surrogate.grad(H - v_th); rectangular window of width 1, height 1
    p = NeuronParams(decay=0.25, gain=2.0, v_th=0.5, strict=True, surrogate=Rectangular(1.0))
    x = torch.tensor([[0.1, 0.3, 0.6]], dtype=torch.float64, requires_grad=True)
    s, _ = lif_reference(x, p)
    (g,) = torch.autograd.grad(s.sum(), x)
    # H = 0.2, 0.6, 1.2: |H - 0.5| < 0.5 for the first two only
    assert s.flatten().tolist() == [0, 1, 1]
    assert g.flatten().tolist() == pytest.approx([2.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="time-major"):
        lif_reference(torch.zeros(3), p)


@pytest.mark.parametrize("decay_input", [True, False])
def test_plif_constants(decay_input):
    w = torch.tensor(0.3, requires_grad=True)
    decay, gain = plif_constants(w, decay_input)
    inv_tau = 1.0 / (1.0 + math.exp(-0.3))
    assert decay.requires_grad
    assert float(decay.detach()) == pytest.approx(1.0 - inv_tau)
    assert float(gain.detach() if decay_input else gain) == pytest.approx(inv_tau if decay_input else 1.0)
    with pytest.raises(ValueError, match="one scalar"):
        plif_constants(torch.zeros(2))
    # the module's constants as the deploy tools read them: sigmoid of its (float32) w in float64,
    # its other constants kept
    plif = PLIF(init_tau=3.0, decay_input=decay_input, v_th=0.7)
    p = plif.effective_params()
    inv_tau = 1.0 / (1.0 + math.exp(-float(plif.w.detach())))
    assert p.decay == pytest.approx(1.0 - inv_tau, rel=1e-15)
    assert p.gain == pytest.approx(inv_tau if decay_input else 1.0, rel=1e-15)
    assert p.decay == pytest.approx(1.0 - 1.0 / 3.0, rel=1e-6)
    assert p.v_th == 0.7 and plif.p.v_th == 0.7
