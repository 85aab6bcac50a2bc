"""Suite-wide settings and the IDX writer shared by the data, recipe and analysis tests.

One intra-op thread keeps the many tiny tests fast and timing predictable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spikevision.data.idx import write_idx

torch.set_num_threads(1)


def make_idx_set(folder: Path, n_train: int = 6, n_test: int = 4, size: int = 28, seed: int = 0,
                 gz: bool = True) -> dict[str, np.ndarray]:
    """Four IDX files with random pixels and labels; returns what was written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)
        out[prefix + "_images"], out[prefix + "_labels"] = images, labels
    return out


@pytest.fixture(scope="session")
def idx_set():
    """The writer of tiny (Fashion-)MNIST folders in the real IDX format: ``idx_set(folder, ...) -> arrays``."""
    return make_idx_set
