"""The training engine: small ``build_*`` set-up functions, then one loop, :func:`fit`.

Use (what ``spikevision train CONFIG [key=value ...] [--resume]`` does)::

    cfg = load_config("configs/quickstart.yaml", ["train.epochs=3"])
    summary = train(cfg, resume=False)

Single process: ``spikevision train configs/quickstart.yaml``. Several
processes (DDP, gloo on CPU, NCCL on CUDA)::

    torchrun --nproc_per_node=4 -m spikevision train configs/quickstart.yaml

Features: SGD/AdamW with per-step cosine/step schedules and warm-up; loss on
time-averaged logits (CE, label smoothing, soft targets for Mixup/CutMix) or
TET on per-step logits; AMP (bf16 autocast on CPU, fp16 + gradient scaler on
CUDA) only when enabled; gradient clipping; DDP with optional SyncBN; metrics
all-reduced, written only by rank 0 (``metrics.jsonl``, TensorBoard);
checkpoints every epoch and every ``train.ckpt_every_steps`` steps, exact
resume mid-epoch (the data order of epoch ``e`` is a function of ``(seed, e)``
and the skipped batches are re-drawn, not re-trained); SIGINT/SIGTERM save a
checkpoint and exit; a NaN/inf loss stops the run, keeping the last good checkpoint.
One process trains a run directory at a time (:class:`~spikevision.train.checkpoint.RunLock`).
On ``--resume``, changed optimiser and schedule settings (``optim.lr``, ``sched.*``,
``train.epochs``, ...) replace the checkpoint's from the restored step on, with a notice.
Without a terminal (a log file), progress is a plain line every ``run.progress_every_s`` seconds.

Raises (before anything runs): :class:`~spikevision.train.config.ConfigError`
for invalid configs; ``FileExistsError`` for a new run over an existing one, and
its subclass :class:`~spikevision.train.checkpoint.RunDirectoryBusyError` when another
process trains in the run directory; ``FileNotFoundError`` for ``--resume`` without a
checkpoint; ``ValueError`` for a checkpoint whose model differs from the config, a
``--resume`` that changes ``optim.name``/``optim.no_decay_*``, or TET with a model
lacking ``forward_head(per_step=True)``. While running:
:class:`~spikevision.train.checkpoint.CheckpointWriteError` when a checkpoint cannot
be written (the previous one is kept).
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import logging
import math
import random
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from spikevision.neuron.rates import FiringRateMonitor
import spikevision.train.checkpoint as ck
from spikevision.layers.memory_format import to_channels_last
from spikevision.train.allocator import keep_freed_memory
from spikevision.train.checkpoint import BEST, CHECKPOINT_DIR, CONFIG_FILE, LAST, METRICS_FILE  # the run directory
from spikevision.train.config import Config
from spikevision.train.distributed import (SIGNAL_GRACE_S, DistInfo, SignalDeadline, all_reduce_sum,
                                           cleanup_distributed, collective_timeout_error, init_distributed,
                                           wait_for_all_ranks, wrap_ddp)
from spikevision.train.evaluation import evaluate, topk_correct
from spikevision.train.losses import build_loss
from spikevision.train.optim import build_optimizer, build_scheduler, changed_settings, retune
from spikevision.train.run_log import machine_history, progress_lines, trim_metrics

__all__ = ["train", "fit", "evaluate", "setup", "Trainer", "TrainState", "NonFiniteLossError",
           "TrainingInterrupted", "SpikeCounter", "build_model", "build_loaders", "progress_lines"]

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stopped, the last checkpoint is kept."""


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM arrived; a checkpoint was saved. ``signum`` is the signal."""

    def __init__(self, signum: int, path: Path) -> None:
        self.signum, self.path = signum, path
        super().__init__(f"stopped by {signal.Signals(signum).name}; checkpoint saved to {path}; "
                         "continue with the same command plus --resume")


# ---------------------------------------------------------------------------
# small helpers: metrics, firing rates, the logits module, stop flag
# ---------------------------------------------------------------------------

class SpikeCounter(FiringRateMonitor):
    """Deprecated: :class:`~spikevision.neuron.FiringRateMonitor` (``allow_empty=True``) is the one spike counter.

    Kept for code written against it: ``totals`` is
    :meth:`~spikevision.neuron.FiringRateMonitor.spike_totals` and ``modules`` the neuron modules.
    """

    def __init__(self, model: nn.Module) -> None:
        warnings.warn("spikevision.train.engine.SpikeCounter is deprecated; use "
                      "spikevision.neuron.FiringRateMonitor(model, allow_empty=True) and its spike_totals()",
                      DeprecationWarning, stacklevel=2)
        super().__init__(model, allow_empty=True)
        self.modules = list(self.layers.values())

    @property
    def totals(self) -> Tensor:
        """``[spikes, neuron-steps]`` (float64)."""
        return self.spike_totals()


class LogitsModule(nn.Module):
    """What DDP wraps: the model's logits, time-averaged ``[B, K]`` or per step ``[T, B, K]`` (TET)."""

    def __init__(self, model: nn.Module, per_step: bool) -> None:
        super().__init__()
        self.model, self.per_step = model, per_step

    def forward(self, x: Tensor) -> Tensor:
        # the model's own forward owns the per-step choice (SpikingClassifier.forward)
        return self.model(x, per_step=True) if self.per_step else self.model(x)


