"""The synchronised-BatchNorm check, one rank per process: ``python _sync_bn_worker.py RANK WORLD STORE OUT``.

:func:`bn_layers`, :func:`bn_inputs` and :func:`bn_step` are shared with ``test_distributed.py``, which runs
the plain layers on the whole batch in one process as the reference. Each worker joins a gloo group through a
FileStore (a file, no network port), converts the layers with ``convert_sync_batchnorm``, runs its share of
the global batch and saves outputs, gradients and running statistics to OUT.
"""

import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from spikevision.layers import BNTT2d, TDBatchNorm1d, TDBatchNorm2d, TokenBatchNorm1d, convert_sync_batchnorm

T, B = 2, 8  # time steps, global batch


def bn_layers() -> list[nn.Module]:
    """Every kind of BatchNorm spikevision has, with random affine parameters."""
    torch.manual_seed(0)
    layers = [TDBatchNorm2d(3, weight_init=0.5), TDBatchNorm2d(3, momentum=None), TDBatchNorm1d(5),
              TDBatchNorm1d(5), TokenBatchNorm1d(4), BNTT2d(3, T=T, bias=False)]
    for m in layers:
        for p in m.parameters():
            if p.requires_grad:
                p.data.uniform_(0.5, 1.5)
    return layers


def bn_inputs() -> list[torch.Tensor]:
    """The global batch of each layer of :func:`bn_layers`, ``[T, B, ...]``, away from zero mean and unit variance."""
    g = torch.Generator().manual_seed(1)
    shapes = [(T, B, 3, 4, 4), (T, B, 3, 4, 4), (T, B, 5), (T, B, 5, 3), (T, B, 4, 6), (T, B, 3, 4, 4)]
    return [torch.randn(s, generator=g) * 2.0 + 1.0 for s in shapes]


def bn_step(layers: list[nn.Module], inputs: list[torch.Tensor], rank: int, world: int) -> list[dict]:
    """Training forward and backward of this rank's batch share, then an eval forward of the whole batch."""
    g = torch.Generator().manual_seed(2)
    out = []
    for m, x in zip(layers, inputs):
        share = x.shape[1] // world
        grad_out = torch.randn(x.shape, generator=g)  # d loss / d output of the global batch
        xs = x[:, rank * share:(rank + 1) * share].clone().requires_grad_(True)
        m.train()
        y = m(xs)
        (y * grad_out[:, rank * share:(rank + 1) * share]).sum().backward()
        m.eval()
        with torch.no_grad():
            y_eval = m(x)
        out.append({"y": y.detach(), "x_grad": xs.grad,
                    "param_grads": {n: p.grad for n, p in m.named_parameters() if p.grad is not None},
                    "buffers": {n: b.clone() for n, b in m.named_buffers()}, "y_eval": y_eval})
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    rank, world, store_file, out_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", store=dist.FileStore(store_file, world), rank=rank, world_size=world,
                            timeout=timedelta(seconds=300))
    try:
        torch.save(bn_step([convert_sync_batchnorm(m) for m in bn_layers()], bn_inputs(), rank, world), out_file)
    finally:
        dist.destroy_process_group()
