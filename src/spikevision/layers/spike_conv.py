"""Event-driven convolution for binary spike inputs in training on CPU: :class:`SpikeConv2d`.

In a spiking network most convolutions read a spike map: every input is 0 or 1
and only 10-30% are 1. A dense convolution (oneDNN) multiplies every input by
every weight; here the forward pass and the weight gradient walk the spikes
only (``_spike_conv.c``):

- forward: for each spike of channel ``i`` at position ``p``, the weight rows
  ``W[:, i, kh, kw]`` are added to the outputs the spike reaches;
- weight gradient: ``dW[:, i, kh, kw]`` sums the output gradient at the
  positions reached by the spikes of channel ``i``;
- input gradient: a dense transposed convolution (oneDNN,
  :func:`torch.nn.functional.conv_transpose2d`), the same values as the input
  gradient of :func:`torch.nn.functional.conv2d`.

Only sums of weights (or of output gradients) change order, so results equal
the dense path to float32 round-off. For backward the spikes are kept as bits
(1/32 of the float map) instead of the input tensor.

:class:`SpikeConv2d` is an :class:`torch.nn.Conv2d` (same parameters,
``state_dict``, ``isinstance``) that takes this path in training mode, for
float32 CPU inputs that are contiguous or channels-last (the output and the input
gradient then come out channels-last too), ``groups=1``, ``dilation=1``, zero
padding given as numbers, outside ``torch.compile`` tracing and CPU autocast
(which runs convolutions in bf16), when the C library builds; anything else, and an input that holds a value other than 0 or 1
(found while the bits are packed), runs :func:`torch.nn.functional.conv2d`.
Eval mode always runs the dense convolution, so inference outputs are unchanged.

:func:`use_spike_conv` switches the path on or off for a ``with`` block (a
:class:`contextvars.ContextVar`, like :func:`spikevision.neuron.use_kernels`);
``SPIKEVISION_SPIKE_CONV=0`` turns it off for a whole process (read at each call).
"""

from __future__ import annotations

import ctypes
import functools
import os
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from spikevision.native_build import LazyLibrary, run_parallel, split_ranges

__all__ = ["SpikeConv2d", "spike_conv2d", "use_spike_conv", "spike_conv_enabled", "spike_conv_available",
           "spike_conv_status", "pack_spikes"]

SOURCE = Path(__file__).with_name("_spike_conv.c")
ABI_VERSION = 4
ENV_VAR = "SPIKEVISION_SPIKE_CONV"
_FLAGS = ["-O3", "-fno-math-errno", "-shared", "-fPIC"]
_VARIANTS = (["-march=native"], [])
_WORD_BITS = 64  # bits per word of a packed plane
_SPLIT_WGRAD_BY_CHANNEL = True  # bench/spike_conv.py --wgrad-split turns it off to compare

_ENABLED: ContextVar[bool] = ContextVar("spikevision_spike_conv", default=True)
def _configure(lib: ctypes.CDLL) -> None:
    lib.sc_pack_f32.restype = ctypes.c_int
    lib.sc_transpose_f32.restype = None
    lib.sc_transpose_f32.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 7
    lib.sc_pack_f32.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 4
    lib.sc_forward_f32.restype = lib.sc_wgrad_f32.restype = None
    lib.sc_pack_nhwc_f32.restype = ctypes.c_int
    lib.sc_pack_nhwc_f32.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 5
    lib.sc_forward_f32.argtypes = [ctypes.c_void_p] * 9 + [ctypes.c_int64] * 9
    lib.sc_wgrad_f32.argtypes = [ctypes.c_void_p] * 8 + [ctypes.c_int64] * 12


_LIBRARY = LazyLibrary(SOURCE, "spike_conv", _FLAGS, _VARIANTS, ("sc_abi_version", ABI_VERSION), _configure,
                       loaded="event-driven C kernel ({path})",
                       fallback="dense convolution (the spike-conv C library could not be built or loaded: {error})")
_load = _LIBRARY.load


def spike_conv_status() -> str:
    """Which path :class:`SpikeConv2d` takes in training on CPU, and why (builds the library if not yet done)."""
    if os.environ.get(ENV_VAR, "1") == "0":
        return f"dense convolution ({ENV_VAR}=0)"
    return _LIBRARY.status()


def spike_conv_available() -> bool:
    """Whether the C library is built and loaded (builds it on first call)."""
    return _load() is not None


def spike_conv_enabled() -> bool:
    """Whether the event-driven path may run here: the scoped switch, and ``SPIKEVISION_SPIKE_CONV`` not ``0``."""
    return _ENABLED.get() and os.environ.get(ENV_VAR, "1") != "0"


