"""The C kernel: ``_lif_cpu.c``, built on first use, called through ctypes.

On CPU, PyTorch runs a multi-step neuron as a dozen whole-tensor ops per time
step; the C kernel does one pass over the sequence. It is compiled once per
machine with the system C compiler (``$CC``, else ``cc``; about half a second,
no PyTorch headers) by :mod:`spikevision.native_build`, the one module that
builds and caches compiled C (a private folder, each library verified by hash
before loading), and loaded with :mod:`ctypes`, which releases the GIL during
the call, so the elements are split over ``torch.get_num_threads()`` threads
(:func:`spikevision.native_build.run_parallel`).

:class:`NativeKernel` supports CPU tensors in float32/float64 with fixed
constants (not PLIF's learned ones), without the membrane output, with a
surrogate the C code implements, outside ``torch.compile`` tracing. Everything
else runs another kernel (:mod:`spikevision.neuron.dispatch`); so does every
call when there is no compiler, the build fails, or ``SPIKEVISION_NATIVE=0``.
:func:`native_status` says which path runs and why.

A time-broadcast input, the same current at every step (stride 0 along ``T``,
as ``u.unsqueeze(0).expand(T, ...)`` gives: MS-ResNet's stem output under
``stem_once``), is read as its one step, never copied to ``[T, ...]``. When it
is exactly an expanded view of a tensor ``u`` (:func:`time_broadcast_base`),
the autograd Function runs on ``u`` itself, so backward too writes only
``dL/du``, the gradient summed over the steps, instead of a ``[T, ...]``
gradient that autograd would then sum. ``use_kernels(broadcast=False)``
restores the copy (:mod:`spikevision.neuron.dispatch`).

The kernel works on the memory as it lies, time outermost: steps that are
channels-last ``[B, C, H, W]`` maps stay channels-last (the spikes, what is kept
for backward and the input gradient come out in the same format), so a
channels-last network needs no conversion at its neurons; any other layout is
copied to contiguous first.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch
from torch import Tensor

from spikevision.native_build import LazyLibrary, run_parallel, split_ranges
from spikevision.neuron.kernel import RESET_CODES, Constant, KernelChoice, is_compact, surrogate_code
from spikevision.neuron.params import NeuronParams

__all__ = ["NativeKernel", "KERNEL", "native_status", "native_available", "forward", "backward",
           "time_broadcast_base"]

SOURCE = Path(__file__).with_name("_lif_cpu.c")
ABI_VERSION = 2
BLOCK = 256  # elements per block in the C code; thread chunks are multiples of it
_FLAGS = ["-O2", "-ftree-vectorize", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC"]
# tried in order: native vector width with glibc's vector exp, then without it, then plain
_VARIANTS = (["-march=native", "-fopenmp-simd", "-DSV_LIBMVEC", "-lmvec"], ["-march=native"], [])
_PARALLEL_MIN = 1 << 16  # neuron-steps below which one thread does the whole call


class _Params(ctypes.Structure):
    _fields_ = [("decay", ctypes.c_double), ("gain", ctypes.c_double), ("v_th", ctypes.c_double),
                ("v_reset", ctypes.c_double), ("v_rest", ctypes.c_double), ("reset", ctypes.c_int),
                ("strict", ctypes.c_int), ("detach_reset", ctypes.c_int), ("surrogate", ctypes.c_int),
                ("sg_a", ctypes.c_double), ("sg_b", ctypes.c_double), ("broadcast", ctypes.c_int)]


def _configure(lib: ctypes.CDLL) -> None:
    for fn_name in ("lif_forward_f32", "lif_forward_f64", "lif_backward_f32", "lif_backward_f64"):
        fn = getattr(lib, fn_name)  # (4 pointers, T, N, lo, hi, params)
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 4 + [ctypes.POINTER(_Params)]


_LIBRARY = LazyLibrary(SOURCE, "lif_cpu", _FLAGS, _VARIANTS, ("lif_abi_version", ABI_VERSION), _configure,
                       loaded="C kernel ({path})",
                       fallback="PyTorch kernel (the C kernel could not be built or loaded: {error}); CPU "
                                "neurons run the slower PyTorch implementation")
_load = _LIBRARY.load


def native_status() -> str:
    """Which implementation CPU neurons use, and why (builds the C kernel if not yet done)."""
    if not KernelChoice.environment().c:
        return "PyTorch kernel (SPIKEVISION_NATIVE=0)"
    return _LIBRARY.status()


def native_available() -> bool:
    """Whether the C kernel is built and loaded (builds it on first call)."""
    return _load() is not None


def _params(p: NeuronParams, decay: float, gain: float, broadcast: bool = False) -> _Params:
    kind, sg_a, sg_b = surrogate_code(p.surrogate)
    return _Params(decay, gain, p.v_th, p.v_reset, p.v_rest, RESET_CODES[p.reset], int(p.strict),
                   int(p.detach_reset), kind, sg_a, sg_b, int(broadcast))


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _steps(h: list[Tensor] | None):
    """A C array of the step tensors' data pointers (kept alive by the caller's list)."""
    return None if h is None else (ctypes.c_void_p * len(h))(*(t.data_ptr() for t in h))


def _run(fn, pointers: list, T: int, N: int, params: _Params) -> None:
    """Call ``fn`` on element ranges (multiples of :data:`BLOCK`), split over torch's intra-op thread count."""
    workers = torch.get_num_threads() if T * N >= _PARALLEL_MIN else 1
    ref = ctypes.byref(params)
    run_parallel([functools.partial(fn, *pointers, T, N, lo, hi, ref) for lo, hi in split_ranges(N, workers, BLOCK)])


