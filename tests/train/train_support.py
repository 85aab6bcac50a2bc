"""Shared by the engine tests (imported by name; ``conftest`` is not importable reliably, as every
test folder has one): the folder, the child-process entry point, the tiny model's run overrides."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
ENTRY = HERE / "_entry.py"


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
