"""Evaluation of a model on a loader: loss, top-1/top-5 and the mean firing rate, summed over ranks."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spikevision.neuron.rates import FiringRateMonitor
from spikevision.train.distributed import DistInfo, all_reduce_sum

__all__ = ["evaluate", "topk_correct"]


def topk_correct(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Correct top-1 and top-5 counts of ``logits`` ``[B, K]`` for labels ``y`` ``[B]`` (top-k with k <= K)."""
    k = min(5, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices  # [B, k]
    hit = top == y.unsqueeze(-1)
    return hit[:, 0].sum(), hit.any(-1).sum()


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, device: torch.device, dist: DistInfo | None = None,
             amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Loss, top-1/top-5 (%) and mean firing rate over ``loader``, summed over ranks."""
    dist = dist or DistInfo(device=device)
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, top1, top5, n
    with FiringRateMonitor(model, allow_empty=True) as spikes:  # sums on the device: no sync per batch
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                logits = model(x).float()
            top1, top5 = topk_correct(logits, y)
            loss = nn.functional.cross_entropy(logits, y, reduction="sum")
            count = torch.tensor(float(len(y)), dtype=torch.float64, device=device)
            sums += torch.stack([loss.double(), top1.double(), top5.double(), count])
    rates = spikes.spike_totals(device)
    all_reduce_sum(sums, dist)
    all_reduce_sum(rates, dist)
    model.train(was_training)
    n = max(1.0, sums[3].item())
    return {"loss": sums[0].item() / n, "top1": 100 * sums[1].item() / n, "top5": 100 * sums[2].item() / n,
            "firing_rate": rates[0].item() / max(1.0, rates[1].item()), "samples": int(sums[3].item())}
