"""Fixtures of the engine tests: tiny Fashion-MNIST IDX files and a recipe for the tiny model."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_model  # noqa: E402,F401  (registers tiny_snn_test)

from spikevision.data.idx import write_idx  # noqa: E402

from train_support import HERE  # noqa: E402


def _write_split(folder: Path, prefix: str, n: int, rng: np.random.Generator) -> None:
    labels = np.arange(n, dtype=np.uint8) % 10
    images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for i, c in enumerate(labels):  # a learnable pattern: a bright band whose row depends on the class
        images[i, 2 * c + 4 : 2 * c + 6, :] = 220
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory) -> Path:
    """64 training and 40 test images in the real Fashion-MNIST IDX format."""
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    _write_split(root, "train", 64, rng)
    _write_split(root, "t10k", 40, rng)
    return root


@pytest.fixture
def recipe(tmp_path) -> Path:
    """An empty recipe file: the tests pass everything as overrides."""
    path = tmp_path / "recipe.yaml"
    path.write_text("{}\n")
    return path