@contextmanager
def use_spike_conv(enabled: bool) -> Iterator[None]:
    """Within the block, let :class:`SpikeConv2d` take the event-driven path (True, the default) or not.

    The choice holds for this thread (or asyncio task) and is restored on exit, also after an
    error; ``SPIKEVISION_SPIKE_CONV=0`` still wins.

    Example:
        >>> with use_spike_conv(False):  # today's dense convolutions, e.g. for a baseline
        ...     loss = criterion(model(x), y)
    """
    token = _ENABLED.set(bool(enabled))
    try:
        yield
    finally:
        _ENABLED.reset(token)


def _workers(work: int) -> int:
    """Threads for a call of ``work`` elements: torch's intra-op count, one below 32k (not worth a hand-off)."""
    return torch.get_num_threads() if work >= 1 << 15 else 1


def _channels_last(x: Tensor) -> bool:
    """Whether the kernels read ``x`` as channels-last (NHWC): it is that and not also plain contiguous."""
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def pack_spikes(x: Tensor) -> Tensor | None:
    """``[N, C, H, W]`` float32 (CPU; contiguous or channels-last) to bits ``[N, C, words]`` int64 (one
    plane of ``H * W`` bits per sample and channel); None if a value is not 0 or 1."""
    lib = _load()
    N, C, H, W = x.shape
    L = H * W
    words = -(-L // _WORD_BITS)
    bits = torch.empty((N, C, words), dtype=torch.int64)
    flags = [0] * max(1, torch.get_num_threads())
    nhwc = _channels_last(x)

    def part(k: int, lo: int, hi: int) -> None:
        if nhwc:
            flags[k] = lib.sc_pack_nhwc_f32(x.data_ptr(), bits.data_ptr(), C, L, words, lo, hi)
        else:
            flags[k] = lib.sc_pack_f32(x.data_ptr(), bits.data_ptr(), L, words, lo, hi)

    ranges = split_ranges(N if nhwc else N * C, _workers(x.numel()))
    run_parallel([functools.partial(part, k, lo, hi) for k, (lo, hi) in enumerate(ranges)])
    return None if any(flags) else bits


def _padded(c: int) -> int:
    """``c`` rounded up to whole vectors of 8 floats (the kernels' row width)."""
    return -(-c // 8) * 8


@functools.lru_cache(maxsize=64)
def _tables(H: int, W: int, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
            C8: int) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor], int, int]:
    """Which inputs each output reads and which outputs each input reaches, as row offsets.

    Input ``(iy, ix)`` reaches output ``(oy, ox)`` through tap ``(ky, kx)`` when
    ``iy = oy * sh - ph + ky`` (likewise x). Returns ``(ocnt, otab, ptab, Ho, Wo)``:

    - ``ocnt [Lo]`` int32, ``otab [Lo, taps, 2]`` int32: the ``ocnt[o]`` pairs ``(tap, input
      position)`` of output ``o`` first (forward);
    - for the weight gradient: ``ptab [H*W, taps]`` int32, ``output * C8`` reached by input ``p``
      through each tap, or ``Lo * C8`` (a zero row) where it reaches none; ``pcls [H*W]`` uint8,
      the phase class ``(iy % sh) * sw + ix % sw`` of each input; ``tapok [sh*sw, taps]`` uint8,
      whether inputs of a class can reach any output through a tap.
    """
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    ky, kx = (t.reshape(1, -1) for t in torch.meshgrid(torch.arange(kh), torch.arange(kw), indexing="ij"))
    oy, ox = (t.reshape(-1, 1) for t in torch.meshgrid(torch.arange(Ho), torch.arange(Wo), indexing="ij"))
    iy, ix = oy * sh - ph + ky, ox * sw - pw + kx  # [Lo, taps]
    valid = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
    tap = torch.arange(kh * kw).expand_as(iy)
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)  # the valid pairs first
    pairs = torch.stack([tap.gather(1, order), (iy * W + ix).gather(1, order)], dim=2)
    otab = torch.where(valid.gather(1, order).unsqueeze(2), pairs, 0).to(torch.int32).contiguous()
    ptab = torch.full((H * W, kh * kw), Ho * Wo * C8, dtype=torch.int64)
    out = torch.arange(Ho * Wo).reshape(-1, 1).expand_as(iy)
    ptab[(iy * W + ix)[valid], tap[valid]] = out[valid] * C8
    py, px = torch.meshgrid(torch.arange(H) % sh, torch.arange(W) % sw, indexing="ij")
    pcls = (py * sw + px).reshape(-1).to(torch.uint8)
    cy, cx = torch.meshgrid(torch.arange(sh), torch.arange(sw), indexing="ij")  # [ncls] classes
    tapok = (((cy.reshape(-1, 1) + ph - ky) % sh == 0) & ((cx.reshape(-1, 1) + pw - kx) % sw == 0))
    wgrad = (ptab.to(torch.int32), pcls, tapok.to(torch.uint8).contiguous())
    return valid.sum(1).to(torch.int32), otab, wgrad, Ho, Wo


