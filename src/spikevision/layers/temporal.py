"""Apply per-step modules to time-major sequences by folding time into the batch.

A convolution, linear layer or pooling has no memory, so running it on each of
the ``T`` steps equals running it once on ``[T*B, ...]`` with shared weights,
which is faster. :func:`fold` and :func:`unfold` are views whenever the input
is contiguous; :class:`TimeFolded` wraps any module that way.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikevision.neuron.params import check_sequence

__all__ = ["fold", "unfold", "TimeFolded", "check_T"]


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
            with statistics over time and batch, ...).

    Shape: ``[T, B, *in]`` to ``[T, B, *out]``.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        return unfold(self.module(fold(x)), x.shape[0])
