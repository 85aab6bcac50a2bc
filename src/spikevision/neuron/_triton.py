"""The Triton kernels of ``_triton_kernels.py``: the neuron kernel for CUDA tensors.

On a GPU the PyTorch kernel (:mod:`spikevision.neuron._torch`) launches a
dozen kernels per time step, each reading and writing a whole step; the Triton
kernels make one pass over the sequence per direction with the membrane in
registers. Same saved state (``H``, or the 2-bit code for the rectangular
surrogate), same results to round-off. Inputs may be float16, bfloat16,
float32 or float64; the recurrence runs in float32 (float64 for float64
inputs), and ``H`` is kept in that precision, so forward and backward agree on
every spike.

:class:`TritonKernel` supports CUDA tensors with a surrogate the kernels
implement (the exact classes, as for the C kernel), outside ``torch.compile``
tracing, with Triton importable; PLIF and the membrane output included.
Everything else runs the PyTorch kernel; so does a CUDA call whose first
kernel launch fails (logged once, see :func:`triton_status`).
``SPIKEVISION_TRITON=0`` disables the Triton kernels.

Tests run the very same kernel source on CPU tensors through Triton's
interpreter (``use_kernels(triton_on_cpu=True)``), which needs no GPU; a GPU
compiles it with ``triton.jit``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading

import torch
from torch import Tensor

from spikevision.neuron.kernel import (RESET_CODES, Constant, KernelChoice, KernelUnavailable, is_compact,
                                       surrogate_code)
from spikevision.neuron.params import NeuronParams

__all__ = ["TritonKernel", "KERNEL", "triton_status", "triton_available", "forward", "backward",
           "forward_arguments", "backward_arguments", "compute_dtype", "params_tensor"]

log = logging.getLogger(__name__)

BLOCK = 1024  # neurons per program
# 128 threads (8 neurons each); no FMA contraction, so products round as in the C and PyTorch kernels
LAUNCH_OPTIONS = dict(num_warps=4, enable_fp_fusion=False)
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_lock = threading.Lock()
_status: str | None = None  # whether Triton imports (or why not, or why a launch failed); None: not tried yet
_kernels: dict[bool, tuple] = {}  # interpret -> (forward kernel, backward kernel)


def _load() -> bool:
    """Import Triton once; the status says which kernel CUDA tensors get, and why."""
    global _status
    with _lock:
        if _status is None:
            try:
                import triton

                import spikevision.neuron._triton_kernels  # noqa: F401  (needs triton.language)
                _status = f"Triton kernel (triton {triton.__version__})"
            except Exception as e:  # ImportError, or a broken install
                _status = f"PyTorch kernel (Triton not importable: {type(e).__name__}: {e})"
        return _status.startswith("Triton")


def triton_status() -> str:
    """Which implementation CUDA neurons use, and why (imports Triton if not yet done)."""
    if not KernelChoice.environment().triton:
        return "PyTorch kernel (SPIKEVISION_TRITON=0)"
    _load()
    return _status or ""


def triton_available() -> bool:
    """Whether Triton imports (and has not been disabled or failed on a launch)."""
    return KernelChoice.environment().triton and _load()


def _kernel_pair(interpret: bool) -> tuple:
    """(forward, backward) kernels: ``triton.jit`` for devices, or Triton's interpreter for CPU tensors."""
    with _lock:
        if interpret not in _kernels:
            import triton

            import spikevision.neuron._triton_kernels as k

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


def _surrogate_constants(p: NeuronParams, dtype: torch.dtype) -> list[Tensor]:
    """``sg0, sg1`` of the kernel (see ``_triton_kernels``), rounded as the C kernel rounds them."""
    kind, a, b = surrogate_code(p.surrogate)
    one = torch.ones((), dtype=dtype)
    if kind == 0:  # rectangular: a = width
        width = one * a
        return [width * 0.5, one / width]
    if kind == 1:  # sigmoid: a = alpha
        return [one * a, one * 0.0]
    if kind == 2:  # atan: a = alpha
        alpha = one * a
        return [(one * (math.pi / 2.0)) * alpha, alpha * 0.5]
    return [(one * 2.0) / (one * a), one * b]  # triangle: a = width, b = peak


