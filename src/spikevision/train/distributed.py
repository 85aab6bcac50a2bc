"""Distributed data parallel behind small helpers (torchrun-launched).

``torchrun --nproc_per_node=N -m spikevision train CONFIG`` sets ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them (it is only called from the ``train``
entry point) and joins the process group: NCCL on CUDA, gloo on CPU. Without
those variables everything degrades to one process and the helpers are no-ops.

Failure handling (a rank frozen, e.g. stopped with SIGSTOP, or stuck):

* every collective has a deadline, ``train.dist_timeout_s`` (default 600 s,
  NCCL's own: room for rank 0 writing a large checkpoint or a slow first
  batch, yet a frozen rank is noticed);
  with gloo the waiting ranks then raise and :func:`collective_timeout_error`
  turns that into a :class:`CollectiveTimeoutError` naming the setting (with
  NCCL, torch's watchdog aborts the process, logging the same timeout);
* :class:`SignalDeadline`: after SIGINT/SIGTERM a rank has
  :data:`SIGNAL_GRACE_S` seconds to finish its step and save, then exits;
  a rank blocked in a collective runs no Python code, so without it the
  signal would wait for the collective's deadline while launchers send
  SIGKILL 30 s after SIGTERM (torchrun, Slurm).
"""

from __future__ import annotations

import gc
import logging
import os
import select
import signal
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "init_distributed", "all_reduce_sum", "wrap_ddp", "wait_for_all_ranks",
           "cleanup_distributed", "CollectiveTimeoutError", "collective_timeout_error", "SignalDeadline",
           "SIGNAL_GRACE_S"]

log = logging.getLogger(__name__)

#: Seconds a rank has after SIGINT/SIGTERM to finish its step and save: torchrun and Slurm send SIGKILL 30 s
#: after SIGTERM, so the message and the exit come before that.
SIGNAL_GRACE_S = 20.0
# what a timed-out collective says (a plain RuntimeError): gloo "Timed out waiting 5000ms for recv operation to
# complete", the store "wait timeout after 5000ms"; not the DataLoader's "DataLoader timed out after 5 seconds"
_TIMEOUT_WORDS = ("timed out waiting", "timeout")


class CollectiveTimeoutError(TimeoutError):
    """A collective operation waited longer than ``train.dist_timeout_s`` for another rank.

    A ``TimeoutError`` (so an ``OSError``): what the ``train`` command reports in one line.
    """


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


def init_distributed(device: str, *, timeout_s: float) -> DistInfo:
    """Read torchrun's environment, pick the device, join the process group.

    Args:
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
        timeout_s: how long the rendezvous and every collective may wait for
            the other ranks (seconds) before raising (gloo) or aborting (NCCL).

    Raises:
        ValueError: ``device="cuda"`` without a GPU; ``timeout_s <= 0``.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device='cuda' but no CUDA device is available; use train.device=cpu or auto")
    if not timeout_s > 0:
        raise ValueError(f"train.dist_timeout_s must be > 0 seconds, got {timeout_s}")
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
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout_s))
    return DistInfo(rank, local_rank, world_size, dev)


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``t`` over ranks in place (a no-op in a single process); returns ``t``."""
    if info.is_distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def wrap_ddp(model: nn.Module, info: DistInfo, sync_bn: bool) -> nn.Module:
    """``DistributedDataParallel`` in a distributed run, else ``model``.

    With ``sync_bn`` every BatchNorm of ``model`` is first replaced, in place,
    by a synchronised one (:func:`spikevision.layers.convert_sync_batchnorm`,
    CPU/gloo and CUDA/NCCL alike): the statistics are then those of the global
    batch, as in one process.
    """
    if not info.is_distributed:
        return model
    if sync_bn:
        from spikevision.layers.norm import convert_sync_batchnorm

        model = convert_sync_batchnorm(model)
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def wait_for_all_ranks(info: DistInfo) -> None:
    """Barrier (a no-op in a single process): no rank leaves while another still communicates or writes."""
    if info.is_distributed:
        dist.barrier()


