"""Checkpoints: everything a run needs to resume exactly, in a ``weights_only``-safe file.

A checkpoint is a dict of tensors and plain containers (no pickled classes),
so it loads with ``torch.load(path, weights_only=True)``. Keys are the
constants below. It holds the model's registered name and keyword arguments
(so ``create_model(ckpt[MODEL_NAME_KEY], **ckpt[MODEL_KWARGS_KEY])`` rebuilds
it with nothing else), the resolved config, the position in training (epoch,
global step, batches done in the current epoch: the sampler position),
optimiser/scheduler/gradient-scaler state, the partial metrics of the current
epoch, and every RNG state (Python, NumPy, torch CPU, CUDA) as tensors.

Files are written atomically (temporary file in the same folder, then
``os.replace``): a crash, a full disk or any other write failure leaves the
previous checkpoint intact, and a failed write raises
:class:`CheckpointWriteError` naming the file kept. Loading refuses model
weights holding NaN or infinite values.

A run directory (``runs/<name>/``, written by :mod:`spikevision.train.engine`)
holds :data:`CONFIG_FILE`, :data:`METRICS_FILE` and
``checkpoints/`` with :data:`LAST` and :data:`BEST`. :func:`load_run` is the
one way to get a trained model back from a run directory or a checkpoint file
(``spikevision eval``, ``profile``, ``report`` and the analysis helpers use
it): the model is rebuilt by name and keyword arguments and its weights are
loaded strictly; every failure is a ``FileNotFoundError`` or ``ValueError``
that says what to do. :class:`RunLock` keeps two processes from training in one
run directory.
"""

from __future__ import annotations

import errno
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from spikevision.weights import load_error_reason, non_finite_tensors

try:
    import fcntl
except ImportError:  # Windows: runs are not locked
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from spikevision.data import DataConfig

__all__ = [
    "FORMAT_VERSION", "MODEL_KEY", "LEGACY_MODEL_KEY", "MODEL_NAME_KEY", "MODEL_KWARGS_KEY", "CONFIG_KEY",
    "EPOCH_KEY", "STEP_KEY", "EPOCH_STEP_KEY", "OPTIMIZER_KEY", "SCHEDULER_KEY", "SCALER_KEY", "RNG_KEY", "BEST_KEY", "METER_KEY",
    "TRAIN_TIME_KEY", "LAYOUT_KEY", "MACHINES_KEY", "VERSION_KEY", "save_checkpoint", "load_checkpoint", "capture_rng_state",
    "restore_rng_state", "CHECKPOINT_DIR", "LAST", "BEST", "METRICS_FILE", "CONFIG_FILE", "find_checkpoint",
    "LoadedRun", "load_run", "run_data_config", "LOCK_FILE", "RunLock", "RunDirectoryBusyError",
    "CheckpointWriteError", "load_error_reason",
]

log = logging.getLogger(__name__)

# The run directory <run>/ (names shared by the engine, the commands and the study runner)
CHECKPOINT_DIR = "checkpoints"  # <run>/checkpoints/
LAST, BEST = "last.pt", "best.pt"  # file names in <run>/checkpoints/: latest state, best test top-1
METRICS_FILE = "metrics.jsonl"  # <run>/metrics.jsonl: one JSON line per epoch
CONFIG_FILE = "config.yaml"  # <run>/config.yaml: the resolved config
LOCK_FILE = ".lock"  # <run>/.lock: locked (flock) by the process training the run; holds its pid
Which = Literal["best", "last"]

FORMAT_VERSION = 2  # 2: the weights under "model_state" (format 1 called them "model", a name in model cards)
VERSION_KEY = "format_version"
MODEL_KEY = "model_state"  # state_dict of the bare model (never of a DDP wrapper)
LEGACY_MODEL_KEY = "model"  # format 1's MODEL_KEY: read (load_checkpoint renames it), never written
MODEL_NAME_KEY = "model_name"  # registered builder name
MODEL_KWARGS_KEY = "model_kwargs"  # builder keyword arguments, num_classes filled in
CONFIG_KEY = "config"  # Config.to_dict()
EPOCH_KEY = "epoch"  # epoch in progress (0-based); equals train.epochs when training is done
STEP_KEY = "step"  # optimiser steps done in total
EPOCH_STEP_KEY = "epoch_step"  # batches done in the current epoch: where the sampler resumes
OPTIMIZER_KEY = "optimizer"
SCHEDULER_KEY = "scheduler"
SCALER_KEY = "scaler"
RNG_KEY = "rng"  # capture_rng_state()
BEST_KEY = "best_top1"  # best evaluation top-1 so far (-1 before the first evaluation)
METER_KEY = "meter"  # running sums of the current epoch's training metrics
TRAIN_TIME_KEY = "train_time_s"  # training wall time so far, seconds, summed over resumes
LAYOUT_KEY = "epoch_layout"  # {"batches": steps per epoch, "global_batch": samples per step}; optional (older files)
MACHINES_KEY = "machines"  # the machines the run trained on, in order (run_log.machine_history); optional (older files)

