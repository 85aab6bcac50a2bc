"""Normalisation for spiking sequences ``[T, B, C, ...]``.

| layer | statistics | paper |
|---|---|---|
| :class:`TDBatchNorm2d` / :class:`TDBatchNorm1d` | per channel over (T, B, spatial) | Zheng et al., "Going Deeper With Directly-Trained Larger Spiking Neural Networks", AAAI 2021 (tdBN); MS-ResNet, spiking MLP |
| :class:`BNTT2d` | per channel and **per time step** | Kim & Panda, "Revisiting Batch Normalization for Training Low-Latency Deep Spiking Neural Networks From Scratch", Frontiers in Neuroscience 2021 (BNTT); S-ResNet |
| :class:`TokenBatchNorm1d` | per **token position** over (T, B, channels) | spiking MLP channel block (the released quirk) |

tdBN's ``alpha * V_th`` scaling is expressed as the initial ``gamma``
(``weight_init``), e.g. 0.5 = V_th in MS-ResNet.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikevision.layers.temporal import check_T, fold, unfold
from spikevision.neuron.functional import check_sequence

__all__ = ["TDBatchNorm2d", "TDBatchNorm1d", "BNTT2d", "TokenBatchNorm1d", "TimeFoldedSyncBatchNorm", "convert_sync_batchnorm"]


def _check_channels(x: Tensor, dim: int, expected: int, ndim: int, layout: str, name: str) -> None:
    check_sequence(x, name=f"{name} input")
    if x.dim() != ndim:
        raise ValueError(f"{name} expects {layout}, got shape {list(x.shape)}")
    if x.shape[dim] != expected:
        raise ValueError(f"{name} was built for {expected} features at dim {dim} of {layout}, got {x.shape[dim]}")


class TDBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose statistics pool time and batch (tdBN-style).

    Args:
        num_features: channels ``C``.
        weight_init: initial gamma (MS-ResNet: 0.5 = V_th; 0 for the last BN of
            a residual branch; 1 = PyTorch default).
        **kwargs: ``eps``, ``momentum``, ``affine``, ``track_running_stats``.

    Shape: ``[T, B, C, H, W]`` to the same.
    """

    def __init__(self, num_features: int, weight_init: float = 1.0, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self.weight_init = weight_init
        if self.affine:
            nn.init.constant_(self.weight, weight_init)

    def forward(self, x: Tensor) -> Tensor:
        _check_channels(x, 2, self.num_features, 5, "[T, B, C, H, W]", type(self).__name__)
        return unfold(super().forward(fold(x)), x.shape[0])


class TDBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over time and batch for ``[T, B, C]`` or ``[T, B, C, L]``.

    Args: as :class:`TDBatchNorm2d`.
    """

    def __init__(self, num_features: int, weight_init: float = 1.0, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        if self.affine:
            nn.init.constant_(self.weight, weight_init)

    def forward(self, x: Tensor) -> Tensor:
        check_sequence(x, name=f"{type(self).__name__} input", min_dim=3)
        if x.dim() not in (3, 4) or x.shape[2] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) expects [T, B, C] or [T, B, C, L] with "
                f"C={self.num_features}, got shape {list(x.shape)}"
            )
        return unfold(super().forward(fold(x)), x.shape[0])


class TokenBatchNorm1d(nn.BatchNorm1d):
    """Per-token BatchNorm of the spiking MLP's channel block (released quirk).

    The authors apply ``BatchNorm1d(N)`` to ``[T*B, N, C]``: one statistic per
    token position ``N``, pooled over time, batch and channels. This ties the
    model to one input size and is not foldable into a shared weight matrix.

    Args:
        num_tokens: ``N = H * W``.

    Shape: ``[T, B, N, C]`` to the same.
    """

    def __init__(self, num_tokens: int, **kwargs) -> None:
        super().__init__(num_tokens, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        _check_channels(x, 2, self.num_features, 4, "[T, B, N, C]", type(self).__name__)
        return unfold(super().forward(fold(x)), x.shape[0])


class BNTT2d(nn.Module):
    """Batch normalisation through time: one BatchNorm2d per time step.

    Each step has its own affine parameters and running statistics (S-ResNet:
    eps 1e-4, momentum 0.1).

    Args:
        num_features: channels ``C``.
        T: number of time steps; inputs with another ``T`` raise.
        bias: learn a shift per step. S-ResNet's released code trains the
            biases (quirk Q1, default True); the original BNTT has none (False).
        eps, momentum: BatchNorm constants.

    Shape: ``[T, B, C, H, W]`` to the same.
    """

    def __init__(self, num_features: int, T: int, bias: bool = True, eps: float = 1e-4, momentum: float = 0.1) -> None:
        super().__init__()
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        self.T = T
        self.num_features = num_features
        self.bns = nn.ModuleList(nn.BatchNorm2d(num_features, eps=eps, momentum=momentum) for _ in range(T))
        if not bias:
            for bn in self.bns:
                bn.bias.requires_grad_(False)
                nn.init.zeros_(bn.bias)

    def forward(self, x: Tensor) -> Tensor:
        _check_channels(x, 2, self.num_features, 5, "[T, B, C, H, W]", "BNTT2d")
        check_T(x, self.T, "BNTT2d")
        return torch.stack([bn(x[t]) for t, bn in enumerate(self.bns)])

    def extra_repr(self) -> str:
        return f"{self.num_features}, T={self.T}"


class TimeFoldedSyncBatchNorm(nn.SyncBatchNorm):
    """SyncBatchNorm for ``[T, B, C, ...]`` sequences (statistics over T, B and all ranks).

    Built by :func:`convert_sync_batchnorm` from :class:`TDBatchNorm2d`,
    :class:`TDBatchNorm1d` or :class:`TokenBatchNorm1d`; parameter and buffer
    names are unchanged, so checkpoints load either way.
    """

    def forward(self, x: Tensor) -> Tensor:
        check_sequence(x, name="TimeFoldedSyncBatchNorm input", min_dim=3)
        return unfold(super().forward(fold(x)), x.shape[0])


_TIME_FOLDED_BN = (TDBatchNorm2d, TDBatchNorm1d, TokenBatchNorm1d)


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Replace every BatchNorm by a SyncBatchNorm, keeping spikevision's time folding.

    ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` would turn a
    :class:`TDBatchNorm2d` into a plain SyncBatchNorm that reads ``T`` as the
    batch and ``B`` as channels; this converts those to
    :class:`TimeFoldedSyncBatchNorm` and the rest (plain BNs, BNTT's per-step
    BNs) with PyTorch's converter.
    """
    if isinstance(module, _TIME_FOLDED_BN):
        new = TimeFoldedSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats, process_group
        )
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, process_group))
    return module