def _transpose(src: Tensor, dst: Tensor, rows: int, cols: int, ld_src: int, ld_dst: int, blocks: int = 1,
               src_step: int = 0, dst_step: int = 0) -> None:
    """``dst[b*dst_step + c*ld_dst + r] = src[b*src_step + r*ld_src + c]`` (float32 storage offsets, ``b < blocks``,
    ``r < rows``, ``c < cols``): AVX 8x8 blocks in C, the rows split over threads."""
    lib = _load()
    ranges = split_ranges(rows, _workers(rows * cols * blocks), align=8)
    run_parallel([functools.partial(lib.sc_transpose_f32, src.data_ptr() + 4 * lo * ld_src, dst.data_ptr() + 4 * lo,
                                    hi - lo, cols, ld_src, ld_dst, blocks, src_step, dst_step) for lo, hi in ranges])


def _weight_rows(weight: Tensor, C8: int) -> Tensor:
    """``[Cin, kh, kw, C8]``: the weight's ``Cout`` values of each (input channel, tap) as one row, zero-padded
    to ``C8`` (what the forward kernel gathers), from a contiguous or channels-last ``[Cout, Cin, kh, kw]``."""
    Cout, Cin, kh, kw = weight.shape
    taps = kh * kw
    wt = weight.new_zeros((Cin, kh, kw, C8)) if C8 != Cout else weight.new_empty((Cin, kh, kw, C8))
    w = weight.detach()
    if _channels_last(w):  # stored [Cout, taps, Cin]: one [Cout, Cin] transpose per tap
        _transpose(w, wt, Cout, Cin, taps * Cin, taps * C8, taps, Cin, C8)
    else:  # [Cout, Cin * taps] to [Cin * taps, C8]
        _transpose(w.contiguous(), wt, Cout, Cin * taps, Cin * taps, C8)
    return wt


