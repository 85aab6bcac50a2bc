"""Model cards: what a trained run is, measured on its whole test set, for weights shipped in the package.

:func:`build_card` evaluates a run's final (or best) checkpoint in float32 on
every test image of its data set (the number a user reproduces with
``create_model(name, pretrained=tag)``), measures firing rate and energy per
image on the first test images, and gathers the recipe, training time and
machine; ``spikevision export RUN --format pretrained`` writes the card next to
the weights (see :mod:`spikevision.weights`).
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["build_card", "machine_description", "git_commit"]


def machine_description() -> str:
    """CPU model, core count, OS and torch version of this machine (one line)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, torch {torch.__version__}"


def git_commit(folder: str | Path = ".") -> str:
    """``git describe``-style commit of ``folder`` (``<hash>`` or ``<hash>-dirty``), or ``"unknown"``."""
    try:
        out = subprocess.run(["git", "-C", str(folder), "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def build_card(run_dir: str | Path, tag: str, *, which: str = "last", recipe: str | None = None,
               data_root: str | Path | None = None, batches: int = 4,
               batch_size: int = 64, dtype: str = "float32") -> tuple[nn.Module, dict[str, Any]]:
    """The trained model of ``run_dir`` and its card (keys: :data:`spikevision.weights.CARD_KEYS`).

    Args:
        run_dir: a training run directory.
        tag: what the weights are called by (``"fashion_mnist"``).
        which: ``"last"`` (final epoch: the reported number) or ``"best"``.
        recipe: the recipe file the run was trained from, for the card.
        data_root: data folder (default: the run's ``data.root``).
        batches, batch_size: test images for firing rate and energy.
        dtype: the dtype the weights will be stored in (``"float16"`` halves the file). The model's
            floating-point state is rounded to it first, so the card measures the weights as shipped.

    Raises:
        FileNotFoundError: no run directory, checkpoint, metrics or data.
        ValueError: a damaged checkpoint or metrics file.
    """
    import torch

    from spikevision.analysis.load import run_test_batches
    from spikevision.analysis.report import measure, read_metrics
    from spikevision.data import build_loader
    from spikevision.deploy.weights import STORAGE_DTYPES, to_storage_dtype
    from spikevision.train import checkpoint as ck
    from spikevision.train.engine import evaluate

    run_dir = Path(run_dir)
    run = ck.load_run(run_dir, which)  # type: ignore[arg-type]
    model, state, config = run.model.eval(), run.state, run.config
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(STORAGE_DTYPES)}, got {dtype!r}")
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(to_storage_dtype(t, STORAGE_DTYPES[dtype], name))
    records = read_metrics(run_dir / ck.METRICS_FILE)
    data = run.data_config(device="cpu", num_workers=0, root=data_root)
    ev = evaluate(model, build_loader(data, "test"), torch.device("cpu"))
    xs, _ = run_test_batches(state, batch_size=batch_size, batches=batches, data_root=data_root)
    prof = measure(model, xs)
    epoch = int(state[ck.EPOCH_KEY])
    card = {
        "model": run.name, "tag": tag, "model_kwargs": state[ck.MODEL_KWARGS_KEY],
        "dataset": data.name, "test_top1": round(ev["top1"], 2), "test_samples": ev["samples"],
        "T": prof.T, "firing_rate": round(prof.mean_rate, 4), "energy_uj": round(prof.energy_pj() / 1e6, 4),
        "energy_convention": prof.energy.convention(),
        "parameters": sum(p.numel() for p in model.parameters()), "epochs": epoch, "checkpoint": which,
        "weights_dtype": dtype,
        "train_time_s": round(float(state[ck.TRAIN_TIME_KEY]), 1),
        "logged_test_top1": next((r.get("test_top1") for r in reversed(records) if int(r["epoch"]) == epoch - 1),
                                 None),
        "machine": machine_description(), "recipe": recipe or "see config", "config": config,
        "commit": git_commit(Path(__file__).parent), "date": datetime.date.today().isoformat(),
    }
    return model, card
