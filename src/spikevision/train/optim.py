"""Optimisers (SGD, AdamW) with weight-decay groups, and per-step learning-rate schedules.

Schedules are a ``LambdaLR`` stepped after every optimiser step, so a
mid-epoch checkpoint resumes the rate exactly: linear warm-up from
``warmup_start * lr`` over ``warmup_epochs``, then cosine to ``min_lr``, step
decay at ``milestones`` (in epochs), or constant. :func:`retune` puts a changed
config's values on a restored optimiser and schedule (``--resume`` with a new ``optim.lr``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from spikevision.train.config import OptimConfig, SchedConfig

__all__ = ["param_groups", "build_optimizer", "build_scheduler", "lr_factor", "retune", "changed_settings",
           "FIXED_ON_RESUME"]


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


def retune(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
           groups: Sequence[Mapping[str, Any]]) -> None:
    """Give a restored optimiser and schedule the hyper-parameters of the current config.

    Loading a checkpoint's optimiser state also loads its hyper-parameters (``lr``, ``weight_decay``,
    ``momentum``, ``betas``, ...) and the schedule's peak rates. This puts back the values of an
    optimiser and ``LambdaLR`` built from the current config, keeping the loaded moments and the step;
    the rate becomes the new peak times the new schedule's factor at the restored step (the schedule's
    function is always the current config's: ``LambdaLR`` does not save a lambda).

    Args:
        optimizer, scheduler: restored from a checkpoint.
        groups: the param-group settings of the freshly built optimiser (``params`` and ``lr`` are
            ignored; ``initial_lr``, set by the scheduler, is the new peak rate), taken before the
            checkpoint's state was loaded over them.
    """
    for group, new in zip(optimizer.param_groups, groups, strict=True):
        group.update({k: v for k, v in new.items() if k not in ("params", "lr")})
    scheduler.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
    lrs = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs  # what get_last_lr() reports: LambdaLR's own record of the rates it set


#: optimiser settings that decide which parameters it holds and what its state means: fixed for a run
FIXED_ON_RESUME = ("optim.name", "optim.no_decay_1d", "optim.no_decay_names")


def changed_settings(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``["optim.lr 0.1 -> 0.01", ...]``: optimiser, schedule and ``train.epochs`` values that differ
    between the checkpoint's config ``saved`` and the current one ``now`` (``Config.to_dict()`` form).

    Raises:
        ValueError: a change that cannot carry the optimiser state over (:data:`FIXED_ON_RESUME`).
    """
    pairs = [(f"{sec}.{k}", (saved.get(sec) or {}).get(k, v), v) for sec in ("optim", "sched")
             for k, v in now[sec].items()]
    pairs.append(("train.epochs", (saved.get("train") or {}).get("epochs", now["train"]["epochs"]),
                  now["train"]["epochs"]))
    changed = [(key, old, new) for key, old, new in pairs if old != new]
    fixed = [f"{key}={old!r} (now {new!r})" for key, old, new in changed if key in FIXED_ON_RESUME]
    if fixed:
        raise ValueError(f"--resume cannot change {', '.join(fixed)}: the checkpoint's optimiser state belongs to "
                         "the old setting; resume with the old value, or start a new run (run.name=<new name>)")
    return [f"{key} {old!r} -> {new!r}" for key, old, new in changed]