def _sparse_forward(bits: Tensor, weight: Tensor, H: int, W: int, stride: tuple[int, int],
                    padding: tuple[int, int], nhwc: bool = False) -> Tensor:
    """``[N, Cout, Ho, Wo]`` (channels-last with ``nhwc``) from the packed spikes and the ``[Cout, Cin, kh, kw]``
    weight."""
    lib = _load()
    N, Cin, _ = bits.shape
    Cout, _, kh, kw = weight.shape
    C8 = _padded(Cout)
    ocnt, otab, _, Ho, Wo = _tables(H, W, kh, kw, *stride, *padding, C8)
    wt = _weight_rows(weight, C8)  # [Cin, kh, kw, C8]: Cout contiguous
    y = torch.empty((N, Cout, Ho, Wo), dtype=weight.dtype,
                    memory_format=torch.channels_last if nhwc else torch.contiguous_format)
    ranges = split_ranges(N, _workers(N * Cout * Ho * Wo))
    s = torch.empty((len(ranges), Ho * Wo * C8), dtype=weight.dtype)
    cnt = torch.empty((len(ranges), H * W), dtype=torch.int32)
    CL = -(-Cin // 16) * 16
    lists = torch.empty((len(ranges), H * W * CL), dtype=torch.int16)
    comb = torch.empty((len(ranges), kh * kw * CL + 16), dtype=torch.int16)
    run_parallel([functools.partial(lib.sc_forward_f32, bits.data_ptr(), wt.data_ptr(), y.data_ptr(),
                                    s[k].data_ptr(), cnt[k].data_ptr(), lists[k].data_ptr(), comb[k].data_ptr(),
                                    ocnt.data_ptr(), otab.data_ptr(), Cin, Cout, C8, kh * kw, H * W, Ho * Wo,
                                    int(nhwc), lo, hi)
                  for k, (lo, hi) in enumerate(ranges)])
    return y


def _sparse_weight_grad(bits: Tensor, grad_y: Tensor, weight_shape: torch.Size, H: int, W: int,
                        stride: tuple[int, int], padding: tuple[int, int],
                        memory_format: torch.memory_format = torch.contiguous_format) -> Tensor:
    """``dL/dW`` ``[Cout, Cin, kh, kw]`` in ``memory_format`` from the packed spikes and ``dL/dY``
    ``[N, Cout, Ho, Wo]`` (read as it is if channels-last, else made contiguous).

    Threads split the samples, each summing into its own ``dW`` (then added up), or, when ``dL/dY`` is
    smaller than ``dW`` (few samples, many channels: deep layers at small batches), the input channels,
    each writing its rows of one shared ``dW`` (every thread then lays out each sample's ``dL/dY`` rows,
    which costs less than zeroing and adding per-thread copies of ``dW``).
    """
    lib = _load()
    N, Cin, _ = bits.shape
    Cout, _, kh, kw = weight_shape
    C8 = _padded(Cout)
    _, _, (ptab, pcls, tapok), Ho, Wo = _tables(H, W, kh, kw, *stride, *padding, C8)
    nhwc = _channels_last(grad_y)
    grad_y = grad_y if nhwc else grad_y.contiguous()
    workers = _workers(grad_y.numel())
    by_channel = _SPLIT_WGRAD_BY_CHANNEL and workers > 1 and grad_y.numel() < Cin * kh * kw * C8
    ranges = split_ranges(Cin if by_channel else N, workers)
    dw = torch.empty((1 if by_channel else len(ranges), Cin, kh, kw, C8), dtype=grad_y.dtype)
    g = torch.empty((len(ranges), (Ho * Wo + 1) * C8), dtype=grad_y.dtype)
    ncls = stride[0] * stride[1]
    ev = torch.empty((len(ranges), ncls * H * W), dtype=torch.int32)
    parts = [(0, N, lo, hi, 0) if by_channel else (lo, hi, 0, Cin, k) for k, (lo, hi) in enumerate(ranges)]
    run_parallel([functools.partial(lib.sc_wgrad_f32, bits.data_ptr(), grad_y.data_ptr(), dw[acc].data_ptr(),
                                    g[k].data_ptr(), ev[k].data_ptr(), ptab.data_ptr(), pcls.data_ptr(),
                                    tapok.data_ptr(), ncls, Cin, Cout, C8, kh * kw,
                                    H * W, Ho * Wo, int(nhwc), n_lo, n_hi, c_lo, c_hi)
                  for k, (n_lo, n_hi, c_lo, c_hi, acc) in enumerate(parts)])
    total = dw[0] if len(dw) == 1 else dw.sum(0)  # [Cin, kh, kw, C8]
    taps = kh * kw
    grad = torch.empty((Cout, Cin, kh, kw), dtype=grad_y.dtype, memory_format=memory_format)
    if memory_format == torch.channels_last and taps > 1:  # stored [Cout, taps, Cin]: a transpose per tap
        _transpose(total, grad, Cin, Cout, taps * C8, taps * Cin, taps, C8, Cin)
    else:  # [Cin * taps, C8] to [Cout, Cin * taps]
        _transpose(total, grad, Cin * taps, Cout, C8, Cin * taps)
    return grad


def _input_grad(in_shape: torch.Size, weight: Tensor, grad_y: Tensor, stride: tuple[int, int],
                padding: tuple[int, int]) -> Tensor:
    """``dL/dX``: the dense transposed convolution of ``dL/dY`` (oneDNN).

    Called as :func:`torch.nn.functional.conv_transpose2d`, which gives the same values as
    ``convolution_backward``'s input gradient (what ``F.conv2d``'s autograd runs) and measured up to
    3x faster on this machine for stride 2 (``bench/spike_conv.md``).
    """
    kh, kw = weight.shape[2:]
    extra = tuple(size + 2 * p - k - (out - 1) * s for size, p, k, out, s in
                  zip(in_shape[2:], padding, (kh, kw), grad_y.shape[2:], stride))  # rows the stride skipped
    return F.conv_transpose2d(grad_y, weight, None, stride, padding, extra)  # grad_y's memory format


class _SpikeConvFunction(torch.autograd.Function):
    """The event-driven forward and weight gradient under autograd; the input gradient is dense."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bits: Tensor, stride: tuple[int, int],
                padding: tuple[int, int], bias: Tensor | None = None) -> Tensor:
        ctx.in_shape, ctx.stride, ctx.padding, ctx.nhwc = x.shape, stride, padding, _channels_last(x)
        ctx.save_for_backward(bits, weight)
        y = _sparse_forward(bits, weight, x.shape[2], x.shape[3], stride, padding, ctx.nhwc)
        return y if bias is None else y.add_(bias.view(1, -1, 1, 1))

    @staticmethod
    @once_differentiable  # no double backward: a create_graph=True call raises instead of dropping terms
    def backward(ctx, grad_y: Tensor):
        bits, weight = ctx.saved_tensors
        # the input's memory format for the output gradient too: the input gradient (a transposed convolution)
        # comes out in it, so it matches the input's
        grad_y = grad_y.contiguous(memory_format=torch.channels_last if ctx.nhwc else torch.contiguous_format)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[5]:
            grad_b = grad_y.sum((0, 2, 3))
        if ctx.needs_input_grad[0]:
            grad_x = _input_grad(ctx.in_shape, weight, grad_y, ctx.stride, ctx.padding)
        if ctx.needs_input_grad[1]:
            H, W = ctx.in_shape[2], ctx.in_shape[3]
            fmt = torch.channels_last if _channels_last(weight) else torch.contiguous_format  # the parameter's
            grad_w = _sparse_weight_grad(bits, grad_y, weight.shape, H, W, ctx.stride, ctx.padding, fmt)
        return grad_x, grad_w, None, None, None, grad_b


def _applies(x: Tensor, weight: Tensor, stride: tuple[int, int], padding: tuple[int, int]) -> bool:
    """Whether the event-driven path can take this call (checked before the input is read).

    Beyond device, dtype and layout: the kernels index weight rows with 16 bits (``Cin * kh * kw``),
    bucket spikes into at most 64 stride phases, and need a non-empty output.
    """
    if not (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.dim() == 4 and weight.dim() == 4 and weight.shape[1] == x.shape[1]
            and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))):
        return False
    _, cin, kh, kw = weight.shape
    out = [(size + 2 * p - k) // s + 1 for size, p, k, s in zip(x.shape[2:], padding, (kh, kw), stride)]
    return (cin * kh * kw < 1 << 16 and stride[0] * stride[1] <= 64 and min(out) > 0 and min(padding) >= 0
            and (out[0] * out[1] + 1) * _padded(weight.shape[0]) < 1 << 31
            and not torch.is_autocast_enabled("cpu")  # autocast runs the conv in bf16: keep its numbers
            and not torch.compiler.is_compiling() and spike_conv_enabled() and _load() is not None)


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    """An int or a pair, as a pair of ints (as ``nn.Conv2d`` stores stride and padding)."""
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def spike_conv2d(x: Tensor, weight: Tensor, stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] = 0, bias: Tensor | None = None) -> Tensor:
    """``F.conv2d(x, weight, bias, stride, padding)`` (groups 1, dilation 1), event-driven where it applies.

    Args:
        x: ``[N, Cin, H, W]``; the event-driven path runs when it is a float32 CPU tensor of zeros and ones,
            contiguous or channels-last (and the switch is on), else :func:`torch.nn.functional.conv2d` does.
        weight: ``[Cout, Cin, kh, kw]``.
        stride, padding: as for :func:`torch.nn.functional.conv2d` (an int or a pair of ints).
        bias: ``[Cout]`` or None; added to the event-driven sums in place (its gradient: the output gradient's
            sum over batch and positions).

    Returns:
        ``[N, Cout, Ho, Wo]`` in ``x``'s memory format, equal to the dense result to float32 round-off.
    """
    stride, padding = _pair(stride), _pair(padding)
    if (bias is None or bias.dtype == torch.float32) and _applies(x, weight, stride, padding):
        bits = pack_spikes(x)
        if bits is not None:
            return _SpikeConvFunction.apply(x, weight, bits, stride, padding, bias)
    return F.conv2d(x, weight, bias, stride, padding)


class SpikeConv2d(nn.Conv2d):
    """:class:`torch.nn.Conv2d` for spike inputs: event-driven in training on CPU, dense otherwise.

    Same arguments, parameters and ``state_dict`` as :class:`torch.nn.Conv2d`; use it
    where the input is a spike map (zeros and ones), e.g. right after a neuron. In
    training mode the forward pass and the weight gradient run the event-driven
    C kernel (:func:`spike_conv2d`) when the call qualifies (module docstring);
    in eval mode, and for every other call, it is exactly :class:`torch.nn.Conv2d`.

    Shape: ``[N, Cin, H, W]`` to ``[N, Cout, Ho, Wo]``.
    """

    def _event_driven(self) -> bool:
        return (self.training and self.groups == 1 and self.dilation == (1, 1)
                and self.padding_mode == "zeros" and not isinstance(self.padding, str))

    def forward(self, x: Tensor) -> Tensor:
        """The convolution; see the class docstring for which path runs."""
        if self._event_driven():
            return spike_conv2d(x, self.weight, self.stride, self.padding, self.bias)
        return super().forward(x)

