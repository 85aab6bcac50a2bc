"""Losses against hand-written references; schedules against their formulas; weight-decay groups."""

import math

import pytest
import torch
import torch.nn.functional as F

from spikevision.train.config import OptimConfig, SchedConfig, TrainConfig
from spikevision.train.losses import TETLoss, TimeAveragedCE, build_loss
from spikevision.train.optim import build_optimizer, build_scheduler, param_groups


def test_time_averaged_ce_hard_and_soft_targets():
    g = torch.Generator().manual_seed(0)
    logits_t = torch.randn(3, 4, 5, generator=g)  # [T, B, K]
    y = torch.tensor([0, 4, 2, 1])
    mean = logits_t.mean(0)
    ref = -torch.log_softmax(mean, -1)[torch.arange(4), y].mean()
    assert torch.allclose(TimeAveragedCE()(logits_t, y), ref)
    assert torch.allclose(TimeAveragedCE()(mean, y), ref)
    soft = torch.full((4, 5), 0.1 / 4)
    soft[torch.arange(4), y] = 0.9
    ref_soft = -(soft * torch.log_softmax(mean, -1)).sum(-1).mean()
    assert torch.allclose(TimeAveragedCE()(mean, soft), ref_soft)
    # label smoothing eps: target = (1 - eps) one-hot + eps / K
    eps = 0.1
    smooth = torch.full((4, 5), eps / 5)
    smooth[torch.arange(4), y] += 1 - eps
    assert torch.allclose(TimeAveragedCE(eps)(mean, y), -(smooth * torch.log_softmax(mean, -1)).sum(-1).mean())


def test_tet_equals_per_step_loop():
    g = torch.Generator().manual_seed(1)
    logits_t = torch.randn(4, 3, 6, generator=g)
    y = torch.tensor([5, 0, 3])
    ref = sum(F.cross_entropy(logits_t[t], y) for t in range(4)) / 4
    assert torch.allclose(TETLoss()(logits_t, y), ref)
    lam, phi = 0.2, 1.0
    mse = sum(((logits_t[t] - phi) ** 2).mean() for t in range(4)) / 4
    assert torch.allclose(TETLoss(lam=lam, phi=phi)(logits_t, y), (1 - lam) * ref + lam * mse)
    with pytest.raises(ValueError, match="per-step logits"):
        TETLoss()(logits_t[0], y)
    assert build_loss(TrainConfig(loss="tet")).per_step and not build_loss(TrainConfig()).per_step


def _lrs(sched_cfg, lr=1.0, steps_per_epoch=4, epochs=5):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    s = build_scheduler(opt, sched_cfg, lr, steps_per_epoch, epochs)
    out = []
    for _ in range(steps_per_epoch * epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    return out


def test_cosine_with_warmup_follows_formula():
    lrs = _lrs(SchedConfig(name="cosine", warmup_epochs=1, warmup_start=0.1, min_lr=0.0))
    assert lrs[:4] == pytest.approx([0.1 + 0.9 * s / 4 for s in range(4)])
    for step in range(4, 20):
        assert lrs[step] == pytest.approx(0.5 * (1 + math.cos(math.pi * (step - 4) / 16)))


def test_step_schedule():
    lrs = _lrs(SchedConfig(name="step", milestones=[2, 4], gamma=0.1))
    assert lrs == pytest.approx([1.0] * 8 + [0.1] * 8 + [0.01] * 4)


def test_no_decay_groups():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    groups = param_groups(model, OptimConfig(weight_decay=0.1))
    assert [len(g["params"]) for g in groups] == [2, 4] and groups[1]["weight_decay"] == 0.0
    opt = build_optimizer(model, OptimConfig(name="adamw", lr=0.01, weight_decay=0.1, no_decay_1d=False))
    assert isinstance(opt, torch.optim.AdamW) and len(opt.param_groups) == 1
