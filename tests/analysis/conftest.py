"""Fixtures of the analysis tests: a real run directory trained by the engine on tiny IDX files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spikevision.data.idx import write_idx


def _write_fashion_mnist(root: Path) -> Path:
    """16 training and 12 test images of noise in the real Fashion-MNIST IDX format, in ``root`` (created)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 16), ("t10k", 12)):
        labels = np.arange(n, dtype=np.uint8) % 10
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture(scope="session")
def fashion_mnist_files():
    """The writer of tiny Fashion-MNIST folders: ``fashion_mnist_files(folder) -> folder``."""
    return _write_fashion_mnist


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A real run directory: mlp_spe_mini trained 2 epochs by the engine on a 16/12-image Fashion-MNIST."""
    from spikevision.train import load_config, train

    root = tmp_path_factory.mktemp("report")
    data = _write_fashion_mnist(root / "fmnist")
    overrides = {"model.name": "mlp_spe_mini", "model.T": 2, "model.dim": 6, "data.name": "fashion_mnist",
                 "data.root": str(data), "data.batch_size": 8, "data.eval_batch_size": 6, "optim.name": "sgd",
                 "optim.lr": 0.5, "train.epochs": 2, "train.seed": 0, "train.device": "cpu", "train.threads": 1,
                 "run.out_dir": str(root / "runs"), "run.name": "tiny", "run.progress": "off",
                 "run.tensorboard": False}
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        train(load_config(None, [f"{k}={v}" for k, v in overrides.items()]))
    finally:  # the engine sets process-wide torch switches
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
        torch.set_flush_denormal(False)
    return root / "runs" / "tiny"


