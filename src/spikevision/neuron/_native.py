"""The fused CPU kernel of ``_lif_cpu.c``: built on first use, called through ctypes.

On CPU, PyTorch runs a multi-step neuron as a dozen whole-tensor ops per time
step; the C kernel does one pass over the sequence. It is compiled once per
machine with the system C compiler (``$CC``, else ``cc``; about half a second,
no PyTorch headers) into the private cache folder of :mod:`spikevision.native_build`
(verified by hash before loading) and loaded with :mod:`ctypes`, which
releases the GIL during the call, so the elements are split over
``torch.get_num_threads()`` Python threads.

Everything degrades to the PyTorch implementation in
:mod:`spikevision.neuron.functional` (same results to round-off, slower on CPU):
no compiler, a failed build, CUDA tensors, ``torch.compile`` tracing, other
dtypes, learnable time constants, or ``SPIKEVISION_NATIVE=0``.
:func:`native_status` says which path runs and why.

Environment:
    ``SPIKEVISION_NATIVE``: ``0`` disables the C kernel.
    ``SPIKEVISION_CACHE_DIR``: where the built library goes (default
    ``$XDG_CACHE_HOME/spikevision``, i.e. ``~/.cache/spikevision``; a private
    folder of this process if that one is unusable).
    ``CC``: the C compiler.
"""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from spikevision.native_build import cache_dir, load_library
from spikevision.native_build import compiled_library as _compiled_library
from spikevision.neuron.surrogate import ATan, Rectangular, Sigmoid, Triangle

if TYPE_CHECKING:
    from spikevision.neuron.functional import NeuronParams

__all__ = ["native_status", "native_available", "set_native_enabled", "forward", "backward", "supports"]

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("_lif_cpu.c")
ABI_VERSION = 1
BLOCK = 256  # elements per block in the C code; thread chunks are multiples of it
_FLAGS = ["-O2", "-ftree-vectorize", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC"]
# tried in order: native vector width with glibc's vector exp, then without it, then plain
_VARIANTS = (["-march=native", "-fopenmp-simd", "-DSV_LIBMVEC", "-lmvec"], ["-march=native"], [])
_PARALLEL_MIN = 1 << 16  # neuron-steps below which one thread does the whole call
_RESETS = {"hard": 0, "soft": 1, "none": 2}
# exact classes only: a subclass may override grad(), which the C code would not see
_SURROGATES = {Rectangular: (0, "width"), Sigmoid: (1, "alpha"), ATan: (2, "alpha"), Triangle: (3, "width")}


class _Params(ctypes.Structure):
    _fields_ = [("decay", ctypes.c_double), ("gain", ctypes.c_double), ("v_th", ctypes.c_double),
                ("v_reset", ctypes.c_double), ("v_rest", ctypes.c_double), ("reset", ctypes.c_int),
                ("strict", ctypes.c_int), ("detach_reset", ctypes.c_int), ("surrogate", ctypes.c_int),
                ("sg_a", ctypes.c_double), ("sg_b", ctypes.c_double)]


_lock = threading.Lock()
_pool_lock = threading.Lock()
_enabled = True
_lib: ctypes.CDLL | None = None
_status: str | None = None
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool)


# the build cache moved to spikevision.native_build (shared with the deploy runtime); the old names stay
# importable for one release
_cache_dir = cache_dir
compiled_library = _compiled_library


def _load() -> ctypes.CDLL | None:
    global _lib, _status
    with _lock:
        if _status is not None:
            return _lib
        if os.environ.get("SPIKEVISION_NATIVE", "1") == "0":
            _status = "PyTorch kernel (SPIKEVISION_NATIVE=0)"
            return None
        try:
            lib = load_library(SOURCE, "lif_cpu", _FLAGS, _VARIANTS)
            path = lib._name
            if lib.lif_abi_version() != ABI_VERSION:
                raise RuntimeError(f"{path} has ABI {lib.lif_abi_version()}, expected {ABI_VERSION}")
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            _status = f"PyTorch kernel (the C kernel could not be built or loaded: {e})"
            log.warning("spikevision: %s; CPU neurons run the slower PyTorch implementation", _status)
            return None
        for fn_name in ("lif_forward_f32", "lif_forward_f64", "lif_backward_f32", "lif_backward_f64"):
            fn = getattr(lib, fn_name)  # (4 pointers, T, N, lo, hi, params)
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 4 + [ctypes.POINTER(_Params)]
        _lib, _status = lib, f"C kernel ({path})"
        return lib


