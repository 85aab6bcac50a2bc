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
``os.replace``): a crash leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "FORMAT_VERSION", "MODEL_KEY", "MODEL_NAME_KEY", "MODEL_KWARGS_KEY", "CONFIG_KEY", "EPOCH_KEY", "STEP_KEY",
    "EPOCH_STEP_KEY", "OPTIMIZER_KEY", "SCHEDULER_KEY", "SCALER_KEY", "RNG_KEY", "BEST_KEY", "METER_KEY",
    "TRAIN_TIME_KEY", "VERSION_KEY", "save_checkpoint", "load_checkpoint", "capture_rng_state",
    "restore_rng_state",
]

FORMAT_VERSION = 1
VERSION_KEY = "format_version"
MODEL_KEY = "model"  # state_dict of the bare model (never of a DDP wrapper)
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


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file + ``os.replace``).

    Raises:
        ValueError: required keys are missing.
    """
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}; build it with the engine's checkpoint_state()")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and check its keys.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a spikevision checkpoint, or damaged.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found; pass a run directory or a .pt file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path} cannot be loaded as a checkpoint ({type(e).__name__}: {e}); "
                         "it may be damaged, use another checkpoint (last.pt / best.pt)") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a spikevision checkpoint dict")
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise ValueError(f"{path} is not a spikevision checkpoint (missing {missing}); "
                         "a bare state_dict can be loaded with model.load_state_dict(torch.load(...))")
    if state[VERSION_KEY] > FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format {state[VERSION_KEY]}, newer than this spikevision "
                         f"({FORMAT_VERSION}); upgrade spikevision")
    return state
