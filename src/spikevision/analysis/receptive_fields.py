"""Learned token-mixing weights of spiking MLPs, laid out on the token grid as receptive fields.

Li et al., "Efficient Deep Spiking Multi-Layer Perceptrons with
Multiplication-Free Inference", IEEE TNNLS 2024 (arXiv 2306.12465).
A :class:`~spikevision.models.spiking_mlp.TokenMixing` layer mixes tokens
axially with two 1x1 convolutions whose channels are the grid's rows and
columns: ``proj_h`` holds an ``H x H`` matrix ``W_h`` (row ``i`` of the output
is ``sum_j W_h[i, j] * row j`` of the input, the same for every channel and
column) and ``proj_w`` a ``W x W`` matrix ``W_w`` (the same along columns).

The receptive field of output token ``(i, k)`` on the ``H x W`` grid is
therefore a cross (:func:`receptive_field`):

* H-branch ``field_h``: zero except column ``k``, where ``field_h[j, k] = W_h[i, j]``;
* W-branch ``field_w``: zero except row ``i``, where ``field_w[i, l] = W_w[k, l]``.

The two branches pass through their own BN and LIF before the fuse
convolution, so their sum (what the report draws) is a picture of where each
output token looks, not one linear map; the centre ``(i, k)`` carries
``W_h[i, i] + W_w[k, k]``. Conv biases are not drawn. With ``fold_bn=True``
each output row ``i`` of ``W_h`` (column ``k`` of ``W_w``) is scaled by its BN's
``gamma / sqrt(running_var + eps)``: the weights as the branch's LIF sees them
at inference, up to a per-row offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["TokenMixingWeights", "token_mixing_weights", "receptive_field", "default_tokens"]


@dataclass(frozen=True)
class TokenMixingWeights:
    """The two axial mixing matrices of one token-mixing layer.

    Attributes:
        name: qualified module name (``stages.0.blocks.0.token``).
        weight_h: ``W_h``, ``[H, H]`` (output row, input row).
        weight_w: ``W_w``, ``[W, W]`` (output column, input column).
        bn_folded: whether the branch BNs' scales are folded in.
    """

    name: str
    weight_h: np.ndarray
    weight_w: np.ndarray
    bn_folded: bool = False

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid ``(H, W)``."""
        return self.weight_h.shape[0], self.weight_w.shape[0]


def _matrix(proj: nn.Module, norm: nn.Module | None) -> np.ndarray:
    conv = getattr(proj, "module", proj)  # TimeFolded(Conv2d) or a bare Conv2d
    w = conv.weight.detach().to(torch.float64).cpu()
    if w.dim() != 4 or w.shape[2:] != (1, 1) or w.shape[0] != w.shape[1]:
        raise ValueError(f"expected a square 1x1 conv weight [N, N, 1, 1], got {list(w.shape)}")
    w = w[:, :, 0, 0]  # [out, in]
    if norm is not None:
        scale = torch.ones(w.shape[0], dtype=torch.float64)
        if norm.weight is not None:
            scale = norm.weight.detach().to(torch.float64).cpu()
        w = w * (scale / torch.sqrt(norm.running_var.detach().to(torch.float64).cpu() + norm.eps))[:, None]
    return w.numpy()


def token_mixing_weights(model: nn.Module, *, fold_bn: bool = False) -> list[TokenMixingWeights]:
    """``W_h`` and ``W_w`` of every token-mixing layer of ``model``, in module order.

    Args:
        model: any module; layers are found by type
            (:class:`~spikevision.models.spiking_mlp.TokenMixing`). Models without
            token mixing give an empty list.
        fold_bn: scale each output row by its branch BN's ``gamma / sqrt(running_var + eps)``.

    Returns:
        one :class:`TokenMixingWeights` per layer (float64 copies).
    """
    from spikevision.models.spiking_mlp import TokenMixing

    out = []
    for name, m in model.named_modules():
        if isinstance(m, TokenMixing):
            wh = _matrix(m.proj_h, m.norm_h if fold_bn else None)
            ww = _matrix(m.proj_w, m.norm_w if fold_bn else None)
            out.append(TokenMixingWeights(name, wh, ww, fold_bn))
    return out


def receptive_field(mix: TokenMixingWeights, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
    """The H-branch and W-branch receptive fields of output token ``(row, col)``, each ``[H, W]``.

    ``field_h[:, col] = W_h[row, :]`` and ``field_w[row, :] = W_w[col, :]``; every
    other entry is 0 (see the module docstring).

    Raises:
        ValueError: ``(row, col)`` lies outside the ``H x W`` grid.
    """
    H, W = mix.grid
    if not (0 <= row < H and 0 <= col < W):
        raise ValueError(f"token ({row}, {col}) is outside the {H}x{W} grid of {mix.name}; "
                         f"use 0 <= row < {H}, 0 <= col < {W}")
    field_h = np.zeros((H, W))
    field_w = np.zeros((H, W))
    field_h[:, col] = mix.weight_h[row, :]
    field_w[row, :] = mix.weight_w[col, :]
    return field_h, field_w


def default_tokens(H: int, W: int) -> list[tuple[int, int]]:
    """The output tokens the report draws: top-left corner, centre, bottom-right corner (duplicates removed)."""
    tokens = [(0, 0), (H // 2, W // 2), (H - 1, W - 1)]
    return list(dict.fromkeys(tokens))
