"""The fused Triton kernels of ``_triton_kernels.py``: the neuron kernel for CUDA tensors.

On a GPU the PyTorch kernel of :mod:`spikevision.neuron.functional` launches a
dozen kernels per time step, each reading and writing a whole step; the Triton
kernels make one pass over the sequence per direction with the membrane in
registers. Same saved state (``H``, or the 2-bit code for the rectangular
surrogate), same results to round-off. Inputs may be float16, bfloat16,
float32 or float64; the recurrence runs in float32 (float64 for float64
inputs), and ``H`` is kept in that precision, so forward and backward agree on
every spike.

Dispatch (:func:`supports`): CUDA tensors, a surrogate the kernels implement
(the exact classes, as for the C kernel), outside ``torch.compile`` tracing,
and Triton importable. Everything else runs the PyTorch kernel; so does a
CUDA call whose first kernel launch fails (logged once, see
:func:`triton_status`). ``SPIKEVISION_TRITON=0`` disables the Triton kernels.

Tests run the very same kernel source on CPU tensors through Triton's
interpreter (:func:`set_cpu_interpreter`), which needs no GPU; a GPU compiles
it with ``triton.jit``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from spikevision.neuron.surrogate import ATan, Rectangular, Sigmoid, Triangle

if TYPE_CHECKING:
    from spikevision.neuron.functional import NeuronParams

__all__ = ["triton_status", "triton_available", "set_triton_enabled", "set_cpu_interpreter", "supports",
           "forward", "backward"]

log = logging.getLogger(__name__)

BLOCK = 1024  # neurons per program
# 128 threads (8 neurons each); no FMA contraction, so products round as in the C and PyTorch kernels
LAUNCH_OPTIONS = dict(num_warps=4, enable_fp_fusion=False)
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_RESETS = {"hard": 0, "soft": 1, "none": 2}
# exact classes only: a subclass may override grad(), which the kernel would not see
_SURROGATES = {Rectangular: 0, Sigmoid: 1, ATan: 2, Triangle: 3}

_lock = threading.Lock()
_enabled = True
_cpu_interpreter = False
_status: str | None = None
_kernels: dict[bool, tuple] = {}  # interpret -> (forward kernel, backward kernel)


def _load() -> bool:
    """Import Triton once; the status says which kernel CUDA tensors get, and why."""
    global _status
    with _lock:
        if _status is None:
            if os.environ.get("SPIKEVISION_TRITON", "1") == "0":
                _status = "PyTorch kernel (SPIKEVISION_TRITON=0)"
            else:
                try:
                    import triton

                    from spikevision.neuron import _triton_kernels  # noqa: F401  (needs triton.language)
                    _status = f"Triton kernel (triton {triton.__version__})"
                except Exception as e:  # ImportError, or a broken install
                    _status = f"PyTorch kernel (Triton not importable: {type(e).__name__}: {e})"
        return _status.startswith("Triton")


def triton_status() -> str:
    """Which implementation CUDA neurons use, and why (imports Triton if not yet done)."""
    _load()
    return _status or ""


def triton_available() -> bool:
    """Whether Triton imports (and has not been disabled or failed on a launch)."""
    return _load()


def set_triton_enabled(enabled: bool) -> bool:
    """Use the Triton kernels where they apply (True, the default) or never; returns the previous value.

    For a block of code use :func:`spikevision.neuron.use_kernels`, which restores the setting.
    """
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


def set_cpu_interpreter(enabled: bool) -> bool:
    """Run CPU tensors through the Triton kernels in Triton's interpreter (for tests); returns the previous value.

    The interpreter executes the kernel source with NumPy, one program at a
    time: slow, but it checks on a machine without a GPU the very code a GPU
    compiles. The C kernel still takes the calls it supports; disable it with
    :func:`~spikevision.neuron.set_native_enabled` to send every CPU call here.
    """
    global _cpu_interpreter
    previous, _cpu_interpreter = _cpu_interpreter, bool(enabled)
    return previous


def supports(x: Tensor, p: "NeuronParams") -> bool:
    """Whether :func:`forward` runs this call (cheap checks first; imports Triton on first use)."""
    return (_enabled and (x.device.type == "cuda" or (_cpu_interpreter and x.device.type == "cpu"))
            and x.dtype in DTYPES and type(p.surrogate) in _SURROGATES
            and not torch.compiler.is_compiling() and _load())


def _kernel_pair(interpret: bool) -> tuple:
    """(forward, backward) kernels: ``triton.jit`` for devices, or Triton's interpreter for CPU tensors."""
    with _lock:
        if interpret not in _kernels:
            import triton

            from spikevision.neuron import _triton_kernels as k

            if interpret:
                with triton.knobs.runtime.scope():  # restores the knob (and TRITON_INTERPRET) afterwards
                    triton.knobs.runtime.interpret = True
                    _kernels[True] = (triton.jit(k.lif_forward), triton.jit(k.lif_backward))
            else:
                _kernels[False] = (triton.jit(k.lif_forward), triton.jit(k.lif_backward))
        return _kernels[interpret]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision the recurrence runs in (and ``H`` is kept in)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _surrogate_constants(p: "NeuronParams", dtype: torch.dtype) -> list[Tensor]:
    """``sg0, sg1`` of the kernel (see ``_triton_kernels``), rounded as the C kernel rounds them."""
    sg = p.surrogate
    one = torch.ones((), dtype=dtype)
    if isinstance(sg, Rectangular):
        width = one * sg.width
        return [width * 0.5, one / width]
    if isinstance(sg, Sigmoid):
        return [one * sg.alpha, one * 0.0]
    if isinstance(sg, ATan):
        alpha = one * sg.alpha
        return [(one * (math.pi / 2.0)) * alpha, alpha * 0.5]
    return [(one * 2.0) / (one * sg.width), one * sg.peak]