class StopFlag:
    """Records SIGINT/SIGTERM instead of dying, so the loop can save and exit cleanly."""

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}


@dataclass
class TrainState:
    """Position in training; all of it goes into checkpoints."""

    epoch: int = 0
    step: int = 0
    epoch_step: int = 0
    best_top1: float = -1.0
    meter: Tensor = field(default_factory=lambda: torch.zeros(4, dtype=torch.float64))  # loss, top1, top5, n
    train_time_s: float = 0.0
    machines: list[str] = field(default_factory=list)  # run_log.machine_history


@dataclass
class Trainer:
    """Everything :func:`fit` needs, made by :func:`setup`."""

    cfg: Config
    dist: DistInfo
    model: nn.Module  # the bare model: saved, evaluated
    net: nn.Module  # what is trained: LogitsModule, DDP-wrapped when distributed
    model_kwargs: dict[str, Any]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    loss_fn: nn.Module
    mixup: Any
    train_loader: Any
    eval_loader: Any
    run_dir: Path
    state: TrainState
    stop: StopFlag
    writer: Any = None
    lock: ck.RunLock | None = None  # held by rank 0 while it trains the run directory
    clock: Callable[[], float] = time.monotonic  # paces the plain progress lines (tests pass a fake one)
    holdout_loader: Any = None  # data.holdout > 0: the held-out part of the training split, chooses best.pt
    session_start: float = field(default_factory=time.perf_counter)

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / CHECKPOINT_DIR


# ---------------------------------------------------------------------------
# build_*: set-up, one concern each
# ---------------------------------------------------------------------------