def collective_timeout_error(e: BaseException, info: DistInfo, timeout_s: float,
                             last_checkpoint: Path) -> CollectiveTimeoutError | None:
    """The :class:`CollectiveTimeoutError` that ``e`` stands for, or None if ``e`` is something else.

    ``e`` counts when the run is distributed and it is a ``RuntimeError`` (what
    gloo and the rendezvous store raise) saying that it timed out.
    """
    if not (info.is_distributed and isinstance(e, RuntimeError)):
        return None
    if not any(w in str(e).lower() for w in _TIMEOUT_WORDS):
        return None
    kept = f"the last checkpoint is {last_checkpoint}" if last_checkpoint.is_file() else "no checkpoint was written"
    return CollectiveTimeoutError(
        f"rank {info.rank}: a collective operation waited more than train.dist_timeout_s={timeout_s:g} s for the "
        f"other ranks; one of them is frozen, dead or far behind. This rank stops without saving ({kept}). Stop "
        f"the other ranks (torchrun does), then continue with --resume; if a rank is legitimately slow (a long "
        f"checkpoint write, a slow first batch), raise train.dist_timeout_s")


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


_STOP_WATCHING = 0  # a byte that is no signal number: :meth:`SignalDeadline.stop` wakes the thread with it


class SignalDeadline:
    """Exit the process if the loop does not finish within ``grace_s`` after SIGINT/SIGTERM (or at a second one).

    The loop's own handler only records the signal; the step finishes, a
    checkpoint is saved and the run leaves. But a rank blocked in a
    collective (another rank frozen) runs no Python code, so that handler
    would not even run before the collective's deadline. Python's C-level
    handler still writes the signal number to the wakeup fd
    (``signal.set_wakeup_fd``); a thread reading it gives the loop ``grace_s``
    seconds, then logs what happened and exits with ``128 + signum`` without
    saving (the checkpoint on disk, written atomically, is kept).

    Use from the main thread, after the loop's handlers are installed::

        deadline = SignalDeadline(SIGNAL_GRACE_S, rank, ckpt_dir / "last.pt").start()
        try: ...
        finally: deadline.stop()
    """

    def __init__(self, grace_s: float, rank: int, last_checkpoint: Path) -> None:
        self.grace_s, self.rank, self.last_checkpoint = grace_s, rank, last_checkpoint
        self._pipe: tuple[int, int] | None = None
        self._old_fd = -1
        self._thread: threading.Thread | None = None

    def start(self) -> "SignalDeadline":
        if threading.current_thread() is not threading.main_thread():
            return self  # signals go to the main thread only; nothing to watch
        r, w = os.pipe()
        os.set_blocking(w, False)  # set_wakeup_fd needs a non-blocking fd
        self._pipe = (r, w)
        self._old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="spikevision-signal-deadline", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._pipe is None:
            return
        r, w = self._pipe
        signal.set_wakeup_fd(self._old_fd)
        try:
            os.write(w, bytes([_STOP_WATCHING]))
        except BlockingIOError:  # the pipe is full of signal bytes; the thread is past reading them anyway
            pass
        if self._thread is not None:
            self._thread.join()
        os.close(r)
        os.close(w)
        self._pipe, self._thread = None, None

    def _next(self, timeout_s: float | None) -> int | None:
        """The next stop signal number, ``_STOP_WATCHING``, or None after ``timeout_s`` seconds."""
        r = self._pipe[0]
        while True:
            ready, _, _ = select.select([r], [], [], timeout_s)
            if not ready:
                return None
            for b in os.read(r, 64):
                if b == _STOP_WATCHING or b in (signal.SIGINT, signal.SIGTERM):
                    return b
            # other signals with Python handlers (SIGCHLD of data-loader workers) are not ours; keep waiting

    def _watch(self) -> None:
        first = self._next(None)
        if first == _STOP_WATCHING:
            return
        second = self._next(self.grace_s)
        if second == _STOP_WATCHING:
            return
        name = signal.Signals(first).name
        why = (f"a second {signal.Signals(second).name} arrived" if second is not None else
               f"the current step did not finish within {self.grace_s:g} s (is this rank blocked in a collective "
               f"by a frozen or dead rank?)")
        kept = (f"the last checkpoint is {self.last_checkpoint}" if self.last_checkpoint.is_file()
                else "no checkpoint was written")
        log.error(f"rank {self.rank}: stopped by {name}; {why}; exiting without saving ({kept}); "
                  f"continue with the same command plus --resume")
        logging.shutdown()  # flush the handlers: os._exit skips the interpreter's own clean-up
        os._exit(128 + first)
