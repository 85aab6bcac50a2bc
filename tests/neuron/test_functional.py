"""lif_multistep by hand: thresholds at equality, a hand-computed MS-ResNet neuron, float32 round-off.

The reference grid every kernel runs through (against autograd of the plain loop
:func:`spikevision.neuron.lif_reference`) is ``test_kernel.py``.
"""

import torch

from spikevision.neuron import NeuronParams, Rectangular, lif_multistep

from neuron_kernels import check_against_reference, inputs  # tests/neuron is on sys.path


def test_float32_gradients_match_to_roundoff():
    p = NeuronParams(decay=0.25, gain=1.0, v_th=0.5, strict=True, surrogate=Rectangular(1.0))
    x = inputs(dtype=torch.float32, shape=(8, 16, 32))
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    check_against_reference(p, x, g, rtol=1e-5, atol=1e-6)


def test_strict_and_nonstrict_threshold_differ_at_equality():
    x = torch.tensor([[1.0], [0.0]])  # H_0 = 1.0 exactly with gain 1 and v_th 1
    ge = lif_multistep(x, NeuronParams(decay=0.0, gain=1.0, v_th=1.0, strict=False))
    gt = lif_multistep(x, NeuronParams(decay=0.0, gain=1.0, v_th=1.0, strict=True))
    assert ge[0, 0] == 1.0 and gt[0, 0] == 0.0


def test_hand_computed_ms_resnet_neuron():
    # u_t = 0.25 u_{t-1} (1 - s_{t-1}) + x_t, spike if u > 0.5
    p = NeuronParams(decay=0.25, gain=1.0, v_th=0.5, strict=True, surrogate=Rectangular(1.0))
    x = torch.tensor([0.4, 0.4, 0.4, 0.6]).reshape(4, 1)
    s, h = lif_multistep(x, p, return_membrane=True)
    # u0=0.4 ; u1=0.1+0.4=0.5 (not > 0.5) ; u2=0.125+0.4=0.525 spike ; u3=0+0.6 spike
    torch.testing.assert_close(h.flatten(), torch.tensor([0.4, 0.5, 0.525, 0.6]))
    assert s.flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