def build_model(cfg: Config, num_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    """The registered model with ``cfg.model.kwargs`` (``num_classes`` filled from the data set if the builder
    takes it; with ``model.pretrained``, the card's and its weights) and its complete builder arguments."""
    from spikevision.models.factory import create_model
    from spikevision.models.registry import get_model_info

    kwargs = dict(cfg.model.kwargs)
    params = inspect.signature(get_model_info(cfg.model.name).builder).parameters
    if "num_classes" in params and kwargs.get("num_classes") is None:
        kwargs["num_classes"] = num_classes
    model = create_model(cfg.model.name, pretrained=cfg.model.pretrained, **kwargs)
    if cfg.model.pretrained is not None:  # the card's arguments complete the checkpoint's
        from spikevision.weights import read_card

        kwargs = {**read_card(cfg.model.name, cfg.model.pretrained)["model_kwargs"], **kwargs}
        log.info(f"model: {cfg.model.name} starts from its shipped {cfg.model.pretrained!r} weights")
    if cfg.train.memory_saving:
        from spikevision.train.memory_saving import enable_memory_saving

        enable_memory_saving(model)
    return model, kwargs


def build_loaders(cfg: Config, dist: DistInfo, T: int | None) -> tuple[Any, Any, Any]:
    """Training, test and holdout loaders (None without ``data.holdout``), sharded over ranks (event data get
    ``frames = T``)."""
    from spikevision.data import build_loader, get_dataset_info

    if get_dataset_info(cfg.data.name).is_event and cfg.data.frames is None:
        cfg.data.frames = T
    splits = ("train", "test", "holdout") if cfg.data.holdout > 0 else ("train", "test")
    loaders = [build_loader(cfg.data, s, rank=dist.rank, world_size=dist.world_size) for s in splits]
    return loaders[0], loaders[1], loaders[2] if len(loaders) == 3 else None


def cpu_has_bf16() -> bool:
    """The CPU has bf16 instructions (AVX512-BF16 or AMX), so bf16 autocast can beat float32."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def build_amp(cfg: Config, device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """Autocast dtype (None = off) and a gradient scaler (enabled only for fp16 on CUDA).

    ``train.amp: auto`` keeps float32 on a CPU without bf16 instructions; ``true`` there warns (measured
    on an AVX2-only CPU by ``bench/amp_cpu.py``: a bf16 MS-ResNet training step took about 12x the float32
    step's CPU time)."""
    amp, dtype = cfg.train.amp, None
    if amp == "auto":
        amp = device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())
    if amp:
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        if device.type == "cpu" and not cpu_has_bf16():
            log.warning("train.amp: this CPU has no bf16 instructions (capability %s), so bf16 autocast is "
                        "emulated and much slower than float32; set train.amp to auto or false",
                        torch.backends.cpu.get_cpu_capability())
    return dtype, torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def _seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def _prepare_run_dir(cfg: Config, resume: bool) -> Path:
    run_dir = cfg.run.run_dir
    last = run_dir / CHECKPOINT_DIR / LAST
    if resume and not last.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {last}; start the run without --resume")
    if not resume and last.exists():
        raise FileExistsError(f"run directory {run_dir} already holds a run; continue it with --resume, "
                              f"or start another with run.name=<new name>")
    return run_dir


def setup(cfg: Config, resume: bool = False) -> Trainer:
    """Build everything from a validated config; with ``resume``, restore ``last.pt`` exactly.

    Rank 0 locks the run directory first (:class:`~spikevision.train.checkpoint.RunLock`), so a second
    run of the same ``run.name`` fails with ``RunDirectoryBusyError`` before writing anything; the lock
    is kept in ``Trainer.lock`` and released by :func:`train` (or when the process ends).
    """
    run_dir = _prepare_run_dir(cfg, resume)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.set_flush_denormal(cfg.train.flush_denormal)
    if cfg.train.keep_freed_memory:
        keep_freed_memory()
    dist = init_distributed(cfg.train.device, timeout_s=cfg.train.dist_timeout_s)
    lock = ck.RunLock(run_dir) if dist.is_main else None
    try:
        _prepare_run_dir(cfg, resume)  # again under the lock: another run may have started or ended meanwhile
        tr = _build(cfg, resume, dist, run_dir)
    except BaseException:
        if lock is not None:
            lock.release(discard=True)  # a new run directory that failed to set up is removed again
        raise
    tr.lock = lock
    return tr


def _build(cfg: Config, resume: bool, dist: DistInfo, run_dir: Path) -> Trainer:
    """The rest of :func:`setup`, under the run directory's lock: seed, build, restore, write config.yaml."""
    from spikevision.data import build_mixup, get_dataset_info

    _seed_everything(cfg.train.seed, cfg.train.deterministic)
    num_classes = get_dataset_info(cfg.data.name).num_classes
    model, kwargs = build_model(cfg, num_classes)
    loss_fn = build_loss(cfg.train)
    if loss_fn.per_step and not all(hasattr(model, a) for a in ("forward_head", "forward_features", "encode")):
        raise ValueError(f"train.loss=tet needs per-step logits, but {cfg.model.name} has no "
                         "forward_head(features, per_step=True); use train.loss=ce")
    model.to(dist.device)
    if cfg.train.channels_last:
        to_channels_last(model)
    net = wrap_ddp(LogitsModule(model, loss_fn.per_step), dist, cfg.train.sync_bn)
    train_loader, eval_loader, holdout_loader = build_loaders(cfg, dist, getattr(model, "T", None))
    if len(train_loader) == 0:
        raise ValueError(f"the training split gives no full batch of data.batch_size={cfg.data.batch_size} "
                         f"per process ({dist.world_size} processes); lower data.batch_size")
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.sched, cfg.optim.lr, len(train_loader), cfg.train.epochs)
    amp_dtype, scaler = build_amp(cfg, dist.device)
    tr = Trainer(cfg, dist, model, net, kwargs, optimizer, scheduler, scaler, amp_dtype, loss_fn,
                 build_mixup(cfg.data, num_classes), train_loader, eval_loader, run_dir, TrainState(), StopFlag(),
                 holdout_loader=holdout_loader)
    if resume:
        _restore(tr, ck.load_checkpoint(tr.ckpt_dir / LAST, map_location=dist.device))
        if dist.is_main:
            trim_metrics(run_dir / METRICS_FILE, tr.state.epoch)
    tr.state.machines = machine_history(tr.state.machines, resume)
    if dist.is_main:
        tr.ckpt_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        if cfg.run.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            tr.writer = SummaryWriter(log_dir=str(run_dir))
    return tr


