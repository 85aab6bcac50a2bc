"""Apply per-step modules to time-major sequences by folding time into the batch.

A convolution, linear layer or pooling has no memory, so running it on each of
the ``T`` steps equals running it once on ``[T*B, ...]`` with shared weights,
which is faster. :func:`fold` and :func:`unfold` are views whenever the input
is contiguous; :class:`TimeFolded` wraps any module that way.

**Time-broadcast input.** A static image's stem output ``u`` reaches the first block as
``u.expand(T, ...)`` (the same step every time, no copy). A frame-wise module
(:data:`FRAMEWISE`: convolutions, linear layers, pooling) then gives the same output at every step, so in
training :class:`TimeFolded` runs it once on ``u`` and returns its output expanded over ``T`` again: ``T``
times less work, no ``[T*B, ...]`` copy, and the gradient of ``u`` without a ``[T, ...]`` buffer to sum.
:class:`~spikevision.layers.norm.TDBatchNorm2d` does the same (batch statistics over ``T`` copies of the
batch are those of one copy). In eval mode every step is folded as before, so the analysis and deployment
tools, which count each layer's work from its calls, see ``T`` steps. :func:`use_time_broadcast` turns it
off for a block of code (comparisons).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch
from torch import Tensor, nn

from spikevision.neuron._native import time_broadcast_base
from spikevision.neuron.params import check_sequence

__all__ = ["fold", "unfold", "TimeFolded", "check_T", "FRAMEWISE", "use_time_broadcast", "broadcast_step",
           "expand_steps"]

#: modules whose output for one frame depends on that frame alone (and on no random draw): on a
#: time-broadcast input they run once (:class:`TimeFolded`)
FRAMEWISE: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.Identity, nn.Flatten,
                                          nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d,
                                          nn.AdaptiveMaxPool2d)

_BROADCAST: ContextVar[bool] = ContextVar("spikevision_time_broadcast", default=True)


@contextmanager
def use_time_broadcast(enabled: bool) -> Iterator[None]:
    """Within the block, run frame-wise layers and :class:`~spikevision.layers.norm.TDBatchNorm2d` once on a
    time-broadcast input (True, the default) or on its ``T`` copies (False: the same values, for comparisons).

    Example:
        >>> with use_time_broadcast(False):  # every step folded into the batch, as before
        ...     loss = model(x).sum()
    """
    token = _BROADCAST.set(bool(enabled))
    try:
        yield
    finally:
        _BROADCAST.reset(token)


def broadcast_step(x: Tensor) -> Tensor | None:
    """The ``u`` of a time-broadcast ``x = u.expand(T, *u.shape)`` when it may run once (see
    :func:`use_time_broadcast`), else None."""
    if not _BROADCAST.get() or x.dim() < 3:
        return None
    return time_broadcast_base(x)


def expand_steps(y: Tensor, T: int) -> Tensor:
    """``y`` ``[B, ...]`` as the time-broadcast sequence ``[T, B, ...]`` (a view: every step is ``y``)."""
    return y.unsqueeze(0).expand(T, *y.shape)


def fold(x: Tensor) -> Tensor:
    """``[T, B, ...]`` to ``[T*B, ...]`` (a view when possible).

    Where it cannot be a view (a time-broadcast ``u.expand(T, ...)``, a slice) it is a copy whose samples keep
    the steps' memory format: channels-last steps stay channels-last (``flatten`` would give NCHW, which a
    channels-last network then converts back at the next convolution, forward and backward).
    """
    check_sequence(x, min_dim=3)
    if x.dim() != 5 or x.stride(0) == x.shape[1] * x.stride(1):
        return x.flatten(0, 1)
    step = x[0]
    if step.is_contiguous() or not step.is_contiguous(memory_format=torch.channels_last):
        return x.flatten(0, 1)
    return _FoldChannelsLast.apply(x)


class _FoldChannelsLast(torch.autograd.Function):
    """``[T, B, C, H, W]`` (any strides) to a channels-last ``[T*B, C, H, W]`` copy; backward is a view."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.lead = x.shape[:2]
        out = torch.empty((x.shape[0] * x.shape[1], *x.shape[2:]), dtype=x.dtype, device=x.device,
                          memory_format=torch.channels_last)
        out.unflatten(0, x.shape[:2]).copy_(x)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.unflatten(0, ctx.lead)


def unfold(y: Tensor, T: int) -> Tensor:
    """``[T*B, ...]`` to ``[T, B, ...]`` (always a view)."""
    if y.shape[0] % T:
        raise ValueError(f"leading dim {y.shape[0]} is not a multiple of T={T}")
    return y.unflatten(0, (T, y.shape[0] // T))


def check_T(x: Tensor, T: int, where: str) -> None:
    """Raise if ``x`` (``[T, B, ...]``) has a different number of time steps than ``T``."""
    if x.shape[0] != T:
        raise ValueError(
            f"{where} was built for T={T} time steps, got an input with T={x.shape[0]} "
            f"(shape {list(x.shape)}); rebuild it with T={x.shape[0]} or feed T={T} steps"
        )


class TimeFolded(nn.Module):
    """Run a per-step module on ``[T, B, ...]`` by folding ``T`` into the batch.

    Args:
        module: any module that maps ``[N, ...]`` to ``[N, ...]`` with no state
            across samples (Conv2d, Linear, pooling, Flatten, Dropout, BatchNorm
            with statistics over time and batch, ...). A :data:`FRAMEWISE` module runs once on a
            time-broadcast input (see the module docstring).

    Shape: ``[T, B, *in]`` to ``[T, B, *out]``.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        if self.training and isinstance(self.module, FRAMEWISE):
            u = broadcast_step(x)
            if u is not None:  # the same frame at every step: the same output at every step
                return expand_steps(self.module(u), x.shape[0])
        return unfold(self.module(fold(x)), x.shape[0])
