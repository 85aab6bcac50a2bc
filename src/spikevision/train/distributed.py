"""Distributed data parallel behind three small helpers (torchrun-launched).

``torchrun --nproc_per_node=N -m spikevision train CONFIG`` sets ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them (it is only called from the ``train``
entry point) and joins the process group: NCCL on CUDA, gloo on CPU. Without
those variables everything degrades to one process and the helpers are no-ops.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "init_distributed", "all_reduce_sum", "wrap_ddp", "convert_sync_bn", "wait_for_all_ranks",
           "cleanup_distributed"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands.

    Attributes:
        rank: global rank. local_rank: rank on this node. world_size: processes.
        device: this process's device.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files or logs."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Read torchrun's environment, pick the device, join the process group.

    Args:
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.

    Raises:
        ValueError: ``device="cuda"`` without a GPU.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device='cuda' but no CUDA device is available; use train.device=cpu or auto")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    return DistInfo(rank, local_rank, world_size, dev)


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``t`` over ranks in place (a no-op in a single process); returns ``t``."""
    if info.is_distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def wrap_ddp(model: nn.Module, info: DistInfo, sync_bn: bool) -> nn.Module:
    """``DistributedDataParallel`` (optionally with SyncBatchNorm) in a distributed run, else ``model``."""
    if not info.is_distributed:
        return model
    if sync_bn and info.device.type != "cuda":
        raise ValueError("train.sync_bn=true needs CUDA: torch's SyncBatchNorm synchronises GPU tensors only; "
                         "set train.sync_bn=false for CPU (gloo) runs")
    if sync_bn:
        convert_sync_bn(model)
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


_SYNC_CLASSES: dict[type, type] = {}


def convert_sync_bn(model: nn.Module) -> nn.Module:
    """Make every BatchNorm layer synchronise its statistics across ranks, in place.

    ``nn.SyncBatchNorm.convert_sync_batchnorm`` replaces each layer by a plain
    ``SyncBatchNorm`` and so would drop our subclasses' ``forward`` (which
    folds ``[T, B, ...]`` before normalising: ``TDBatchNorm2d``,
    ``TokenBatchNorm1d``). Instead each layer's class becomes a subclass of
    its own class and ``SyncBatchNorm``: the subclass's ``super().forward``
    then resolves to ``SyncBatchNorm.forward``. Parameters, buffers and
    ``state_dict`` keys are unchanged.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm):
            cls = type(m)
            if cls not in _SYNC_CLASSES:
                _SYNC_CLASSES[cls] = type(f"Sync{cls.__name__}", (cls, nn.SyncBatchNorm), {})
            m.__class__ = _SYNC_CLASSES[cls]
            m.process_group = None  # the default (world) group
    return model


def wait_for_all_ranks(info: DistInfo) -> None:
    """Barrier (a no-op in a single process): no rank leaves while another still communicates or writes."""
    if info.is_distributed:
        dist.barrier()


def cleanup_distributed() -> None:
    """Leave the process group (if any) while the interpreter is fully alive.

    Callers drop their ``DistributedDataParallel`` wrapper first: its reducer
    holds the gloo group, and a group whose last reference dies during
    interpreter shutdown has worker threads that try to take the GIL there
    and abort the process (``terminate called without an active exception``).
    Collecting garbage here destroys the group, and joins its threads, now.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()