# ---------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------

def checkpoint_state(tr: Trainer) -> dict[str, Any]:
    """The dict saved as ``last.pt``/``best.pt`` (keys: :mod:`spikevision.train.checkpoint`)."""
    st = tr.state
    return {
        ck.VERSION_KEY: ck.FORMAT_VERSION, ck.MODEL_KEY: tr.model.state_dict(),
        ck.MODEL_NAME_KEY: tr.cfg.model.name, ck.MODEL_KWARGS_KEY: tr.model_kwargs,
        ck.CONFIG_KEY: tr.cfg.to_dict(), ck.EPOCH_KEY: st.epoch, ck.STEP_KEY: st.step,
        ck.EPOCH_STEP_KEY: st.epoch_step, ck.OPTIMIZER_KEY: tr.optimizer.state_dict(),
        ck.SCHEDULER_KEY: tr.scheduler.state_dict(), ck.SCALER_KEY: tr.scaler.state_dict(),
        ck.RNG_KEY: ck.capture_rng_state(), ck.BEST_KEY: st.best_top1, ck.METER_KEY: st.meter.cpu(),
        ck.TRAIN_TIME_KEY: st.train_time_s + time.perf_counter() - tr.session_start,
        ck.LAYOUT_KEY: _epoch_layout(tr), ck.MACHINES_KEY: st.machines,
    }


_LAYOUT_FIELDS = ("batches", "global_batch")


def _epoch_layout(tr: Trainer) -> dict[str, int]:
    return {"batches": len(tr.train_loader), "global_batch": tr.cfg.data.batch_size * tr.dist.world_size}