def step_format(step: Tensor) -> torch.memory_format:
    """The memory format the kernel keeps for steps like ``step``: channels-last for a 4-D step stored
    so (and not also contiguous), else contiguous."""
    if step.dim() == 4 and not step.is_contiguous() and step.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _empty_steps(T: int, step_shape: torch.Size, fmt: torch.memory_format, dtype: torch.dtype) -> Tensor:
    """``[T, *step_shape]``, time outermost, each step in ``fmt``."""
    if fmt == torch.channels_last:
        B, C, H, W = step_shape
        return torch.empty((T, B, H, W, C), dtype=dtype).permute(0, 1, 4, 2, 3)
    return torch.empty((T, *step_shape), dtype=dtype)


def _time_major(x: Tensor, fmt: torch.memory_format) -> Tensor:
    """``x`` if its steps lie one after another, each in ``fmt``; else a copy laid out so."""
    if x.stride(0) == x[0].numel() and x[0].is_contiguous(memory_format=fmt):
        return x
    return _empty_steps(x.shape[0], x.shape[1:], fmt, x.dtype).copy_(x)


def is_time_broadcast(x: Tensor) -> bool:
    """Whether ``x`` ``[T, ...]`` repeats one dense step (stride 0 along ``T``, ``T > 1``; the step contiguous
    or channels-last)."""
    return (x.dim() >= 2 and x.shape[0] > 1 and x.stride(0) == 0
            and x[0].is_contiguous(memory_format=step_format(x[0])))


def time_broadcast_base(x: Tensor) -> Tensor | None:
    """The contiguous ``u`` of which ``x`` is exactly the view ``u.expand(T, *u.shape)``, else None.

    Found through the view's ``_base`` and checked to cover exactly ``u``'s elements, with the same
    ``requires_grad`` and, if that is set, a graph through ``u`` (a view made under ``no_grad`` is a
    leaf of its own), so autograd of ``u`` is autograd of ``x`` summed over ``T``.
    """
    base = x._base
    if (base is None or not is_time_broadcast(x) or not base.is_contiguous(memory_format=step_format(base))
            or (x.requires_grad and x.is_leaf)):
        return None
    if (base.shape != x.shape[1:] or base.stride() != x.stride()[1:] or base.dtype != x.dtype
            or base.storage_offset() != x.storage_offset() or base.requires_grad != x.requires_grad):
        return None
    return base


