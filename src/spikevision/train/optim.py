"""Optimisers (SGD, AdamW) with weight-decay groups, and per-step learning-rate schedules.

Schedules are a ``LambdaLR`` stepped after every optimiser step, so a
mid-epoch checkpoint resumes the rate exactly: linear warm-up from
``warmup_start * lr`` over ``warmup_epochs``, then cosine to ``min_lr``, step
decay at ``milestones`` (in epochs), or constant.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from spikevision.train.config import OptimConfig, SchedConfig

__all__ = ["param_groups", "build_optimizer", "build_scheduler", "lr_factor"]


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Two groups: with ``cfg.weight_decay`` and without (1-D parameters / matching names)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = (cfg.no_decay_1d and p.ndim <= 1) or any(s in name for s in cfg.no_decay_names)
        (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW over :func:`param_groups`."""
    groups = param_groups(model, cfg)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    raise ValueError(f"unknown optimizer {cfg.name!r}; choose 'sgd' or 'adamw'")


def lr_factor(step: int, cfg: SchedConfig, lr: float, steps_per_epoch: int, epochs: int) -> float:
    """Learning-rate multiplier after ``step`` optimiser steps (the ``LambdaLR`` function)."""
    total = max(1, epochs * steps_per_epoch)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return cfg.warmup_start + (1.0 - cfg.warmup_start) * step / warmup
    if cfg.name == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        floor = cfg.min_lr / lr
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.name == "step":
        epoch = step / steps_per_epoch
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: SchedConfig, lr: float, steps_per_epoch: int,
                    epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step ``LambdaLR`` following :func:`lr_factor`."""
    fn: Callable[[int], float] = lambda step: lr_factor(step, cfg, lr, steps_per_epoch, epochs)  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
