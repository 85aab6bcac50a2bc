"""NeuronParams: the tau form, validation with errors that say what to do."""

import pytest
import torch

from spikevision.neuron import NeuronParams, lif_multistep


def test_from_tau_matches_spikingjelly_form():
    # H = V + (X - (V - v_reset)) / tau
    p = NeuronParams.from_tau(2.0, decay_input=True, v_reset=0.1)
    x = torch.randn(5, 7, dtype=torch.float64)
    v = torch.full_like(x[0], 0.1)
    hs = []
    for t in range(5):
        h = v + (x[t] - (v - 0.1)) / 2.0
        s = (h >= 1.0).double()
        v = h * (1 - s) + 0.1 * s
        hs.append(h)
    _, h_k = lif_multistep(x, p, return_membrane=True)
    torch.testing.assert_close(h_k, torch.stack(hs))


def test_invalid_constants_are_refused():
    with pytest.raises(ValueError, match="reset"):
        NeuronParams(reset="sometimes")
    with pytest.raises(ValueError, match="decay must lie in"):
        NeuronParams(decay=1.5)
    with pytest.raises(ValueError, match="real number"):
        NeuronParams(v_th=float("nan"))
    with pytest.raises(ValueError, match="tau must be"):
        NeuronParams.from_tau(0.5)
    with pytest.raises(TypeError, match="unknown neuron constant"):
        NeuronParams().replace(v_threshold=1.0)