def forward(x: Tensor, p: NeuronParams, decay: float, gain: float, keep_h: bool,
            keep_code: bool) -> tuple[Tensor, list[Tensor] | None, Tensor | None]:
    """Spikes, and (if asked) ``H`` as T step tensors and the 2-bit code ``[ceil(T/4), ...]`` int8.

    A time-broadcast ``x`` (:func:`is_time_broadcast`) is read as its one step, without a copy.
    """
    lib = _load()
    broadcast = is_time_broadcast(x)
    fmt = step_format(x[0])
    x = x if broadcast else _time_major(x, fmt)
    T, N = x.shape[0], x[0].numel()
    s = _empty_steps(T, x.shape[1:], fmt, x.dtype)
    h = [torch.empty_like(x[0], memory_format=fmt) for _ in range(T)] if keep_h else None
    code = _empty_steps(-(-T // 4), x.shape[1:], fmt, torch.int8) if keep_code else None
    fn = lib.lif_forward_f32 if x.dtype == torch.float32 else lib.lif_forward_f64
    _run(fn, [_ptr(x), _ptr(s), _steps(h), _ptr(code)], T, N, _params(p, decay, gain, broadcast))
    return s, h, code


def backward(grad_s: Tensor, h: list[Tensor] | None, code: Tensor | None, p: NeuronParams, decay: float,
             gain: float, summed: bool = False) -> Tensor:
    """``dL/dX`` from the spikes' gradient and what :func:`forward` kept (``h`` or ``code``).

    With ``summed``: the gradient of a time-broadcast input's one step, ``dL/dX`` summed over ``T``
    (shape ``grad_s.shape[1:]``), written without a ``[T, ...]`` buffer.
    """
    lib = _load()
    fmt = step_format(code[0] if code is not None else h[0])  # the forward's layout
    grad_s = _time_major(grad_s, fmt)
    T, N = grad_s.shape[0], grad_s[0].numel()
    if summed:
        grad_x = torch.empty(grad_s.shape[1:], dtype=grad_s.dtype, memory_format=fmt)
    else:
        grad_x = _empty_steps(T, grad_s.shape[1:], fmt, grad_s.dtype)
    fn = lib.lif_backward_f32 if grad_x.dtype == torch.float32 else lib.lif_backward_f64
    _run(fn, [_ptr(grad_s), _steps(h), _ptr(code), _ptr(grad_x)], T, N, _params(p, decay, gain, summed))
    return grad_x


class _NativeMultiStep(torch.autograd.Function):
    """The C kernel under autograd: keeps ``H`` as step tensors, or the 2-bit code, for backward.

    With ``steps`` set, ``x`` is one step ``[B, ...]`` repeated ``steps`` times (a time-broadcast
    input, never copied), and backward returns its gradient summed over the steps.
    """

    @staticmethod
    def forward(ctx, x: Tensor, decay: float, gain: float, p: NeuronParams, steps: int | None) -> Tensor:
        needs_grad = ctx.needs_input_grad[0]
        compact = is_compact(p, decay)
        seq = x if steps is None else x.expand(steps, *x.shape)
        s_seq, h_seq, code = forward(seq, p, decay, gain, keep_h=needs_grad and not compact,
                                     keep_code=needs_grad and compact)
        ctx.p, ctx.decay, ctx.gain, ctx.summed = p, decay, gain, steps is not None
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(code, *(h_seq or ()))
        return s_seq

    @staticmethod
    def backward(ctx, grad_s: Tensor | None):
        if grad_s is None:
            return None, None, None, None, None
        code, *h_steps = ctx.saved_tensors
        grad_x = backward(grad_s, h_steps or None, code, ctx.p, ctx.decay, ctx.gain, summed=ctx.summed)
        return grad_x, None, None, None, None


class NativeKernel:
    """The C kernel behind the :class:`~spikevision.neuron.kernel.NeuronKernel` contract."""

    name = "c"

    def status(self) -> str:
        """See :func:`native_status`."""
        return native_status()

    def supports(self, x: Tensor, decay: Constant, gain: Constant, p: NeuronParams, return_membrane: bool,
                 choice: KernelChoice) -> bool:
        """CPU float32/float64, fixed constants, no membrane output, a surrogate of the C code (builds on first use)."""
        return (choice.c and not return_membrane and x.device.type == "cpu"
                and x.dtype in (torch.float32, torch.float64)
                and isinstance(decay, float) and isinstance(gain, float)
                and surrogate_code(p.surrogate) is not None and _load() is not None)

    def apply(self, x: Tensor, decay: Constant, gain: Constant, p: NeuronParams,
              return_membrane: bool) -> Tensor:
        """Spikes under :class:`_NativeMultiStep` (``return_membrane`` is never set: :meth:`supports` refuses it).

        A view ``u.expand(T, ...)`` runs on ``u`` (:func:`time_broadcast_base`): no ``[T, ...]`` copy of the
        input in forward, nor of its gradient in backward.
        """
        base = time_broadcast_base(x)
        if base is not None:
            return _NativeMultiStep.apply(base, decay, gain, p, x.shape[0])
        return _NativeMultiStep.apply(x, decay, gain, p, None)


KERNEL = NativeKernel()