@functools.lru_cache(maxsize=256)
def _fixed_params(p: "NeuronParams", decay: float, gain: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``decay, gain, v_th, v_reset, v_rest, sg0, sg1`` on the device, made once per (constants, dtype, device):
    no host-to-device copy per call."""
    values = [torch.tensor(v, dtype=dtype) for v in (decay, gain, p.v_th, p.v_reset, p.v_rest)]
    return torch.stack(values + _surrogate_constants(p, dtype)).to(device)


def params_tensor(p: "NeuronParams", decay: Tensor | float, gain: Tensor | float, dtype: torch.dtype,
                  device: torch.device) -> Tensor:
    """The kernel's constants in the compute dtype; PLIF's tensors stay on the device (no host sync)."""
    if isinstance(decay, float) and isinstance(gain, float):
        return _fixed_params(p, decay, gain, dtype, device)
    rest = _fixed_params(p, 0.0, 0.0, dtype, device)[2:]
    parts = [d.detach().to(device=device, dtype=dtype).reshape(1) if isinstance(d, Tensor)
             else torch.full((1,), d, dtype=dtype, device=device) for d in (decay, gain)]
    return torch.cat([*parts, rest])


def forward(x: Tensor, p: "NeuronParams", params: Tensor, keep_h: bool,
            keep_code: bool) -> tuple[Tensor, Tensor | None, Tensor | None] | None:
    """Spikes, and (if asked) ``H`` ``[T, ...]`` in the compute dtype and the 2-bit code ``[ceil(T/4), ...]``.

    None when the kernel fails to launch on a device (no usable compiler or
    driver for it): Triton is then disabled for the process, with the reason in
    :func:`triton_status`, and the caller runs the PyTorch kernel.
    """
    interpret = _interprets(x.device)
    x = x.contiguous()
    T, N = x.shape[0], x[0].numel()
    s = torch.empty_like(x)
    h = torch.empty(x.shape, dtype=params.dtype, device=x.device) if keep_h else None
    code = torch.empty((-(-T // 4), *x.shape[1:]), dtype=torch.int8, device=x.device) if keep_code else None
    if N == 0:
        return s, h, code
    try:
        fwd, _ = _kernel_pair(interpret)
        args, constants = forward_arguments(x, s, h, code, params, p)
        with _on(x.device):
            fwd[(_cdiv(N, BLOCK),)](*args, **constants, **LAUNCH_OPTIONS)
    except Exception as e:
        if interpret or isinstance(e, torch.OutOfMemoryError):
            raise  # the interpreter runs the source itself: a failure there is a bug to see
        _disable(f"the Triton kernel failed on {x.device}: {type(e).__name__}: {str(e)[:300]}")
        return None
    return s, h, code


def backward(grad_s: Tensor | None, grad_h: Tensor | None, h: Tensor | None, code: Tensor | None,
             x: Tensor | None, p: "NeuronParams", params: Tensor, grad_decay: bool,
             grad_gain: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``dL/dX``, and ``dL/d decay``, ``dL/d gain`` (0-dim, compute dtype) where asked."""
    _, bwd = _kernel_pair(_interprets(params.device))
    like = grad_s if grad_s is not None else grad_h
    grad_s = grad_s.contiguous() if grad_s is not None else None
    grad_h = grad_h.contiguous() if grad_h is not None else None
    grad_x = torch.empty(like.shape, dtype=like.dtype, device=like.device)
    T, N = grad_x.shape[0], grad_x[0].numel()
    partial = torch.zeros(2 * N, dtype=params.dtype, device=grad_x.device) if (grad_decay or grad_gain) else None
    if N > 0:
        args, constants = backward_arguments(grad_s, grad_h, h, code, x, params, grad_x, partial, p,
                                             grad_decay, grad_gain)
        with _on(grad_x.device):
            bwd[(_cdiv(N, BLOCK),)](*args, **constants, **LAUNCH_OPTIONS)
    d_decay = partial[:N].sum() if grad_decay else None
    d_gain = partial[N:].sum() if grad_gain else None
    return grad_x, d_decay, d_gain


def forward_arguments(x: Tensor, s: Tensor, h: Tensor | None, code: Tensor | None, params: Tensor,
                      p: "NeuronParams") -> tuple[tuple, dict]:
    """Positional arguments and ``tl.constexpr`` values of ``lif_forward`` (unused pointers are None)."""
    T, N = x.shape[0], x[0].numel()
    return (x, s, h, code, params, T, N), dict(
        RESET=_RESETS[p.reset], STRICT=p.strict, KEEP_H=h is not None, KEEP_CODE=code is not None, BLOCK=BLOCK)


def backward_arguments(grad_s: Tensor | None, grad_h: Tensor | None, h: Tensor | None, code: Tensor | None,
                       x: Tensor | None, params: Tensor, grad_x: Tensor, partial: Tensor | None,
                       p: "NeuronParams", grad_decay: bool, grad_gain: bool) -> tuple[tuple, dict]:
    """Positional arguments and ``tl.constexpr`` values of ``lif_backward``."""
    T, N = grad_x.shape[0], grad_x[0].numel()
    args = (grad_s, grad_h, h, code, x, params, grad_x, partial, T, N, (T - 1) * N, ((T - 1) // 4) * N)
    return args, dict(
        RESET=_RESETS[p.reset], STRICT=p.strict, DETACH=p.detach_reset, SURROGATE=_SURROGATES[type(p.surrogate)],
        COMPACT=code is not None, HAS_GS=grad_s is not None, HAS_GH=grad_h is not None, GRAD_DECAY=grad_decay,
        GRAD_GAIN=grad_gain, BLOCK=BLOCK)


def _on(device: torch.device):
    """Launch on the tensors' GPU, not the current one (Triton launches on the current device)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _interprets(device: torch.device) -> bool:
    """CPU tensors run in Triton's interpreter; device tensors run compiled kernels."""
    return device.type == "cpu"


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _disable(reason: str) -> None:
    """Stop using the Triton kernels for this process (a launch failed); the status says why."""
    global _status
    with _lock:
        _status = f"PyTorch kernel ({reason})"
    log.warning("spikevision: %s; CUDA neurons run the PyTorch implementation", _status)
