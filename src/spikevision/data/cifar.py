"""CIFAR-10 and CIFAR-100 from the official "python version" pickles.

Layout (as unpacked from ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``)::

    <root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    <root>/cifar-100-python/{train, test, meta}

Each batch is a pickled dict: ``data`` uint8 ``[N, 3072]`` (1024 red, 1024
green, 1024 blue values, row-major 32 x 32) and ``labels`` (CIFAR-10) or
``fine_labels`` (CIFAR-100). The meta file holds ``label_names`` /
``fine_label_names``.

Why not ``torchvision.datasets.CIFAR10``: it checks each file's MD5 and, on any
mismatch, says only "Dataset not found or corrupted"; here each problem names
its file. Unpickling is restricted to plain containers and numpy arrays, so a
tampered file cannot run code.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from spikevision.data.errors import CorruptFileError, DatasetNotFoundError
from spikevision.data.in_memory import InMemoryImageDataset

__all__ = ["CIFAR10", "CIFAR100", "read_cifar_pickle"]

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only containers and numpy arrays are allowed)")


def read_cifar_pickle(path: str | Path) -> dict[str, object]:
    """Load one CIFAR pickle into a dict with ``str`` keys (bytes keys decoded).

    Raises:
        FileNotFoundError: no such file.
        CorruptFileError: truncated, not a pickle, not a dict, or disallowed content.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR file not found: {path}")
    try:
        obj = _SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise CorruptFileError(path, f"cannot unpickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise CorruptFileError(path, f"expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _decode_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = read_cifar_pickle(path)
    for key in ("data", label_key):
        if key not in d:
            raise CorruptFileError(path, f"missing key {key!r} (found {sorted(d)})")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise CorruptFileError(path, f"'data' must be uint8 [N, 3072], found {data.dtype} {list(data.shape)}")
    if labels.shape != (data.shape[0],):
        raise CorruptFileError(path, f"{labels.shape[0]} labels for {data.shape[0]} images")
    return data.reshape(-1, 3, 32, 32), labels


class _CifarDataset(InMemoryImageDataset):
    _folder = ""
    _train_files: tuple[str, ...] = ()
    _test_files: tuple[str, ...] = ()
    _meta = ""
    _label_key = ""
    _names_key = ""
    _archive = ""

    def __init__(self, root: str | Path, split: str = "train",
                 transform: Callable | None = None, target_transform: Callable | None = None) -> None:
        if split not in ("train", "test", "val"):
            raise ValueError(f"split must be 'train' or 'test' ('val' = 'test'), got {split!r}")
        split = "test" if split == "val" else split
        if root is None:
            raise DatasetNotFoundError(f"{type(self).__name__} needs root=<folder holding {self._folder}/>; "
                                       f"unpack {self._archive} there (spikevision never downloads)")
        root = Path(root)
        folder = root / self._folder if (root / self._folder).is_dir() else root
        names = self._train_files if split == "train" else self._test_files
        missing = [n for n in (*names, self._meta) if not (folder / n).is_file()]
        if missing:
            raise DatasetNotFoundError(
                f"{type(self).__name__}: {', '.join(missing)} not found in {folder}; unpack {self._archive} "
                f"(from https://www.cs.toronto.edu/~kriz/cifar.html) into {root} so that {root / self._folder} "
                "holds the batch files (spikevision never downloads)")
        parts = [_decode_batch(folder / n, self._label_key) for n in names]
        meta = read_cifar_pickle(folder / self._meta)
        if self._names_key not in meta:
            raise CorruptFileError(folder / self._meta, f"missing key {self._names_key!r}")
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta[self._names_key]]  # type: ignore[union-attr]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise CorruptFileError(folder, f"labels outside 0..{len(classes) - 1} (from {self._meta})")
        super().__init__(torch.from_numpy(images), torch.from_numpy(labels), classes, transform, target_transform)
        self.split = split
        self.files = [folder / n for n in names]


class CIFAR10(_CifarDataset):
    """CIFAR-10 (Krizhevsky, 2009): 50000 train / 10000 test RGB images ``[3, 32, 32]``, 10 classes.

    Args:
        root: folder containing ``cifar-10-batches-py/`` (or that folder itself).
        split: ``"train"`` (data_batch_1..5) or ``"test"`` (test_batch).
        transform: applied to a PIL RGB image; None returns float ``[3, 32, 32]`` in ``[0, 1]``.

    Raises:
        DatasetNotFoundError: a batch file missing (named, with how to get it).
        CorruptFileError: a file that cannot be decoded (named).
    """

    _folder = "cifar-10-batches-py"
    _train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    _test_files = ("test_batch",)
    _meta = "batches.meta"
    _label_key = "labels"
    _names_key = "label_names"
    _archive = "cifar-10-python.tar.gz"


class CIFAR100(_CifarDataset):
    """CIFAR-100 (Krizhevsky, 2009): 50000 / 10000 RGB images ``[3, 32, 32]``, 100 fine classes.

    Args:
        root: folder containing ``cifar-100-python/`` (or that folder itself).
        split: ``"train"`` or ``"test"``.
        transform: applied to a PIL RGB image; None returns float ``[3, 32, 32]`` in ``[0, 1]``.

    Raises:
        DatasetNotFoundError: a file missing (named, with how to get it).
        CorruptFileError: a file that cannot be decoded (named).
    """

    _folder = "cifar-100-python"
    _train_files = ("train",)
    _test_files = ("test",)
    _meta = "meta"
    _label_key = "fine_labels"
    _names_key = "fine_label_names"
    _archive = "cifar-100-python.tar.gz"