def native_status() -> str:
    """Which implementation CPU neurons use, and why (builds the C kernel if not yet done)."""
    _load()
    return _status or ""


def set_native_enabled(enabled: bool) -> bool:
    """Use the C kernel where it applies (True, the default) or always PyTorch; returns the previous value.

    For comparisons and debugging: both give the same results to round-off.
    ``SPIKEVISION_NATIVE=0`` disables the C kernel for a whole process; for a
    block of code use :func:`spikevision.neuron.use_kernels`, which restores the setting.
    """
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


def native_available() -> bool:
    """Whether the C kernel is built and loaded (builds it on first call)."""
    return _load() is not None


def supports(x: Tensor, decay: object, gain: object, p: "NeuronParams") -> bool:
    """Whether :func:`forward` can run this call (cheap checks first; builds the kernel on first use)."""
    return (_enabled and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and isinstance(decay, float) and isinstance(gain, float)
            and type(p.surrogate) in _SURROGATES and not torch.compiler.is_compiling()
            and _load() is not None)


def _params(p: "NeuronParams", decay: float, gain: float) -> _Params:
    sg = p.surrogate
    kind, sg_a = _SURROGATES[type(sg)]
    return _Params(decay, gain, p.v_th, p.v_reset, p.v_rest, _RESETS[p.reset], int(p.strict),
                   int(p.detach_reset), kind, getattr(sg, sg_a), getattr(sg, "peak", 0.0))


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _steps(h: list[Tensor] | None):
    """A C array of the step tensors' data pointers (kept alive by the caller's list)."""
    return None if h is None else (ctypes.c_void_p * len(h))(*(t.data_ptr() for t in h))


def _run(fn, pointers: list[int | None], T: int, N: int, params: _Params) -> None:
    """Call ``fn`` on element ranges, split over torch's intra-op thread count."""
    global _pool
    workers = torch.get_num_threads() if T * N >= _PARALLEL_MIN else 1
    blocks = -(-N // BLOCK)
    workers = max(1, min(workers, blocks))
    ref = ctypes.byref(params)
    if workers == 1:
        fn(*pointers, T, N, 0, N, ref)
        return
    per = -(-blocks // workers) * BLOCK
    ranges = [(lo, min(N, lo + per)) for lo in range(0, N, per)]
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] < len(ranges) - 1:
            if _pool is not None and _pool[0] == os.getpid():
                _pool[2].shutdown(wait=False)  # too small: replaced (a forked child's copy has no threads)
            _pool = (os.getpid(), len(ranges) - 1, ThreadPoolExecutor(len(ranges) - 1, "spikevision-lif"))
        futures = [_pool[2].submit(fn, *pointers, T, N, lo, hi, ref) for lo, hi in ranges[1:]]
    fn(*pointers, T, N, *ranges[0], ref)
    for f in futures:
        f.result()


def forward(x: Tensor, p: "NeuronParams", decay: float, gain: float, keep_h: bool,
            keep_code: bool) -> tuple[Tensor, list[Tensor] | None, Tensor | None]:
    """Spikes, and (if asked) ``H`` as T step tensors and the 2-bit code ``[ceil(T/4), ...]`` int8."""
    lib = _load()
    x = x.contiguous()
    T, N = x.shape[0], x[0].numel()
    s = torch.empty_like(x)
    h = [torch.empty_like(x[0]) for _ in range(T)] if keep_h else None
    code = torch.empty((-(-T // 4), *x.shape[1:]), dtype=torch.int8) if keep_code else None
    fn = lib.lif_forward_f32 if x.dtype == torch.float32 else lib.lif_forward_f64
    _run(fn, [_ptr(x), _ptr(s), _steps(h), _ptr(code)], T, N, _params(p, decay, gain))
    return s, h, code


def backward(grad_s: Tensor, h: list[Tensor] | None, code: Tensor | None, p: "NeuronParams", decay: float,
             gain: float) -> Tensor:
    """``dL/dX`` from the spikes' gradient and what :func:`forward` kept (``h`` or ``code``)."""
    lib = _load()
    grad_s = grad_s.contiguous()
    grad_x = torch.empty_like(grad_s)
    T, N = grad_x.shape[0], grad_x[0].numel()
    fn = lib.lif_backward_f32 if grad_x.dtype == torch.float32 else lib.lif_backward_f64
    _run(fn, [_ptr(grad_s), _steps(h), _ptr(code), _ptr(grad_x)], T, N, _params(p, decay, gain))
    return grad_x