_REQUIRED = (VERSION_KEY, MODEL_KEY, MODEL_NAME_KEY, MODEL_KWARGS_KEY, CONFIG_KEY, EPOCH_KEY, STEP_KEY)


def capture_rng_state() -> dict[str, Any]:
    """Every RNG state as tensors and plain numbers (``weights_only``-safe)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python_version": py_version,
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_gauss": py_gauss,
        "numpy_name": np_name,
        "numpy": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()),
                     state["python_gauss"]))
    np.random.set_state((state["numpy_name"], state["numpy"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, read-only folder, ...); the previous file is kept."""


# torch's zip writer reports a short write (a full disk) as "[enforce fail at inline_container.cc:...] .
# unexpected pos N vs M" or "PytorchStreamWriter failed writing file ...": a RuntimeError without the errno
_TORCH_WRITE_FAILED = ("inline_container", "PytorchStreamWriter", "file write failed", "unexpected pos")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _write_error(path: Path, e: BaseException, existed: bool) -> CheckpointWriteError:
    kept = f"last good checkpoint {path} kept" if existed else "no earlier checkpoint of that name existed"
    if isinstance(e, RuntimeError) or e.errno in _NO_SPACE:
        err = CheckpointWriteError(f"no space left on device writing {path}; {kept}; free some space, then "
                                   "continue with --resume")
        err.errno = errno.ENOSPC
    else:
        err = CheckpointWriteError(f"cannot write {path} ({e.strerror or e}); {kept}")
        err.errno = e.errno
    return err


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file + ``os.replace``).

    Raises:
        ValueError: required keys are missing.
        CheckpointWriteError: the write failed (no space left on device, no permission, ...); the file
            that was at ``path`` before is untouched and no temporary file is left.
    """
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}; build it with the engine's checkpoint_state()")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and not any(s in str(e) for s in _TORCH_WRITE_FAILED):
            raise
        raise _write_error(path, e, path.is_file()) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and check its keys and weights.

    A format-1 file (weights under :data:`LEGACY_MODEL_KEY`, ``"model"``) comes back with them
    under :data:`MODEL_KEY`, so every reader sees one layout.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a spikevision checkpoint, damaged, or model weights holding NaN or infinite values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found; pass a run directory or a .pt file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path} cannot be loaded as a checkpoint ({load_error_reason(e)}); "
                         "it may be damaged, use another checkpoint (last.pt / best.pt)") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a spikevision checkpoint dict")
    if MODEL_KEY not in state and isinstance(state.get(LEGACY_MODEL_KEY), dict):  # format 1
        state[MODEL_KEY] = state.pop(LEGACY_MODEL_KEY)
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise ValueError(f"{path} is not a spikevision checkpoint (missing {missing}); "
                         "a bare state_dict can be loaded with model.load_state_dict(torch.load(...))")
    if state[VERSION_KEY] > FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format {state[VERSION_KEY]}, newer than this spikevision "
                         f"({FORMAT_VERSION}); upgrade spikevision")
    bad = non_finite_tensors(state[MODEL_KEY]) if isinstance(state[MODEL_KEY], dict) else []
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ValueError(f"{path}: model weights hold NaN or infinite values ({', '.join(bad[:3])}{more}); the "
                         "run diverged before this file was written, or it was altered; use an earlier "
                         "checkpoint (best.pt) or train again (e.g. with a lower optim.lr)")
    return state


class RunDirectoryBusyError(FileExistsError):
    """Another process holds the run directory's lock: it is training (or resuming) that run."""


