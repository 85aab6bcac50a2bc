"""The Triton kernels beyond the shared grid: agreement with the C kernel, 16-bit inputs, dispatch and fallbacks.

The reference grid (every kernel, the Triton one included) is
``test_kernel.py``; there and here the Triton kernels run on CPU tensors in
Triton's interpreter (``use_kernels(triton_on_cpu=True)``), which executes the same kernel source a GPU compiles.
``test_kernels_compile_for_gpus`` compiles that source for Hopper and Ampere
without a GPU, which catches what the interpreter does not check (types of
loop-carried values, constexpr branches). Tests named ``*cuda*`` need a GPU
(``bench/gpu_check.sh`` runs them) and are skipped here.
"""

import importlib.util
import inspect
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from spikevision.neuron import (
    ATan,
    NeuronParams,
    Rectangular,
    Sigmoid,
    Triangle,
    lif_multistep,
    lif_reference,
    plif_multistep,
)
from spikevision.neuron import _triton, dispatch

from neuron_kernels import (CHARGES, RESETS, SURROGATES, check_against_reference, inputs,  # tests/neuron on sys.path
                            only_kernel)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (bench/gpu_check.sh)")
REPO = Path(__file__).resolve().parents[2]

# one configuration per surrogate and reset kind; the first two keep the 2-bit code
AGREEMENT = {
    "ms_resnet": NeuronParams(decay=0.25, gain=1.0, v_th=0.5, strict=True, surrogate=Rectangular(1.0)),
    "rect_soft": NeuronParams(decay=0.5, gain=0.5, reset="soft", detach_reset=False, surrogate=Rectangular(1.0)),
    "sigmoid": NeuronParams(surrogate=Sigmoid(4.0)),
    "atan_soft": NeuronParams(decay=0.75, gain=1.0, reset="soft", detach_reset=False, surrogate=ATan(2.0)),
    "triangle_none": NeuronParams(decay=0.5, gain=1.0, v_th=0.8, reset="none", surrogate=Triangle(2.0, 0.3)),
    "hard_attached": NeuronParams(decay=0.5, gain=0.5, v_reset=-0.2, v_rest=-0.2, detach_reset=False,
                                  surrogate=Rectangular(1.0)),
}


def _run(kernel, p, x, g):
    """Spikes, input gradient and the saved state (the code, or H as one [T, ...] tensor) of one kernel."""
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with only_kernel(kernel):
        xi = x.detach().clone().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            s = lif_multistep(xi, p)
        gx = torch.autograd.grad((s * g).sum(), xi)[0]
    codes = [t for t in saved if t.dtype == torch.int8]
    state = codes[0] if codes else torch.stack([t for t in saved if t is not xi]).reshape(x.shape)
    return s, gx, state


@pytest.mark.parametrize("name", list(AGREEMENT))
def test_agrees_with_the_c_kernel_on_the_same_inputs(name, kernel_calls):
    # float32, three programs of 1024 neurons with a ragged last one; T = 9 ends in a part-filled code byte.
    # The kernels share the operation order, so spikes, the saved state and (without exp, whose last bit
    # may differ between libm and NumPy) the gradients agree bit for bit.
    p = AGREEMENT[name]
    gen = torch.Generator().manual_seed(20)
    x = torch.randn(9, 3, 1000, generator=gen) * 0.8 + 0.4
    g = torch.randn(x.shape, generator=gen)
    s_c, gx_c, state_c = _run("c", p, x, g)
    s_t, gx_t, state_t = _run("triton", p, x, g)
    assert kernel_calls["c_forward"] == 1 and kernel_calls["triton_forward"] == 1
    assert torch.equal(s_c, s_t)
    assert state_c.dtype == state_t.dtype and torch.equal(state_c, state_t)
    if isinstance(p.surrogate, Sigmoid):
        torch.testing.assert_close(gx_t, gx_c, rtol=1e-5, atol=1e-6)
    else:
        assert torch.equal(gx_c, gx_t)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("surrogate", [Rectangular(1.0), Sigmoid(4.0)], ids=lambda s: s.name)
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_low_precision_runs_in_float32(dtype, surrogate, reset, kernel_calls):
    # 16-bit inputs and gradients, float32 recurrence: the spikes of the float32 loop on the same
    # (upcast) inputs, gradients within one unit in the last place of the 16-bit result (the
    # interpreter rounds float32 to bfloat16 by truncation, a GPU to nearest)
    p = NeuronParams(decay=0.25, gain=1.0, v_th=0.5, reset=reset, strict=True, surrogate=surrogate)
    gen = torch.Generator().manual_seed(21)
    x = (torch.randn(9, 4, 33, generator=gen) * 0.6 + 0.4).to(dtype).requires_grad_(True)
    g = torch.randn(x.shape, generator=gen).to(dtype)
    with only_kernel("triton"):
        s = lif_multistep(x, p)
        gx = torch.autograd.grad((s * g).sum(), x)[0]
    assert kernel_calls["triton_forward"] == 1
    x_ref = x.detach().float().requires_grad_(True)
    s_ref, _ = lif_reference(x_ref, p)
    gx_ref = torch.autograd.grad((s_ref * g.float()).sum(), x_ref)[0]
    assert s.dtype == gx.dtype == dtype
    assert torch.equal(s.float(), s_ref.detach())
    torch.testing.assert_close(gx.float(), gx_ref, rtol=torch.finfo(dtype).eps, atol=1e-6)


