"""Mixup/CutMix from timm, drawn per batch or (GAC's released quirk) once per epoch.

* Per batch (timm's ``Mixup``, ``mode="batch"``): each batch is mixed with
  probability ``prob``. Spiking MLP (Li et al., TNNLS 2024): Mixup 0.8 and
  CutMix 1.0, prob 1.0, switch 0.5, label smoothing 0.1.
* Per epoch (:class:`EpochDrawMix`): the GAC CIFAR code (Qiu et al., AAAI
  2024) draws once per epoch, so a whole epoch is all-CutMix (beta 1) or
  none (prob 0.5). That is the released behaviour; per-batch is the clean
  option.

Both return ``(x, soft_targets)`` with soft targets ``[B, classes]`` (label
smoothing applied), so one soft-target cross-entropy serves every batch.
"""

from __future__ import annotations

import random

from torch import Tensor

__all__ = ["EpochDrawMix"]


class EpochDrawMix:
    """Apply ``mixup`` to every batch of an epoch or to none, decided once per epoch.

    Args:
        mixup: a timm ``Mixup`` built with ``prob=1.0``.
        prob: probability that an epoch is mixed (GAC CIFAR: 0.5).
        num_classes: classes, for the one-hot targets of unmixed epochs.
        label_smoothing: smoothing of unmixed targets (as timm applies to mixed ones).
        seed: base seed; epoch ``e`` draws from ``random.Random(seed + e)``.

    Call :meth:`set_epoch` at the start of every epoch (the draw for epoch 0 is
    made at construction).
    """

    def __init__(self, mixup, prob: float, num_classes: int, label_smoothing: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.mixup, self.prob, self.num_classes = mixup, prob, num_classes
        self.label_smoothing, self.seed = label_smoothing, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw whether epoch ``epoch`` is mixed."""
        self.active = random.Random(self.seed + epoch).random() < self.prob

    def __call__(self, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        if self.active:
            return self.mixup(x, target)
        from timm.data.mixup import mixup_target

        return x, mixup_target(target, self.num_classes, 1.0, self.label_smoothing)
