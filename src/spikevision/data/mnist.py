"""MNIST and Fashion-MNIST from the standard IDX files, decoded once into memory.

Files (either gzip-compressed ``.gz`` or raw), all four in one folder::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

Looked for in ``root``, then ``root/FashionMNIST/raw`` (or ``root/MNIST/raw``,
torchvision's layout). With ``root=None``, Fashion-MNIST is found without
configuration at ``/usr/share/datasets/fashion-mnist`` (Debian package
``dataset-fashion-mnist``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from spikevision.data.constants import (FASHION_MNIST_CLASSES, FASHION_MNIST_DEFAULT_ROOT, MNIST_CLASSES,
                                        MNIST_DEFAULT_ROOT)
from spikevision.data.errors import CorruptFileError, DatasetNotFoundError
from spikevision.data.idx import read_idx
from spikevision.data.in_memory import InMemoryImageDataset

__all__ = ["MNIST", "FashionMNIST", "load_idx_split", "IDX_FILES"]

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_SPLITS = {"train": "train", "test": "test", "val": "test"}


def _check_split(split: str) -> str:
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test' ('val' = 'test'), got {split!r}")
    return _SPLITS[split]


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _locate(root: str | Path | None, default_root: str, sub: str, stems: tuple[str, ...],
            how_to_get: str) -> list[Path]:
    roots = [Path(default_root)] if root is None else [Path(root)]
    candidates = [p for r in roots for p in (r, r / sub / "raw")]
    for folder in candidates:
        found = [_find(folder, s) for s in stems]
        if all(found):
            return found  # type: ignore[return-value]
    searched = ", ".join(str(c) for c in candidates)
    present = {s for s in stems if any(_find(c, s) for c in candidates)}
    missing = ", ".join(s + ".gz" for s in stems if s not in present)
    raise DatasetNotFoundError(f"{missing} not found (searched {searched}); {how_to_get}")


def load_idx_split(folder_files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode an (images, labels) IDX pair into uint8 ``[N, 1, H, W]`` and int64 ``[N]``.

    Raises:
        CorruptFileError: a bad file, or images and labels of different counts.
    """
    img_path, lbl_path = folder_files
    images = read_idx(img_path)
    labels = read_idx(lbl_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise CorruptFileError(img_path, f"expected uint8 images [N, H, W], found {images.dtype} {list(images.shape)}")
    if labels.ndim != 1:
        raise CorruptFileError(lbl_path, f"expected labels [N], found shape {list(labels.shape)}")
    if labels.shape[0] != images.shape[0]:
        raise CorruptFileError(lbl_path, f"{labels.shape[0]} labels for {images.shape[0]} images in {img_path.name}",
                               "the two files come from different sets; replace both")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


class _IdxDataset(InMemoryImageDataset):
    _default_root: str = ""
    _sub: str = ""
    _classes: tuple[str, ...] = ()
    _how_to_get: str = ""

    def __init__(self, root: str | Path | None = None, split: str = "train",
                 transform: Callable | None = None, target_transform: Callable | None = None) -> None:
        split = _check_split(split)
        where = ("a folder and pass it as data.root=<folder> (spikevision train) or --data-root <folder> "
                 "(spikevision eval)") if root is None else str(root)
        files = _locate(root, self._default_root, self._sub, IDX_FILES[split],
                        self._how_to_get.format(root=where))
        images, targets = load_idx_split(files)
        if len(targets) and (int(targets.max()) >= len(self._classes) or int(targets.min()) < 0):
            raise CorruptFileError(files[1], f"labels outside 0..{len(self._classes) - 1}")
        super().__init__(images, targets, self._classes, transform, target_transform)
        self.split = split
        self.files = files


class FashionMNIST(_IdxDataset):
    """Fashion-MNIST (Xiao, Rasul and Vollgraf, arXiv:1708.07747, 2017).

    60000 train / 10000 test grey images ``[1, 28, 28]``, 10 classes.

    Args:
        root: folder with the four IDX files; None looks in
            ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``).
        split: ``"train"`` or ``"test"``.
        transform: applied to a PIL image; None returns float ``[1, 28, 28]`` in ``[0, 1]``.

    Raises:
        DatasetNotFoundError: files missing (the message says how to get them).
        CorruptFileError: a truncated or malformed file (named).
    """

    _default_root = FASHION_MNIST_DEFAULT_ROOT
    _sub = "FashionMNIST"
    _classes = FASHION_MNIST_CLASSES
    _how_to_get = ("install them with `apt-get install dataset-fashion-mnist` (goes to "
                   f"{FASHION_MNIST_DEFAULT_ROOT}), or put the four IDX files of "
                   "https://github.com/zalandoresearch/fashion-mnist in {root}")


class MNIST(_IdxDataset):
    """MNIST handwritten digits (LeCun et al., Proc. IEEE 1998).

    60000 train / 10000 test grey images ``[1, 28, 28]``, 10 classes.

    Args:
        root: folder with the four IDX files; None looks in ``/usr/share/datasets/mnist``.
        split: ``"train"`` or ``"test"``.
        transform: applied to a PIL image; None returns float ``[1, 28, 28]`` in ``[0, 1]``.

    Raises:
        DatasetNotFoundError: files missing (the message says how to get them).
        CorruptFileError: a truncated or malformed file (named).
    """

    _default_root = MNIST_DEFAULT_ROOT
    _sub = "MNIST"
    _classes = MNIST_CLASSES
    _how_to_get = ("put the four MNIST IDX files (train-images-idx3-ubyte.gz, ...) in {root} "
                   "and pass root=<that folder>; spikevision never downloads")