@pytest.mark.parametrize("p,per_neuron", [
    (AGREEMENT["ms_resnet"], lambda T: -(-T // 4)),  # the 2-bit code, as for float32
    (AGREEMENT["sigmoid"], lambda T: 4 * T),  # H in float32, so backward sees the forward's spikes
])
def test_bytes_saved_for_16_bit_inputs(p, per_neuron):
    x = torch.randn(6, 8, 16, dtype=torch.bfloat16, requires_grad=True)
    sizes = {}

    def pack(t):
        sizes[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with only_kernel("triton"), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lif_multistep(x, p)
    assert sum(sizes.values()) == per_neuron(6) * 8 * 16


def test_plif_16_bit_gradient_of_the_time_constant(kernel_calls):
    p = NeuronParams(surrogate=ATan(2.0), reset="soft")
    x = inputs(dtype=torch.float32, seed=22)
    w = torch.tensor(0.3, requires_grad=True)
    with only_kernel("triton"):
        s = plif_multistep(x.to(torch.bfloat16), w, p)
        gw = torch.autograd.grad(s.float().sum(), w)[0]
    assert kernel_calls["triton_backward"] == 1 and gw.dtype == torch.float32
    w_ref = w.detach().clone().requires_grad_(True)
    inv_tau = torch.sigmoid(w_ref.to(torch.bfloat16)).float()  # as plif_multistep rounds it
    s_ref, _ = lif_reference(x.detach().to(torch.bfloat16).float(), p, decay=1 - inv_tau, gain=inv_tau)
    gw_ref = torch.autograd.grad(s_ref.sum(), w_ref)[0]
    # the gradients of decay and gain reach w through bfloat16 (the dtype plif_multistep gave them)
    torch.testing.assert_close(gw, gw_ref, rtol=2e-2, atol=1e-3)


# ---------------------------------------------------------------------------
# dispatch and fallbacks
# ---------------------------------------------------------------------------


def _fake(device: str, dtype: torch.dtype = torch.float32):
    """What supports() looks at, for a device this machine may not have."""
    return types.SimpleNamespace(device=torch.device(device), dtype=dtype)


def _takes(x, p=NeuronParams()) -> bool:
    """Whether the dispatcher would hand this call to the Triton kernels."""
    return _triton.KERNEL in dispatch.select(x, p.decay, p.gain, p, False)


def test_triton_kernels_load_where_triton_is_installed():
    # a kernel module that stops importing must fail here, not silently hand CUDA calls to PyTorch
    if importlib.util.find_spec("triton") is None:
        pytest.skip("Triton is not installed")
    assert _triton.triton_available(), _triton.triton_status()
    assert _triton.triton_status().startswith("Triton kernel (triton ")


def test_dispatch_rules(monkeypatch):
    for dtype in _triton.DTYPES:
        assert _takes(_fake("cuda", dtype))
    assert not _takes(_fake("cpu"))  # CPU tensors: C or PyTorch, unless the interpreter is asked for

    class SteeperSigmoid(Sigmoid):  # a subclass may change grad(): the kernel must not claim it
        pass

    assert not _takes(_fake("cuda"), NeuronParams(surrogate=SteeperSigmoid()))
    with only_kernel("torch"):
        assert not _takes(_fake("cuda"))
    with only_kernel("triton"):
        assert _takes(_fake("cpu"))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not _takes(_fake("cuda"))  # torch.compile traces the PyTorch kernel


def test_cpu_calls_never_take_triton_by_default(kernel_calls):
    x = inputs()
    lif_multistep(x.to(torch.bfloat16), NeuronParams())  # not the C kernel's: PyTorch, not the interpreter
    lif_multistep(x, NeuronParams(), return_membrane=True)
    assert kernel_calls["triton_forward"] == 0


def test_falls_back_when_triton_does_not_import(monkeypatch, kernel_calls):
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` raises ImportError
    monkeypatch.setattr(_triton, "_status", None)
    assert not _triton.triton_available()
    assert _triton.triton_status().startswith("PyTorch kernel (Triton not importable")
    with only_kernel("triton"):
        assert not _takes(_fake("cuda"))
        check_against_reference(NeuronParams(surrogate=Sigmoid(4.0)), inputs())
    assert kernel_calls["triton_forward"] == 0


def test_disabled_by_environment(monkeypatch, kernel_calls):
    monkeypatch.setenv("SPIKEVISION_TRITON", "0")
    monkeypatch.setattr(_triton, "_status", None)
    assert _triton.triton_status() == "PyTorch kernel (SPIKEVISION_TRITON=0)"
    with only_kernel("triton"):
        check_against_reference(NeuronParams(surrogate=Sigmoid(4.0)), inputs())
    assert kernel_calls["triton_forward"] == 0


def test_a_failed_launch_on_a_device_falls_back_for_good(monkeypatch, caplog):
    # as if ptxas rejected the kernel on a GPU: logged once, the status says why, PyTorch runs from then on
    class Broken:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                raise RuntimeError("PTX .version 9.9 does not support .target sm_200")
            return launch

    monkeypatch.setattr(_triton, "_status", None)
    monkeypatch.setattr(_triton, "_kernel_pair", lambda interpret: (Broken(), Broken()))
    monkeypatch.setattr(_triton, "_interprets", lambda device: False)
    with only_kernel("triton"), caplog.at_level("WARNING"):
        check_against_reference(NeuronParams(surrogate=Sigmoid(4.0)), inputs())
        assert "failed" in _triton.triton_status() and "sm_200" in _triton.triton_status()
        assert not _takes(_fake("cuda"))
    assert "PyTorch implementation" in caplog.text


def test_the_interpreter_does_not_hide_kernel_errors(monkeypatch):
    class Broken:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                raise RuntimeError("a bug in the kernel")
            return launch

    monkeypatch.setattr(_triton, "_kernel_pair", lambda interpret: (Broken(), Broken()))
    with only_kernel("triton"), pytest.raises(RuntimeError, match="a bug in the kernel"):
        lif_multistep(inputs(), NeuronParams())


@pytest.mark.parametrize("kind", ["lif", "plif"])
def test_torch_compile_falls_back_to_the_torch_kernel(kind, kernel_calls):
    # compiled graphs trace the PyTorch kernel (no graph break); eager calls run Triton; same results
    torch._dynamo.reset()
    p = NeuronParams(decay=0.25, gain=1.0, v_th=0.5, strict=True, surrogate=Rectangular(1.0))

    def fn(x, w):
        return plif_multistep(x, w, p) if kind == "plif" else lif_multistep(x * w, p)

    x = (torch.randn(4, 3, 5) + 0.5).requires_grad_(True)
    w = torch.tensor(1.2, requires_grad=True)
    with only_kernel("triton"):
        s_c = torch.compile(fn, backend="aot_eager", fullgraph=True)(x, w)
        grads_c = torch.autograd.grad(s_c.sum(), (x, w))
        assert kernel_calls["triton_forward"] == 0
        s_e = fn(x, w)
        grads_e = torch.autograd.grad(s_e.sum(), (x, w))
        assert kernel_calls["triton_forward"] == 1
    assert torch.equal(s_c, s_e)
    for a, b in zip(grads_c, grads_e):
        torch.testing.assert_close(a, b)


def test_version_names_the_cuda_kernel(capsys):
    from spikevision.cli import main

    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert f"CUDA neurons: {_triton.triton_status()}" in out


# ---------------------------------------------------------------------------
# the compiled kernels, without a GPU
# ---------------------------------------------------------------------------

_TRITON_TYPES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32", torch.float64: "fp64",
                 torch.int8: "i8"}

FORWARD_CASES = [  # (input dtype, reset, strict, keep)
    (torch.float32, "hard", True, "code"),
    (torch.bfloat16, "soft", False, "h"),
    (torch.float64, "none", True, "code"),
    (torch.float16, "hard", False, "nothing"),
]
BACKWARD_CASES = [  # (input dtype, NeuronParams, compact, grad_h, plif)
    (torch.float32, AGREEMENT["ms_resnet"], True, False, False),
    (torch.bfloat16, AGREEMENT["rect_soft"], True, False, False),
    (torch.float32, AGREEMENT["sigmoid"], False, True, False),
    (torch.float64, AGREEMENT["atan_soft"], False, False, True),
    (torch.float16, AGREEMENT["triangle_none"], False, True, True),
    (torch.float32, AGREEMENT["hard_attached"], False, False, True),
]


def _compile(fn, args, constants, arch):
    """Compile a kernel for ``sm_<arch>`` with the launcher's own arguments, as a GPU would on first launch."""
    import triton
    from triton.backends.compiler import GPUTarget

    names = list(inspect.signature(fn).parameters)
    signature, constexprs = {}, dict(constants)
    for name, arg in zip(names, args):
        if arg is None:
            signature[name], constexprs[name] = "constexpr", None
        elif isinstance(arg, torch.Tensor):
            signature[name] = "*" + _TRITON_TYPES[arg.dtype]
        else:
            signature[name] = "i32" if -2**31 <= arg < 2**31 else "i64"
    signature.update({name: "constexpr" for name in constants})
    src = triton.compiler.ASTSource(fn=triton.jit(fn), signature=signature, constexprs=constexprs)
    options = dict(_triton.LAUNCH_OPTIONS)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)


def _needs_nvidia_backend():
    triton = pytest.importorskip("triton")
    try:
        from triton.backends import backends
    except ImportError:
        pytest.skip("this Triton has no backend registry")
    if "nvidia" not in backends:
        pytest.skip("Triton's NVIDIA backend is not installed")
    return triton


@pytest.mark.parametrize("arch", [90, 80])
@pytest.mark.parametrize("case", range(len(FORWARD_CASES)))
def test_kernels_compile_for_gpus_forward(case, arch):
    _needs_nvidia_backend()
    from spikevision.neuron import _triton_kernels

    dtype, reset, strict, keep = FORWARD_CASES[case]
    if arch == 80 and case > 0:
        pytest.skip("one variant for Ampere is enough")
    p = NeuronParams(reset=reset, strict=strict, surrogate=Rectangular(1.0))
    x = torch.empty(5, 7, dtype=dtype)
    params = torch.empty(7, dtype=_triton.compute_dtype(dtype))
    h = torch.empty(5, 7, dtype=params.dtype) if keep == "h" else None
    code = torch.empty(2, 7, dtype=torch.int8) if keep == "code" else None
    args, constants = _triton.forward_arguments(x, torch.empty_like(x), h, code, params, p)
    compiled = _compile(_triton_kernels.lif_forward, args, constants, arch)
    assert compiled.asm.get("cubin")


@pytest.mark.parametrize("case", range(len(BACKWARD_CASES)))
def test_kernels_compile_for_gpus_backward(case):
    _needs_nvidia_backend()
    from spikevision.neuron import _triton_kernels

    dtype, p, compact, grad_h, plif = BACKWARD_CASES[case]
    cdt = _triton.compute_dtype(dtype)
    x = torch.empty(5, 7, dtype=dtype)
    args, constants = _triton.backward_arguments(
        x, x if grad_h else None, None if compact else torch.empty(5, 7, dtype=cdt),
        torch.empty(2, 7, dtype=torch.int8) if compact else None, x if plif else None,
        torch.empty(7, dtype=cdt), torch.empty_like(x), torch.empty(14, dtype=cdt) if plif else None,
        p, plif, plif)
    compiled = _compile(_triton_kernels.lif_backward, args, constants, 90)
    assert compiled.asm.get("cubin")


# ---------------------------------------------------------------------------
# on a GPU (bench/gpu_check.sh)
# ---------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_cuda_reference_grid(dtype, kernel_calls):
    import itertools

    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    for charge, reset, strict, surrogate, detach in itertools.product(
            CHARGES, range(len(RESETS)), [True, False], SURROGATES, [True, False]):
        p = NeuronParams(**CHARGES[charge], **RESETS[reset], strict=strict, surrogate=surrogate,
                         detach_reset=detach)
        x = inputs(dtype=dtype, shape=(6, 3, 5, 4))
        g = torch.randn(x.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
        xc = x.detach().cuda().requires_grad_(True)
        s = lif_multistep(xc, p)
        gx = torch.autograd.grad((s * g.cuda()).sum(), xc)[0]
        x_ref = x.detach().clone().requires_grad_(True)
        s_ref, _ = lif_reference(x_ref, p)
        gx_ref = torch.autograd.grad((s_ref * g).sum(), x_ref)[0]
        case = f"{charge} {RESETS[reset]} strict={strict} {surrogate} detach={detach}"
        assert torch.equal(s.cpu(), s_ref.detach()), case
        torch.testing.assert_close(gx.cpu(), gx_ref, **tol, msg=lambda m: f"{case}: {m}")
    assert kernel_calls["triton_forward"] == kernel_calls["triton_backward"] == 512


@needs_cuda
@pytest.mark.parametrize("name", list(AGREEMENT))
def test_cuda_agrees_with_the_c_kernel(name, kernel_calls):
    p = AGREEMENT[name]
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(9, 7, 1234, 11, generator=gen) * 0.8 + 0.4  # many programs, a ragged last one
    g = torch.randn(x.shape, generator=gen)
    s_c, gx_c, state_c = _run("c", p, x, g)
    s_t, gx_t, state_t = _run("c", p, x.cuda(), g.cuda())  # CUDA tensors take Triton by default
    assert kernel_calls["triton_forward"] == 1
    assert torch.equal(s_c, s_t.cpu())
    if state_c.dtype == torch.int8:
        assert torch.equal(state_c, state_t.cpu())
    else:  # exp and division are approximate on a GPU: H agrees to round-off, spikes exactly
        torch.testing.assert_close(state_t.cpu(), state_c, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gx_t.cpu(), gx_c, rtol=1e-5, atol=1e-6)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_cuda_low_precision_and_plif(dtype, kernel_calls):
    p = NeuronParams(surrogate=ATan(2.0), reset="soft", detach_reset=False)
    x = inputs(dtype=torch.float32, shape=(8, 4, 300), seed=23).detach()
    w = torch.tensor(0.3, device="cuda", requires_grad=True)
    xc = x.to(dtype).cuda().requires_grad_(True)
    s = plif_multistep(xc, w, p)
    gx, gw = torch.autograd.grad(s.float().sum(), (xc, w))
    assert kernel_calls["triton_forward"] == 1 and s.dtype == gx.dtype == dtype
    x_ref = xc.detach().cpu().float().requires_grad_(True)
    w_ref = w.detach().cpu().requires_grad_(True)
    inv_tau = torch.sigmoid(w_ref.to(dtype)).float()  # the kernel gets sigmoid(w) rounded to the input dtype
    s_ref, _ = lif_reference(x_ref, p, decay=1 - inv_tau, gain=inv_tau)
    gx_ref, gw_ref = torch.autograd.grad(s_ref.sum(), (x_ref, w_ref))
    assert torch.equal(s.cpu().float(), s_ref.detach())
    torch.testing.assert_close(gx.cpu().float(), gx_ref, rtol=2 * torch.finfo(dtype).eps, atol=1e-5)
    torch.testing.assert_close(gw.cpu(), gw_ref, rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------------------
# the GPU check script
# ---------------------------------------------------------------------------


def test_gpu_check_script_runs_its_cpu_parts(tmp_path):
    # the script the first lent GPU runs: here on CPU with tiny sizes, so a broken step shows up now
    env = {**os.environ, "PYTHON": sys.executable}
    out = tmp_path / "gpu"
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.md").read_text()
    assert "| step | status |" in summary and "FAILED" not in summary, summary
    assert "spikevision" in (out / "neuron.md").read_text()
    assert "spikevision" in (out / "train_step.md").read_text()
    assert "passed" in (out / "tests.log").read_text()
