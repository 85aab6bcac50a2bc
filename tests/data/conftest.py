"""Writers of tiny data sets in the real on-disk formats (IDX, CIFAR pickles, ImageFolder, AEDAT 2.0)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spikevision.data.constants import CIFAR10_DVS_CLASSES
from spikevision.data.events import encode_dvs128_address, write_aedat2


def make_cifar(root: Path, hundred: bool = False, per_batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Official python-pickle layout with ``per_batch`` images per batch file."""
    rng = np.random.default_rng(seed)
    if hundred:
        folder, train_files, test_files = root / "cifar-100-python", ["train"], ["test"]
        meta_name, key, names_key, n_cls = "meta", b"fine_labels", b"fine_label_names", 100
    else:
        folder, train_files = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)]
        test_files, meta_name, key, names_key, n_cls = ["test_batch"], "batches.meta", b"labels", b"label_names", 10
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, list] = {"train": [], "test": []}
    for split, files in (("train", train_files), ("test", test_files)):
        for name in files:
            data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            labels = rng.integers(0, n_cls, per_batch).tolist()
            with open(folder / name, "wb") as f:
                pickle.dump({b"batch_label": name.encode(), key: labels, b"data": data,
                             b"filenames": [b"x.png"] * per_batch}, f, protocol=2)
            written[split].append((data, labels))
    with open(folder / meta_name, "wb") as f:
        pickle.dump({names_key: [f"class{i}".encode() for i in range(n_cls)]}, f, protocol=2)
    return {s: (np.concatenate([d for d, _ in v]), np.concatenate([lab for _, lab in v])) for s, v in written.items()}


def make_image_folder(root: Path, split: str, classes=("cat", "dog"), per_class: int = 2, size: int = 40) -> dict:
    """``root/split/<class>/<i>.png`` RGB images; returns {path: (array, label)}."""
    rng = np.random.default_rng(len(split))
    out = {}
    for label, c in enumerate(classes):
        d = root / split / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)
            Image.fromarray(arr).save(d / f"{i}.png")
            out[d / f"{i}.png"] = (arr, label)
    return out


def random_events(rng: np.random.Generator, n: int):
    """Raw-orientation events (t sorted, x, y in 0..127, p in 0/1)."""
    t = np.sort(rng.integers(0, 100_000, n)).astype(np.int64)
    return t, rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)


def make_dvs_root(root: Path, per_class: int = 12, n_events: int = 50, seed: int = 0) -> dict[Path, tuple]:
    """10 class folders of ``cifar10_<class>_<i>.aedat`` files; returns {path: raw (t, x, y, p)}."""
    rng = np.random.default_rng(seed)
    out = {}
    for c in CIFAR10_DVS_CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            t, x, y, p = random_events(rng, n_events + i)
            path = root / c / f"cifar10_{c}_{i}.aedat"
            write_aedat2(path, t, encode_dvs128_address(x, y, p))
            out[path] = (t, x, y, p)
    return out


@pytest.fixture
def cifar_set():
    return make_cifar


@pytest.fixture
def image_folder():
    return make_image_folder


@pytest.fixture
def dvs_root():
    return make_dvs_root


@pytest.fixture
def events_rng():
    return random_events
