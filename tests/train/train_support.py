"""Shared by the engine tests (imported by name; ``conftest`` is not importable reliably, as every
test folder has one): the folder, the child-process entry points and environment, the tiny model's run
overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ENTRY = HERE / "_entry.py"
KILLER_ENTRY = HERE / "_killer_entry.py"


def child_env() -> dict[str, str]:
    """The environment of a child process that imports ``tiny_model`` (this folder on ``PYTHONPATH``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return env


def run_killed_at(step: int, args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``spikevision ARGS`` in a child process SIGKILLed at its ``step``-th optimiser step (0: never killed)."""
    return subprocess.run([sys.executable, str(KILLER_ENTRY), *args], env=child_env() | {"KILL_AT_STEP": str(step)},
                          capture_output=True, text=True, timeout=timeout)


def tiny_overrides(root: Path, out_dir: Path, name: str = "tiny", **extra) -> list[str]:
    """``key=value`` overrides of a short deterministic CPU run of the tiny model."""
    base = {
        "model.name": "tiny_snn_test", "data.name": "fashion_mnist", "data.root": str(root),
        "data.batch_size": 8, "data.eval_batch_size": 20, "optim.name": "sgd", "optim.lr": 0.1,
        "sched.name": "cosine", "sched.warmup_epochs": 1, "train.epochs": 3, "train.seed": 0,
        "train.deterministic": True, "train.device": "cpu", "train.threads": 1, "run.out_dir": str(out_dir),
        "run.name": name, "run.progress": "off",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]
