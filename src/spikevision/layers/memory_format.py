"""Channels-last training on CPU: :func:`to_channels_last`.

oneDNN runs convolutions and batch norms fastest on channels-last (NHWC) maps, and converts NCHW maps to
and from it inside every call. spikevision's own CPU kernels keep whatever format they are given (the neuron
kernel works on the memory as it lies; :class:`~spikevision.layers.SpikeConv2d` reads and writes NHWC as well as
NCHW), so a network whose maps are all channels-last trains without a single conversion between layers.
Measured in ``bench/channels_last.py`` per recipe and in ``bench/train_step.py`` (the ``spikevision-channels-last``
contender); the training engine applies it where a recipe sets ``train.channels_last``.

:func:`to_channels_last` converts the 4-D parameters and buffers (``Module.to(memory_format=...)``), and makes
every dense :class:`torch.nn.Conv2d` with a single input channel emit a channels-last map: with one channel
the image and the weight are both contiguous and channels-last at once, so oneDNN would return NCHW and the
whole network after the stem would run NCHW. Values are unchanged (only summation order may differ, to
float32 round-off).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["to_channels_last"]

_HOOK_FLAG = "_spikevision_channels_last_hook"


def _emit_channels_last(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
    if output.dim() == 4:
        return output.contiguous(memory_format=torch.channels_last)
    return output


def to_channels_last(model: nn.Module) -> nn.Module:
    """Put ``model``'s 4-D weights and its feature maps in channels-last memory format (in place; returned).

    Idempotent. The state dict keeps its values (and loads into an NCHW model as usual); the forward
    accepts NCHW or channels-last input alike.
    """
    model.to(memory_format=torch.channels_last)
    for m in model.modules():
        if type(m) is nn.Conv2d and m.in_channels == 1 and not getattr(m, _HOOK_FLAG, False):
            m.register_forward_hook(_emit_channels_last)
            setattr(m, _HOOK_FLAG, True)
    return model

