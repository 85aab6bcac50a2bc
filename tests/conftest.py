"""Suite-wide settings and fixtures, and the IDX and CIFAR writers shared by the data, recipe and analysis tests.

One intra-op thread keeps the many tiny tests fast and timing predictable.
"""

from __future__ import annotations

import math
import pickle
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


def make_cifar(root: Path, hundred: bool = False, per_batch: int = 4, seed: int = 0, n_train: int | None = None,
               n_test: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """CIFAR-10 (or -100) in the official python-pickle layout; returns ``{split: (images, labels)}``.

    Each batch file holds ``per_batch`` images, or, given ``n_train`` / ``n_test``, that split's images
    spread evenly over its files (rounded up).
    """
    rng = np.random.default_rng(seed)
    if hundred:
        folder, train_files, test_files = root / "cifar-100-python", ["train"], ["test"]
        meta_name, key, names_key, n_cls = "meta", b"fine_labels", b"fine_label_names", 100
    else:
        folder, train_files = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)]
        test_files, meta_name, key, names_key, n_cls = ["test_batch"], "batches.meta", b"labels", b"label_names", 10
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, list] = {"train": [], "test": []}
    for split, files, total in (("train", train_files, n_train), ("test", test_files, n_test)):
        per_file = per_batch if total is None else math.ceil(total / len(files))
        for name in files:
            data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
            labels = rng.integers(0, n_cls, per_file).tolist()
            with open(folder / name, "wb") as f:
                pickle.dump({b"batch_label": name.encode(), key: labels, b"data": data,
                             b"filenames": [b"x.png"] * per_file}, f, protocol=2)
            written[split].append((data, labels))
    with open(folder / meta_name, "wb") as f:
        pickle.dump({names_key: [f"class{i}".encode() for i in range(n_cls)]}, f, protocol=2)
    return {s: (np.concatenate([d for d, _ in v]), np.concatenate([lab for _, lab in v])) for s, v in written.items()}


@pytest.fixture(scope="session")
def cifar_set():
    """The writer of tiny CIFAR-10/100 folders in the official pickle layout: ``cifar_set(root, ...) -> arrays``."""
    return make_cifar


@pytest.fixture(autouse=True)
def _restore_torch_globals():
    """The engine sets process-wide torch switches (threads, determinism, denormals); put them back."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)
    torch.set_flush_denormal(False)


def pytest_collection_modifyitems(config, items):
    """Modules holding a test marked ``heavy`` go first (stable otherwise).

    Under ``--dist loadfile --no-loadscope-reorder`` (scripts/test.sh) pytest-xdist hands out whole modules in
    collection order (its default order is by number of tests, which put the 4-test, several-minute accuracy
    module last); a module of minutes handed out last would run alone at the end while the other worker
    idles. Started first, it overlaps the many short modules.
    """
    heavy = {item.path for item in items if item.get_closest_marker("heavy")}
    items.sort(key=lambda item: item.path not in heavy)