class RunLock:
    """An exclusive lock on a run directory, held by the process that trains it.

    ``fcntl.flock`` on ``<run>/.lock`` (:data:`LOCK_FILE`, created if missing; it holds the owner's
    process id). The kernel drops the lock when the process exits or dies, SIGKILL included, so a crash
    never leaves a stale lock. Where locks are not supported (Windows, some network file systems) the
    run proceeds unlocked, with a warning.

    Args:
        run_dir: the run directory; created (with its parents) if missing.

    Raises:
        RunDirectoryBusyError: another process holds the lock; nothing was written.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.created = not self.run_dir.exists()
        self._made = []  # the folders this lock creates, deepest first (removed again on discard)
        folder = self.run_dir.absolute()
        while not folder.exists() and folder != folder.parent:
            self._made.append(folder)
            folder = folder.parent
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / LOCK_FILE
        self._file: Any = open(self.path, "a+")
        if fcntl is None:
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            pid = self._file.read().strip()
            self._file.close()
            who = f" (process {pid})" if pid.isdigit() else ""
            raise RunDirectoryBusyError(
                f"run directory {self.run_dir} is in use by another spikevision run{who}; wait for it to end or "
                f"stop it, or train under another run.name") from None
        except OSError as e:  # ENOLCK, EOPNOTSUPP: a file system without locks
            log.warning(f"cannot lock {self.path} ({e.strerror}); make sure no other process trains this run")
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def release(self, discard: bool = False) -> None:
        """Drop the lock (idempotent).

        Args:
            discard: the run failed before keeping anything: if this lock created the run directory, remove
                the lock file, the directory and the parent folders it created (each only when empty),
                leaving no trace of the failed start.
        """
        if self._file.closed:
            return
        if discard and self.created:
            self.path.unlink(missing_ok=True)
            for folder in self._made:
                try:
                    folder.rmdir()
                except OSError:
                    break
        self._file.close()  # closing the file drops the lock

    def __del__(self) -> None:
        if getattr(self, "_file", None) is not None:
            self.release()


def find_checkpoint(run_dir: str | Path, which: Which = "best") -> Path:
    """``run_dir/checkpoints/best.pt`` (else ``last.pt``) for ``which="best"``; ``last.pt`` for ``"last"``.

    Raises:
        FileNotFoundError: ``run_dir`` is not a directory or holds none of those files.
        ValueError: ``which`` is neither ``"best"`` nor ``"last"``.
    """
    run_dir = Path(run_dir)
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} not found; pass runs/<name> of a training run")
    names = [BEST, LAST] if which == "best" else [LAST]
    found = [run_dir / CHECKPOINT_DIR / n for n in names if (run_dir / CHECKPOINT_DIR / n).is_file()]
    if not found:
        raise FileNotFoundError(f"{run_dir} has no {' or '.join(names)} in {run_dir / CHECKPOINT_DIR}; "
                                "is it a run directory? (train one with `spikevision train`)")
    return found[0]


@dataclass
class LoadedRun:
    """A trained model and where it came from (:func:`load_run`).

    Attributes:
        model: the rebuilt model, weights loaded strictly, on the CPU, in training mode (as built).
        state: the whole checkpoint dict (keys: the ``*_KEY`` constants of this module).
        path: the checkpoint file.
        run_dir: the run directory, when one was given.
    """

    model: nn.Module
    state: dict[str, Any]
    path: Path
    run_dir: Path | None

    @property
    def name(self) -> str:
        """Registered model name."""
        return self.state[MODEL_NAME_KEY]

    @property
    def kwargs(self) -> dict[str, Any]:
        """The builder's keyword arguments (a copy)."""
        return dict(self.state[MODEL_KWARGS_KEY])

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config the run was trained with (``Config.to_dict()``)."""
        return self.state[CONFIG_KEY]

    def data_config(self, **overrides: Any) -> DataConfig:
        """The run's data set (:func:`run_data_config`), e.g. ``data_config(root=..., device="cpu")``."""
        return run_data_config(self.state, **overrides)


def load_run(target: str | Path, which: Which = "best") -> LoadedRun:
    """The trained model of a run directory or checkpoint file.

    Args:
        target: a run directory (its checkpoint chosen by :func:`find_checkpoint`) or a checkpoint file.
        which: ``"best"`` (``best.pt``, else ``last.pt``) or ``"last"``; run directories only.

    Example:
        >>> run = load_run("runs/quickstart")
        >>> run.model.eval()(images)  # logits
        >>> loader = build_loader(run.data_config(device="cpu"), "test")

    Raises:
        FileNotFoundError: no such directory, checkpoint or file.
        ValueError: not a (readable) spikevision checkpoint, or its model cannot be rebuilt (unknown name,
            arguments or weights that no longer fit: a checkpoint of another spikevision version).
    """
    from spikevision.models.factory import WeightsOrigin, build_with_weights

    target = Path(target)
    is_file = target.is_file() or (not target.exists() and target.suffix == ".pt")
    run_dir = None if is_file else target
    path = target if is_file else find_checkpoint(target, which)
    state = load_checkpoint(path)
    origin = WeightsOrigin(str(path), kwargs_of="the checkpoint's",
                           fix="it was altered, or written by another spikevision version")
    model = build_with_weights(str(state[MODEL_NAME_KEY]), state[MODEL_KEY],
                               {"model_kwargs": dict(state[MODEL_KWARGS_KEY])}, origin)
    return LoadedRun(model, state, path, run_dir)


def run_data_config(state: dict[str, Any], **overrides: Any) -> DataConfig:
    """The data set a checkpoint's run was trained on, as the training engine built it.

    Args:
        state: a checkpoint dict (its saved config's ``data`` section is used).
        overrides: ``DataConfig`` fields to replace (``root``, ``eval_batch_size``, ``device``, ...);
            None values are ignored. Event data without ``frames`` get the model's ``T`` frames.

    Raises:
        ValueError: the config has no data section, or it is invalid.
    """
    from spikevision.data import DataConfig, get_dataset_info
    from spikevision.models import get_model_info

    data = dict(state[CONFIG_KEY].get("data") or {})
    if not data:
        raise ValueError("the checkpoint's config has no data section; the run's test set is unknown")
    data.update({k: str(v) if isinstance(v, Path) else v for k, v in overrides.items() if v is not None})
    cfg = DataConfig.from_dict(data)
    if cfg.frames is None and get_dataset_info(cfg.name).is_event:
        kwargs = state[MODEL_KWARGS_KEY]
        cfg.frames = kwargs.get("T") or get_model_info(state[MODEL_NAME_KEY]).T
    return cfg
