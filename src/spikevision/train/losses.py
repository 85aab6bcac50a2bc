"""Losses on spiking outputs: cross-entropy on time-averaged logits, and TET.

* ``ce``: the usual SNN loss, ``CE(mean_t O_t, y)`` on logits averaged over
  time ``[B, K]`` (hard labels with optional label smoothing, or soft targets
  ``[B, K]`` from Mixup/CutMix).
* ``tet``: Temporal Efficient Training, Deng, Li, Zhang, Gu, "Temporal
  Efficient Training of Spiking Neural Network via Gradient Re-weighting",
  ICLR 2022 (arXiv 2202.11946): the loss of every time step,
  ``L = (1 - lambda) * mean_t CE(O_t, y) + lambda * mean_t MSE(O_t, phi)``,
  on per-step logits ``[T, B, K]`` (``forward_head(..., per_step=True)``).
  ``lambda = 0`` (default) is the pure TET term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikevision.train.config import TrainConfig

__all__ = ["TimeAveragedCE", "TETLoss", "build_loss", "cross_entropy"]


def cross_entropy(logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean CE of ``logits [N, K]`` against class indices ``[N]`` or soft targets ``[N, K]``."""
    if target.dim() == logits.dim():  # soft targets (Mixup/CutMix), smoothing already inside
        return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing)


class TimeAveragedCE(nn.Module):
    """``CE(logits, target)`` on time-averaged logits ``[B, K]`` (or ``[T, B, K]``, averaged here)."""

    per_step = False

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if logits.dim() == 3:
            logits = logits.mean(0)
        return cross_entropy(logits, target, self.label_smoothing)


class TETLoss(nn.Module):
    """TET (Deng et al., ICLR 2022): CE of each time step's logits ``[T, B, K]``, averaged over ``T``.

    Args:
        label_smoothing: smoothing of hard labels.
        lam: weight of the MSE regulariser (0 = off).
        phi: the regulariser's target value.
    """

    per_step = True

    def __init__(self, label_smoothing: float = 0.0, lam: float = 0.0, phi: float = 1.0) -> None:
        super().__init__()
        self.label_smoothing, self.lam, self.phi = label_smoothing, lam, phi

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if logits.dim() != 3:
            raise ValueError(f"TET needs per-step logits [T, B, K], got {list(logits.shape)}; "
                             "the model's forward_head must support per_step=True")
        T, B, K = logits.shape
        target_t = target.unsqueeze(0).expand(T, *target.shape).reshape(T * B, *target.shape[1:])
        loss = cross_entropy(logits.reshape(T * B, K), target_t, self.label_smoothing)
        if self.lam > 0:
            loss = (1 - self.lam) * loss + self.lam * F.mse_loss(logits, torch.full_like(logits, self.phi))
        return loss


def build_loss(cfg: TrainConfig) -> nn.Module:
    """The loss named by ``cfg.loss``; its ``per_step`` says whether it needs ``[T, B, K]`` logits."""
    if cfg.loss == "ce":
        return TimeAveragedCE(cfg.label_smoothing)
    if cfg.loss == "tet":
        return TETLoss(cfg.label_smoothing, cfg.tet_lambda, cfg.tet_phi)
    raise ValueError(f"unknown loss {cfg.loss!r}; choose 'ce' or 'tet'")
