"""Writers of tiny data sets in the real on-disk formats (ImageFolder, AEDAT 2.0; IDX and CIFAR pickles are in
the suite-wide ``tests/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spikevision.data.constants import CIFAR10_DVS_CLASSES
from spikevision.data.events import encode_dvs128_address, write_aedat2


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
def image_folder():
    return make_image_folder


@pytest.fixture
def dvs_root():
    return make_dvs_root


@pytest.fixture
def events_rng():
    return random_events
