"""The C kernel (``neuron/_lif_cpu.c``): its build, threads and fallbacks, and agreement with the PyTorch kernel.

The reference grid every kernel passes (this one included) is
``test_kernel.py::test_matches_reference_loop``; the reference is
``spikevision.neuron.lif_reference``: autograd of the update equations, sharing
no code with any kernel.
"""

import shutil

import pytest
import torch

from spikevision.neuron import (
    NeuronParams, Rectangular, Sigmoid, lif_multistep, lif_reference, native_status, use_kernels,
)
from spikevision.neuron import _native

from neuron_kernels import check_against_reference, inputs  # tests/neuron is on sys.path


def _have_compiler() -> bool:
    import os
    import shlex

    return shutil.which(shlex.split(os.environ.get("CC") or "cc")[0]) is not None


needs_native = pytest.mark.skipif(not _have_compiler(), reason="no C compiler: the PyTorch kernel runs instead")


@pytest.fixture
def calls(monkeypatch):
    """Counts the C kernel's forward and backward calls, so a test knows which kernel ran."""
    counts = {"forward": 0, "backward": 0}
    for name in counts:
        real = getattr(_native, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            counts[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(_native, name, spy)
    return counts


def test_kernel_builds_where_a_compiler_exists():
    # a C file that stops compiling must fail here, not silently fall back to PyTorch
    if not _have_compiler():
        pytest.skip("no C compiler on this machine")
    assert _native.native_available(), native_status()
    assert native_status().startswith("C kernel")


def _both_kernels(p, x, g):
    """(spikes, input gradient, tensors saved for backward) from the C kernel and from the PyTorch kernel."""
    out = []
    for native in (True, False):
        with use_kernels(c=native):
            saved = []

            def pack(t):
                saved.append(t)
                return t

            xi = x.detach().clone().requires_grad_(True)
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                s = lif_multistep(xi, p)
            out.append((s, torch.autograd.grad((s * g).sum(), xi)[0], saved))
    return out


@needs_native
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("p", [
    NeuronParams(decay=0.25, gain=1.0, v_th=0.5, strict=True, surrogate=Rectangular(1.0)),  # MS-ResNet
    NeuronParams(surrogate=Sigmoid(4.0)),  # spiking MLP
], ids=["ms_resnet", "sigmoid"])
def test_float32_agrees_with_the_torch_kernel_across_threads(p, threads, calls):
    # 7 x 1234 x 11 elements per step: many blocks of 256, a ragged last block, and
    # enough work (T N >= 2^16) for the call to be split over two threads
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(2)
        x = torch.randn(9, 7, 1234, 11, generator=gen) * 0.8 + 0.4
        g = torch.randn(x.shape, generator=gen)
        (s_c, gx_c, saved_c), (s_t, gx_t, saved_t) = _both_kernels(p, x, g)
    finally:
        torch.set_num_threads(previous)
    assert calls["forward"] == 1
    assert torch.equal(s_c, s_t)
    torch.testing.assert_close(gx_c, gx_t, rtol=1e-5, atol=1e-6)
    if isinstance(p.surrogate, Rectangular):  # the same 2-bit code, byte for byte
        assert torch.equal(saved_c[-1], saved_t[-1]) and saved_c[-1].dtype == torch.int8


@needs_native
def test_inference_keeps_nothing_and_matches(calls):
    p = NeuronParams(decay=0.25, gain=1.0, v_th=0.5, strict=True, surrogate=Rectangular(1.0))
    x = inputs(shape=(5, 4, 7))
    with torch.no_grad():
        s = lif_multistep(x, p)
    s_ref, _ = lif_reference(x.detach(), p)
    assert torch.equal(s, s_ref)
    assert calls["forward"] == 1 and not s.requires_grad


def test_falls_back_to_torch_when_the_build_fails(monkeypatch, tmp_path, calls):
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    monkeypatch.setenv("SPIKEVISION_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_native._LIBRARY, "_status", None)
    monkeypatch.setattr(_native._LIBRARY, "_lib", None)
    assert not _native.native_available()
    assert "could not be built" in native_status()
    check_against_reference(NeuronParams(surrogate=Sigmoid(4.0)), inputs())
    assert calls == {"forward": 0, "backward": 0}
    assert list(tmp_path.iterdir()) == []  # no half-written library left behind


def test_disabled_by_environment(monkeypatch, calls):
    monkeypatch.setenv("SPIKEVISION_NATIVE", "0")
    monkeypatch.setattr(_native._LIBRARY, "_status", None)
    monkeypatch.setattr(_native._LIBRARY, "_lib", None)
    assert native_status() == "PyTorch kernel (SPIKEVISION_NATIVE=0)"
    lif_multistep(inputs(), NeuronParams())
    assert calls["forward"] == 0


def test_torch_kernel_for_what_the_c_kernel_does_not_cover(calls):
    x = inputs()
    lif_multistep(x, NeuronParams(), return_membrane=True)  # the membrane output
    lif_multistep(x.to(torch.bfloat16), NeuronParams())  # other dtypes
    assert calls["forward"] == 0


@needs_native
def test_builds_in_a_private_folder_when_the_cache_is_not_writable(monkeypatch, tmp_path):
    from spikevision import native_build

    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the cache folder should be: mkdir fails
    monkeypatch.setenv("SPIKEVISION_CACHE_DIR", str(blocked / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(native_build.tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(native_build, "_private", None)  # this process's own folder (mkdtemp), never a shared one
    monkeypatch.setattr(_native._LIBRARY, "_status", None)
    monkeypatch.setattr(_native._LIBRARY, "_lib", None)
    assert _native.native_available(), native_status()
    assert str(tmp_path / "tmp" / "spikevision-build-") in native_status()


def _spike_count_in_child(queue):
    # torch's own OpenMP ops hang in a forked child of a parent that used them (which
    # is why DataLoader workers run one torch thread): only the C kernel sees 2 threads
    torch.set_num_threads(1)
    x = torch.linspace(-1.0, 3.0, 8 * 70000).reshape(8, 70000)
    torch.set_num_threads(2)
    s = lif_multistep(x, NeuronParams())
    torch.set_num_threads(1)
    queue.put(s.sum().item())


@needs_native
def test_forked_child_runs_the_threaded_kernel():
    # the parent's worker threads do not exist in a forked child (DataLoader workers): the child makes its own
    import multiprocessing as mp

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.linspace(-1.0, 3.0, 8 * 70000).reshape(8, 70000)
        expected = lif_multistep(x, NeuronParams()).sum().item()  # starts the parent's pool
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_spike_count_in_child, args=(queue,))
        child.start()
        got = queue.get(timeout=300)
        child.join(timeout=300)
    finally:
        torch.set_num_threads(previous)
    assert child.exitcode == 0 and got == expected
    s_ref, _ = lif_reference(x, NeuronParams())
    assert got == s_ref.sum().item()


def test_surrogate_subclass_takes_the_torch_kernel(calls):
    class SteeperSigmoid(Sigmoid):  # same name, other gradient: the C code must not claim it
        def grad(self, x):
            return 2.0 * super().grad(x)

        def unscaled_grad_(self, x):
            return self.grad(x)

        @property
        def grad_scale(self):
            return 1.0

    p = NeuronParams(surrogate=SteeperSigmoid(4.0))
    x = inputs()
    gx = torch.autograd.grad(lif_multistep(x, p).sum(), x)[0]
    x_ref = x.detach().clone().requires_grad_(True)
    s_ref, _ = lif_reference(x_ref, NeuronParams(surrogate=Sigmoid(4.0)), decay=p.decay, gain=p.gain)
    torch.testing.assert_close(gx, 2.0 * torch.autograd.grad(s_ref.sum(), x_ref)[0], rtol=1e-10, atol=1e-12)
    assert calls["forward"] == 0