@functools.lru_cache(maxsize=256)
def _fixed_params(p: NeuronParams, decay: float, gain: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``decay, gain, v_th, v_reset, v_rest, sg0, sg1`` on the device, made once per (constants, dtype, device):
    no host-to-device copy per call."""
    values = [torch.tensor(v, dtype=dtype) for v in (decay, gain, p.v_th, p.v_reset, p.v_rest)]
    return torch.stack(values + _surrogate_constants(p, dtype)).to(device)


def params_tensor(p: NeuronParams, decay: Tensor | float, gain: Tensor | float, dtype: torch.dtype,
                  device: torch.device) -> Tensor:
    """The kernel's constants in the compute dtype; PLIF's tensors stay on the device (no host sync)."""
    if isinstance(decay, float) and isinstance(gain, float):
        return _fixed_params(p, decay, gain, dtype, device)
    rest = _fixed_params(p, 0.0, 0.0, dtype, device)[2:]
    parts = [d.detach().to(device=device, dtype=dtype).reshape(1) if isinstance(d, Tensor)
             else torch.full((1,), d, dtype=dtype, device=device) for d in (decay, gain)]
    return torch.cat([*parts, rest])


def forward(x: Tensor, p: NeuronParams, params: Tensor, keep_h: bool,
            keep_code: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Spikes, and (if asked) ``H`` ``[T, ...]`` in the compute dtype and the 2-bit code ``[ceil(T/4), ...]``.

    Raises:
        KernelUnavailable: the kernel failed to launch on a device (no usable compiler or
            driver for it): Triton is then disabled for the process, with the reason in
            :func:`triton_status`, and the dispatcher runs the PyTorch kernel.
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
        reason = f"the Triton kernel failed on {x.device}: {type(e).__name__}: {str(e)[:300]}"
        _disable(reason)
        raise KernelUnavailable(reason) from e
    return s, h, code


def backward(grad_s: Tensor | None, grad_h: Tensor | None, h: Tensor | None, code: Tensor | None,
             x: Tensor | None, p: NeuronParams, params: Tensor, grad_decay: bool,
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
                      p: NeuronParams) -> tuple[tuple, dict]:
    """Positional arguments and ``tl.constexpr`` values of ``lif_forward`` (unused pointers are None)."""
    T, N = x.shape[0], x[0].numel()
    return (x, s, h, code, params, T, N), dict(
        RESET=RESET_CODES[p.reset], STRICT=p.strict, KEEP_H=h is not None, KEEP_CODE=code is not None, BLOCK=BLOCK)


def backward_arguments(grad_s: Tensor | None, grad_h: Tensor | None, h: Tensor | None, code: Tensor | None,
                       x: Tensor | None, params: Tensor, grad_x: Tensor, partial: Tensor | None,
                       p: NeuronParams, grad_decay: bool, grad_gain: bool) -> tuple[tuple, dict]:
    """Positional arguments and ``tl.constexpr`` values of ``lif_backward``."""
    T, N = grad_x.shape[0], grad_x[0].numel()
    args = (grad_s, grad_h, h, code, x, params, grad_x, partial, T, N, (T - 1) * N, ((T - 1) // 4) * N)
    return args, dict(
        RESET=RESET_CODES[p.reset], STRICT=p.strict, DETACH=p.detach_reset, SURROGATE=surrogate_code(p.surrogate)[0],
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


class _TritonMultiStep(torch.autograd.Function):
    """The Triton kernels under autograd; PLIF's ``decay`` and ``gain`` get their gradients too."""

    @staticmethod
    def forward(ctx, x: Tensor, decay: Constant, gain: Constant, p: NeuronParams, return_membrane: bool):
        needs_grad = any(ctx.needs_input_grad[:3])
        # with the membrane returned, backward reads that H instead of a code
        compact = is_compact(p, decay) and not return_membrane
        params = params_tensor(p, decay, gain, compute_dtype(x.dtype), x.device)
        s_seq, h_seq, code = forward(x, p, params, keep_h=return_membrane or (needs_grad and not compact),
                                     keep_code=needs_grad and compact)
        ctx.p, ctx.params, ctx.decay, ctx.gain = p, params, decay, gain
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x if ctx.needs_input_grad[2] else None, h_seq, code)
        if return_membrane:  # H is kept in the compute precision; the caller gets it in x's dtype
            return s_seq, h_seq.to(x.dtype)
        return s_seq

    @staticmethod
    def backward(ctx, grad_s: Tensor | None, grad_h_out: Tensor | None = None):
        if grad_s is None and grad_h_out is None:
            return None, None, None, None, None
        x, h, code = ctx.saved_tensors
        grad_x, grad_decay, grad_gain = backward(grad_s, grad_h_out, h, code, x, ctx.p, ctx.params,
                                                 ctx.needs_input_grad[1], ctx.needs_input_grad[2])
        if grad_decay is not None:
            grad_decay = grad_decay.to(ctx.decay.dtype)
        if grad_gain is not None:
            grad_gain = grad_gain.to(ctx.gain.dtype)
        return grad_x, grad_decay, grad_gain, None, None


class TritonKernel:
    """The Triton kernels behind the :class:`~spikevision.neuron.kernel.NeuronKernel` contract."""

    name = "triton"

    def status(self) -> str:
        """See :func:`triton_status`."""
        return triton_status()

    def supports(self, x: Tensor, decay: Constant, gain: Constant, p: NeuronParams, return_membrane: bool,
                 choice: KernelChoice) -> bool:
        """CUDA tensors (CPU ones too with ``choice.triton_on_cpu``), a surrogate the kernels implement."""
        return (choice.triton and (x.device.type == "cuda" or (choice.triton_on_cpu and x.device.type == "cpu"))
                and x.dtype in DTYPES and surrogate_code(p.surrogate) is not None and _load())

    def apply(self, x: Tensor, decay: Constant, gain: Constant, p: NeuronParams,
              return_membrane: bool) -> Tensor | tuple[Tensor, Tensor]:
        """Spikes (and ``H``) under :class:`_TritonMultiStep`.

        Raises:
            KernelUnavailable: the launch failed on the device (see :func:`forward`).
        """
        return _TritonMultiStep.apply(x, decay, gain, p, return_membrane)


KERNEL = TritonKernel()