def _relayout(tr: Trainer, saved: dict[str, int], epoch: int, epoch_step: int) -> tuple[int, int]:
    """Where a run resumed with another batch size or process count continues: ``(step, epoch_step)``.

    The schedule keeps its place in epochs (the new steps per epoch times the epochs done), and a
    run stopped mid-epoch skips the samples it already saw, rounded down (a few are seen twice, none
    skipped; with another process count each process's share of the epoch changes, so the rest of that
    one epoch is approximate)."""
    now = _epoch_layout(tr)
    epoch_step = min(epoch_step * saved["global_batch"] // now["global_batch"], now["batches"])
    step = epoch * now["batches"] + epoch_step
    if tr.dist.is_main:
        log.info(f"--resume: {saved['batches']} -> {now['batches']} steps per epoch (global batch "
                 f"{saved['global_batch']} -> {now['global_batch']}); the schedule continues from epoch {epoch} "
                 f"+ {epoch_step}/{now['batches']} (step {step})")
    return step, epoch_step


def _save(tr: Trainer, name: str) -> Path:
    path = tr.ckpt_dir / name
    if tr.dist.is_main:  # only rank 0 writes
        ck.save_checkpoint(path, checkpoint_state(tr))
    return path


def _restore(tr: Trainer, state: dict[str, Any]) -> None:
    if state[ck.MODEL_NAME_KEY] != tr.cfg.model.name or state[ck.MODEL_KWARGS_KEY] != tr.model_kwargs:
        raise ValueError(f"the checkpoint holds {state[ck.MODEL_NAME_KEY]}({state[ck.MODEL_KWARGS_KEY]}) but the "
                         f"config builds {tr.cfg.model.name}({tr.model_kwargs}); resume with the run's own "
                         f"config ({tr.run_dir / CONFIG_FILE})")
    changes = changed_settings(state[ck.CONFIG_KEY], tr.cfg.to_dict())  # raises before anything is loaded
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in tr.optimizer.param_groups]  # the config's
    tr.model.load_state_dict(state[ck.MODEL_KEY])
    tr.optimizer.load_state_dict(state[ck.OPTIMIZER_KEY])
    tr.scheduler.load_state_dict(state[ck.SCHEDULER_KEY])
    if changes:  # the config wins over the checkpoint; nothing changed = untouched (exact resume)
        retune(tr.optimizer, tr.scheduler, fresh)
        if tr.dist.is_main:
            log.info(f"--resume: {', '.join(changes)}; applied from step {state[ck.STEP_KEY]} on "
                     f"(learning rate now {tr.optimizer.param_groups[0]['lr']:.4g})")
    tr.scaler.load_state_dict(state[ck.SCALER_KEY])
    epoch, step, epoch_step = state[ck.EPOCH_KEY], state[ck.STEP_KEY], state[ck.EPOCH_STEP_KEY]
    saved = state.get(ck.LAYOUT_KEY)
    valid = isinstance(saved, dict) and all(type(saved.get(k)) is int and saved[k] > 0 for k in _LAYOUT_FIELDS)
    if valid and saved != _epoch_layout(tr):
        step, epoch_step = _relayout(tr, saved, epoch, epoch_step)
        tr.scheduler.last_epoch = step
        retune(tr.optimizer, tr.scheduler, fresh)  # the rate at the schedule's new position
    tr.state = TrainState(epoch, step, epoch_step, state[ck.BEST_KEY], state[ck.METER_KEY].to(torch.float64),
                          state[ck.TRAIN_TIME_KEY], state.get(ck.MACHINES_KEY))
    ck.restore_rng_state(state[ck.RNG_KEY])  # last: building the model above consumed random numbers


# ---------------------------------------------------------------------------
# logging
# ---------------------------------------------------------------------------

def _evaluate_epoch(tr: Trainer, epoch: int) -> dict[str, float]:
    """The test split's metrics (``test_*``, ``firing_rate``), and the holdout's (``holdout_*``) if any."""
    dev, out = tr.dist.device, {}
    if tr.holdout_loader is not None:
        held = _progress(tr.holdout_loader, tr, f"epoch {epoch} holdout", len(tr.holdout_loader))
        ev = evaluate(tr.model, held, dev, tr.dist, tr.amp_dtype)
        out.update({"holdout_loss": ev["loss"], "holdout_top1": ev["top1"], "holdout_top5": ev["top5"]})
    tests = _progress(tr.eval_loader, tr, f"epoch {epoch} test", len(tr.eval_loader))
    ev = evaluate(tr.model, tests, dev, tr.dist, tr.amp_dtype)
    out.update({"test_loss": ev["loss"], "test_top1": ev["top1"], "test_top5": ev["top5"],
                "firing_rate": ev["firing_rate"]})
    return out


