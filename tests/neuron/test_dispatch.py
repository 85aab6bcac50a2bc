"""use_kernels: the fused kernels switched for one block, and the previous settings back afterwards."""

import pytest
import torch

from spikevision.neuron import NeuronParams, lif_multistep, use_kernels
from spikevision.neuron import _native, _triton


def _settings():
    return _native._enabled, _triton._enabled


def test_use_kernels_restores_the_settings_also_after_an_error():
    before = _settings()
    with use_kernels(c=False, triton=False):
        assert _settings() == (False, False)
        with use_kernels(triton=True):  # None leaves the C kernel as it is
            assert _settings() == (False, True)
        assert _settings() == (False, False)
    assert _settings() == before
    with pytest.raises(RuntimeError, match="inside"):
        with use_kernels(c=False):
            raise RuntimeError("inside")
    assert _settings() == before


def test_use_kernels_picks_the_kernel_that_runs(monkeypatch):
    calls = []
    real = _native.forward
    monkeypatch.setattr(_native, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = torch.randn(3, 2, 5)
    with use_kernels(c=False):
        s_torch = lif_multistep(x, NeuronParams())
    assert calls == []
    if _native.native_available():
        s_c = lif_multistep(x, NeuronParams())
        assert calls == [1] and torch.equal(s_c, s_torch)
