"""Dispatch: the first kernel that supports a call runs it; use_kernels scopes the choice and restores it."""

import threading

import pytest
import torch

from spikevision.neuron import NeuronParams, lif_multistep, set_native_enabled, use_kernels
from spikevision.neuron import _native, _torch, _triton, dispatch
from spikevision.neuron.kernel import KernelChoice


def _settings():
    choice = dispatch.current_choice()
    return choice.c, choice.triton


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


def test_the_choice_stays_in_its_thread():
    seen = []
    with use_kernels(c=False):
        worker = threading.Thread(target=lambda: seen.append(_settings()))
        worker.start()
        worker.join()
    assert seen == [(True, True)]
    previous = set_native_enabled(False)
    try:
        assert previous is True and _settings() == (False, True)
    finally:
        set_native_enabled(previous)
    assert _settings() == (True, True)


def test_the_environment_wins(monkeypatch):
    monkeypatch.setenv("SPIKEVISION_NATIVE", "0")
    with use_kernels(c=True):
        assert dispatch.current_choice() == KernelChoice(c=False, triton=True)


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


def test_kernels_in_order_and_the_torch_kernel_takes_everything():
    x, p = torch.randn(3, 2, 5), NeuronParams()
    assert dispatch.KERNELS[-1] is _torch.KERNEL
    with use_kernels(c=False, triton=False):
        assert dispatch.select(x, p.decay, p.gain, p, False) == [_torch.KERNEL]
    with use_kernels(c=False, triton=True, triton_on_cpu=True):
        kernels = dispatch.select(x, p.decay, p.gain, p, True)
    assert kernels[-1] is _torch.KERNEL and _native.KERNEL not in kernels
    assert (_triton.KERNEL in kernels) == _triton.triton_available()