def _log_epoch(tr: Trainer, record: dict[str, Any]) -> None:
    if not tr.dist.is_main:
        return
    with open(tr.run_dir / METRICS_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")
    if tr.writer is not None:
        for k, v in record.items():
            if k != "epoch" and isinstance(v, (int, float)):
                tr.writer.add_scalar(f"epoch/{k}", v, record["epoch"])
        tr.writer.flush()
    test = f", holdout top-1 {record['holdout_top1']:.2f}%" if "holdout_top1" in record else ""
    test += f", test top-1 {record['test_top1']:.2f}%" if "test_top1" in record else ""
    log.info(f"epoch {record['epoch']}: loss {record['train_loss']:.4f}, train top-1 {record['train_top1']:.2f}%"
             f"{test}, lr {record['lr']:.3g}, {record['throughput']:.0f} img/s, {record['epoch_time_s']:.1f} s")


def _progress(it: Iterable, tr: Trainer, desc: str, total: int, done: int = 0,
              status: Callable[[], str] | None = None) -> Iterable:
    """A tqdm bar on a terminal (or with ``run.progress=on``); plain lines into a log file; rank 0 only."""
    mode = tr.cfg.run.progress
    if not tr.dist.is_main or mode in ("off", False):
        return it
    if mode in ("on", True) or sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(it, total=total, initial=done, desc=desc, leave=False, dynamic_ncols=True)
    return progress_lines(it, total, desc, tr.cfg.run.progress_every_s, tr.clock, done, status)


def _check_step(tr: Trainer, loss: Tensor) -> float:
    """Global mean loss as a float; raise on NaN/inf. ``.item()`` is a host-device sync point,
    paid every step so that a NaN never reaches the weights; under DDP the stop flag rides along
    so every rank stops at the same step."""
    v = torch.stack([loss.detach().float(), torch.tensor(float(tr.stop.signum > 0), device=loss.device)])
    all_reduce_sum(v, tr.dist)
    value, stop = v[0].item() / tr.dist.world_size, v[1].item() > 0
    if not math.isfinite(value):
        last = tr.ckpt_dir / LAST
        kept, then = ((f"the last good checkpoint is {last}", "resume with --resume") if last.exists() else
                      ("no checkpoint was written yet, so the new run directory is removed", "train again"))
        raise NonFiniteLossError(
            f"training loss is {value} at epoch {tr.state.epoch}, step {tr.state.step}; stopped without saving "
            f"({kept}). Lower optim.lr, set train.clip_grad (e.g. 1.0) or turn off train.amp, then {then}")
    if stop and not tr.stop.signum:
        tr.stop.signum = signal.SIGTERM
    return value


# ---------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------

def fit(tr: Trainer) -> dict[str, Any]:
    """Train from ``tr.state`` to ``train.epochs``; returns the last epoch's record."""
    from spikevision.data import set_loader_epoch

    cfg, st, dev = tr.cfg.train, tr.state, tr.dist.device
    record: dict[str, Any] = {}

    def running_loss() -> str:  # this epoch's mean loss so far, for the progress lines
        return f"loss {st.meter[0].item() / max(1.0, st.meter[3].item()):.4f}"

    for epoch in range(st.epoch, cfg.epochs):
        st.epoch = epoch
        set_loader_epoch(tr.train_loader, epoch)  # data order = f(seed, epoch): identical after a resume
        if hasattr(tr.mixup, "set_epoch"):
            tr.mixup.set_epoch(epoch)
        tr.net.train()
        start, seen = time.perf_counter(), 0
        batches = itertools.islice(tr.train_loader, st.epoch_step, None)  # mid-epoch resume: skip done batches
        for x, y in _progress(batches, tr, f"epoch {epoch}", len(tr.train_loader), st.epoch_step, running_loss):
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            target = y
            if tr.mixup is not None:
                x, target = tr.mixup(x, y)  # soft targets [B, K]
            with torch.autocast(dev.type, dtype=tr.amp_dtype or torch.bfloat16, enabled=tr.amp_dtype is not None):
                logits = tr.net(x).float()  # [B, K], or [T, B, K] for TET
                loss = tr.loss_fn(logits, target)
            loss_value = _check_step(tr, loss)
            tr.optimizer.zero_grad(set_to_none=True)
            tr.scaler.scale(loss).backward()
            if cfg.clip_grad is not None:
                tr.scaler.unscale_(tr.optimizer)  # clip the true gradients, not the scaled ones
                nn.utils.clip_grad_norm_(tr.model.parameters(), cfg.clip_grad)
            tr.scaler.step(tr.optimizer)
            tr.scaler.update()
            tr.scheduler.step()
            top1, top5 = topk_correct(logits.detach().mean(0) if logits.dim() == 3 else logits.detach(), y)
            st.meter += torch.tensor([loss_value * len(y), top1.item(), top5.item(), len(y)], dtype=torch.float64)
            st.step, st.epoch_step, seen = st.step + 1, st.epoch_step + 1, seen + len(y)
            if tr.writer is not None and st.step % cfg.log_every_steps == 0:
                tr.writer.add_scalar("step/loss", loss_value, st.step)
                tr.writer.add_scalar("step/lr", tr.optimizer.param_groups[0]["lr"], st.step)
            if cfg.ckpt_every_steps and st.step % cfg.ckpt_every_steps == 0:
                _save(tr, LAST)
            if tr.stop.signum:
                raise TrainingInterrupted(tr.stop.signum, _save(tr, LAST))
        elapsed = time.perf_counter() - start
        meter = all_reduce_sum(st.meter.to(dev), tr.dist).cpu()
        n = max(1.0, meter[3].item())
        record = {"epoch": epoch, "step": st.step, "lr": tr.optimizer.param_groups[0]["lr"],
                  "train_loss": meter[0].item() / n, "train_top1": 100 * meter[1].item() / n,
                  "train_top5": 100 * meter[2].item() / n, "epoch_time_s": elapsed,
                  "throughput": seen * tr.dist.world_size / elapsed}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            record.update(_evaluate_epoch(tr, epoch))
        st.epoch, st.epoch_step, st.meter = epoch + 1, 0, torch.zeros(4, dtype=torch.float64)
        record["train_time_s"] = st.train_time_s + time.perf_counter() - tr.session_start
        _log_epoch(tr, record)
        is_best = record.get("holdout_top1", -1.0) > st.best_top1  # never chosen on the test set
        st.best_top1 = max(st.best_top1, record.get("holdout_top1", -1.0))
        _save(tr, LAST)
        if is_best:
            _save(tr, BEST)
    return record


def _discard_outputs(tr: Trainer) -> bool:
    """After a failure: if this run kept no checkpoint, remove what it wrote (config, TensorBoard events,
    the empty checkpoint folder) and return True, so the lock removes the run directory it created."""
    if not tr.lock.created or any((tr.ckpt_dir / name).exists() for name in (LAST, BEST)):
        return False
    for path in [tr.run_dir / CONFIG_FILE, tr.run_dir / METRICS_FILE, *tr.run_dir.glob("events.out.tfevents.*")]:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        tr.ckpt_dir.rmdir()
    return True


def train(cfg: Config, resume: bool = False) -> dict[str, Any]:
    """Set up (or resume) and run; returns the final epoch's record. Cleans up DDP and signal handlers."""
    tr = deadline = None
    failed = True
    try:
        tr = setup(cfg, resume)
        tr.stop.install()
        if tr.dist.is_distributed:  # a rank blocked in a collective must still obey SIGTERM (see distributed.py)
            deadline = SignalDeadline(SIGNAL_GRACE_S, tr.dist.rank, tr.ckpt_dir / LAST).start()
        record = fit(tr)
        if tr.state.epoch >= cfg.train.epochs and not record:
            log.info(f"{tr.run_dir} already finished {cfg.train.epochs} epochs; raise train.epochs to continue")
        wait_for_all_ranks(tr.dist)  # rank 0 may still be writing the last checkpoint
        failed = False
        return record
    except RuntimeError as e:  # a collective that timed out (a frozen rank) becomes one clear error
        timeout = None if tr is None else collective_timeout_error(e, tr.dist, cfg.train.dist_timeout_s,
                                                                   tr.ckpt_dir / LAST)
        if timeout is None:
            raise
        raise timeout from e
    finally:
        if tr is not None:
            tr.stop.restore()
            if tr.writer is not None:
                tr.writer.close()
            if tr.lock is not None:
                tr.lock.release(discard=failed and _discard_outputs(tr))
        tr = None  # drop the DDP wrapper (and the group it holds) before leaving the group
        cleanup_distributed()
        if deadline is not None:
            deadline.stop()
