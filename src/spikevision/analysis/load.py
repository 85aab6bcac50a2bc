"""Test batches of a trained run's own data set, for the analysis commands.

The model comes from :func:`spikevision.train.checkpoint.load_run` (the one
run loader); this module adds the first few test batches of the data set the
run was trained on (its saved config, :func:`~spikevision.train.checkpoint.run_data_config`).

Errors are ``FileNotFoundError`` (no data) or ``ValueError`` (a bad data
config) with a message that says what to do; the commands turn them into a
clean exit.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from torch import Tensor

__all__ = ["run_test_batches"]


def run_test_batches(state: dict[str, Any], *, batch_size: int, batches: int = 1,
                     data_root: str | Path | None = None) -> tuple[list[tuple[Tensor, Tensor]], str]:
    """The first ``batches`` test batches of the run's own data set (test order, no shuffling) on the CPU.

    Args:
        state: a checkpoint dict (its saved config's ``data`` section is used).
        batch_size: samples per batch (replaces the run's ``eval_batch_size``).
        batches: how many batches (fewer when the test set is smaller).
        data_root: data folder; default the run's ``data.root``.

    Returns:
        the ``(x, y)`` batches and a description (``"first 2 test batches of mnist"``).

    Raises:
        FileNotFoundError: the data set is not found.
        ValueError: the saved data config is invalid, or ``batch_size``/``batches`` < 1.
    """
    from spikevision.data import build_loader
    from spikevision.train.checkpoint import run_data_config

    if batch_size < 1 or batches < 1:
        raise ValueError(f"batch_size and batches must be >= 1, got {batch_size} and {batches}")
    cfg = run_data_config(state, eval_batch_size=batch_size, device="cpu", num_workers=0, root=data_root)
    out = list(itertools.islice(iter(build_loader(cfg, "test")), batches))
    if not out:
        raise ValueError(f"the test split of {cfg.name} at {cfg.root} is empty")
    what = "first test batch" if len(out) == 1 else f"first {len(out)} test batches"
    return out, f"{what} of {cfg.name}"
