"""CIFAR10-DVS (Li, Liu, Ji, Li and Shi, Front. Neurosci. 11:309, 2017) as event frames.

10000 DVS128 recordings of moving CIFAR-10 images, 1000 per class, 128 x 128,
2 polarities. Layout: one folder per class holding the original ``.aedat``
files (or SpikingJelly's converted ``.npz``)::

    <root>/airplane/cifar10_airplane_0.aedat ... <root>/truck/cifar10_truck_999.aedat

Each sample becomes ``F`` count frames ``[F, 2, 128, 128]`` (see
:mod:`spikevision.data.events`); a time-major batch is ``[T, B, 2, 128, 128]``
(use :func:`~spikevision.data.in_memory.time_major_collate`).

Split rules:

* ``split_rule="sorted"`` (default; S-ResNet / SpikingJelly, released): per
  class, the files in lexicographic filename order (``_0, _1, _10, _100, ...``);
  the first ``ceil(0.9 n)`` train and the rest test: 900 / 100 per class,
  9000 / 1000 in all.
* ``split_rule="random"``: per class a seeded random 9:1 split
  (``numpy.random.default_rng(split_seed)``; not SpikingJelly's global-RNG
  shuffle, which cannot be reproduced across runs).

Frames are cached on disk, keyed by the conversion parameters: the folder name
carries them and a hash (``frames_F16_number_spikingjelly_128x128_<hash>``), so
changing any parameter never reads stale frames. Every file is written to a
temporary name and renamed, so an interrupted conversion leaves nothing
half-written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from spikevision.data.constants import CIFAR10_DVS_CLASSES, DVS128_SENSOR_SIZE
from spikevision.data.errors import CorruptFileError, DatasetNotFoundError
from spikevision.data.events import events_to_frames, load_dvs128_events

__all__ = ["CIFAR10DVS", "FrameParams", "split_files", "atomic_save_npz", "EVENT_SUFFIXES"]

log = logging.getLogger(__name__)

EVENT_SUFFIXES = (".aedat", ".npz")
CACHE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class FrameParams:
    """Everything that decides the frames of one recording (the cache key).

    Args:
        frames: number of frames F (= time steps T; S-ResNet uses 50).
        split_by: ``"number"`` (SpikingJelly/S-ResNet default) or ``"time"``.
        orientation: ``"spikingjelly"`` (released-compatible) or ``"raw"``.
        height, width: sensor size (DVS128: 128 x 128).
    """

    frames: int
    split_by: Literal["number", "time"] = "number"
    orientation: Literal["spikingjelly", "raw"] = "spikingjelly"
    height: int = DVS128_SENSOR_SIZE[0]
    width: int = DVS128_SENSOR_SIZE[1]

    def __post_init__(self) -> None:
        if not isinstance(self.frames, int) or self.frames < 1:
            raise ValueError(f"frames must be a positive int (the number of time steps T), got {self.frames!r}")
        if self.split_by not in ("number", "time"):
            raise ValueError(f"split_by must be 'number' or 'time', got {self.split_by!r}")
        if self.orientation not in ("spikingjelly", "raw"):
            raise ValueError(f"orientation must be 'spikingjelly' or 'raw', got {self.orientation!r}")

    def cache_name(self) -> str:
        """Readable, collision-safe folder name, e.g. ``frames_F16_number_spikingjelly_128x128_1a2b3c4d5e6f``."""
        blob = json.dumps({"version": CACHE_FORMAT_VERSION, **asdict(self)}, sort_keys=True)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
        return f"frames_F{self.frames}_{self.split_by}_{self.orientation}_{self.height}x{self.width}_{digest}"


def split_files(files_per_class: Sequence[Sequence[Path]], split: str, train_ratio: float = 0.9,
                rule: Literal["sorted", "random"] = "sorted", seed: int = 0) -> list[tuple[Path, int]]:
    """Per-class train/test split of event files.

    Args:
        files_per_class: for each class index, its files.
        split: ``"train"`` or ``"test"``.
        train_ratio: fraction per class that trains; ``ceil(ratio * n)`` files.
        rule: ``"sorted"`` (first files in lexicographic name order train) or
            ``"random"`` (a per-class permutation from ``default_rng(seed)``).
        seed: seed of the random rule.

    Returns:
        ``(path, label)`` pairs, class by class, each class in name order.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not 0.0 < train_ratio < 1.0:
        raise ValueError(f"train_ratio must be in (0, 1), got {train_ratio}")
    if rule not in ("sorted", "random"):
        raise ValueError(f"split_rule must be 'sorted' or 'random', got {rule!r}")
    rng = np.random.default_rng(seed)
    out: list[tuple[Path, int]] = []
    for label, files in enumerate(files_per_class):
        files = sorted(files, key=lambda p: p.name)
        n_train = math.ceil(len(files) * train_ratio)
        order = rng.permutation(len(files)) if rule == "random" else np.arange(len(files))
        chosen = order[:n_train] if split == "train" else order[n_train:]
        out.extend((files[i], label) for i in sorted(chosen.tolist()))
    return out


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` to a temporary file in the same folder, then an atomic rename.

    On any failure the temporary file is removed, so ``path`` is either absent
    or complete; concurrent writers (DataLoader workers, ranks) are safe.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _check_writable(folder: Path) -> None:
    """Raise now (before any conversion) if the cache folder cannot be created or written."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
        raise PermissionError(f"cannot write the frame cache {folder} ({existing} is not a writable folder); "
                              "pass cache_dir=<a writable folder> (data.cache_dir) or cache_dir=False")


class CIFAR10DVS(Dataset):
    """CIFAR10-DVS event recordings as count frames ``[F, 2, 128, 128]``.

    Defaults reproduce the S-ResNet / SpikingJelly pipeline (split by event
    number, SpikingJelly orientation, sorted 900/100 split, raw float counts,
    no augmentation, no normalisation).

    Args:
        root: folder with one sub-folder per class (``airplane`` ... ``truck``).
        split: ``"train"`` or ``"test"`` (``"val"`` = ``"test"``).
        frames: number of frames F (= T). Required: 50 in S-ResNet; MS-ResNet's is unknown.
        split_by: ``"number"`` (default) or ``"time"``.
        orientation: ``"spikingjelly"`` (default, released) or ``"raw"`` (jAER sensor coordinates).
        split_rule: ``"sorted"`` (default, released 900/100) or ``"random"`` (seeded 9:1).
        train_ratio: per-class training fraction (0.9).
        split_seed: seed of the random split.
        cache_dir: where frame caches go: None = ``<root>``; ``False`` = no cache
            (convert on every access). The cache lives in ``<cache_dir>/<FrameParams.cache_name()>``.
        classes: class folder names in label order (CIFAR-10's by default).
        transform: applied to the float32 frames tensor ``[F, 2, H, W]``.
        target_transform: applied to the int label.

    Raises:
        DatasetNotFoundError: ``root`` or a class folder missing, or a class without event files.
        CorruptFileError: (when a sample is read) a truncated or malformed event file, named.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        frames: int | None = None,
        split_by: Literal["number", "time"] = "number",
        orientation: Literal["spikingjelly", "raw"] = "spikingjelly",
        split_rule: Literal["sorted", "random"] = "sorted",
        train_ratio: float = 0.9,
        split_seed: int = 0,
        cache_dir: str | Path | None | Literal[False] = None,
        classes: Sequence[str] = CIFAR10_DVS_CLASSES,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ) -> None:
        if frames is None:
            raise ValueError("CIFAR10DVS needs frames=<number of time steps T> (S-ResNet uses 50)")
        self.params = FrameParams(frames, split_by, orientation)
        split = {"val": "test"}.get(split, split)
        if root is None or not Path(root).is_dir():
            raise DatasetNotFoundError(
                f"CIFAR10-DVS root {root} not found; unpack the 10 class archives of the CIFAR10-DVS "
                "recordings (figshare, Li et al. 2017) so that <root>/airplane/*.aedat ... <root>/truck/*.aedat "
                "exist (SpikingJelly's events_np/<class>/*.npz folders work too), and pass root=<root>")
        self.root = Path(root)
        missing = [c for c in classes if not (self.root / c).is_dir()]
        if missing:
            raise DatasetNotFoundError(f"CIFAR10-DVS class folders missing in {self.root}: {', '.join(missing)} "
                                       f"(expected one folder per class: {', '.join(classes)})")
        per_class = []
        for c in classes:
            files = [p for p in (self.root / c).iterdir() if p.suffix in EVENT_SUFFIXES and p.is_file()]
            if not files:
                raise DatasetNotFoundError(f"no event files ({'/'.join(EVENT_SUFFIXES)}) in {self.root / c}")
            per_class.append(files)
        self.classes = list(classes)
        self.split = split
        self.samples = split_files(per_class, split, train_ratio, split_rule, split_seed)
        self.targets = [label for _, label in self.samples]
        if cache_dir is False:
            self.cache_root: Path | None = None
        else:
            base = self.root if cache_dir is None else Path(cache_dir)
            self.cache_root = base / self.params.cache_name()
            _check_writable(self.cache_root)
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.samples)

    def cache_path(self, index: int) -> Path | None:
        """Where sample ``index``'s frames are cached (None when caching is off)."""
        if self.cache_root is None:
            return None
        path, label = self.samples[index]
        return self.cache_root / self.classes[label] / (path.stem + ".npz")

    def convert(self, index: int) -> np.ndarray:
        """Decode and integrate sample ``index`` (no cache): int64 ``[F, 2, H, W]``."""
        path, _ = self.samples[index]
        p = self.params
        events = load_dvs128_events(path, p.orientation)
        try:
            return events_to_frames(events, p.frames, p.split_by, p.height, p.width)
        except ValueError as e:
            raise CorruptFileError(path, str(e)) from e

    def _write_params(self) -> None:
        assert self.cache_root is not None
        meta = self.cache_root / "params.json"
        if not meta.is_file():
            _atomic_write_text(meta, json.dumps({"version": CACHE_FORMAT_VERSION, **asdict(self.params)}, indent=2))

    def frames_array(self, index: int) -> np.ndarray:
        """Frames of sample ``index``, from the cache when present (writing it otherwise)."""
        cache = self.cache_path(index)
        if cache is not None and cache.is_file():
            try:
                with np.load(cache) as z:
                    frames = z["frames"]
                expected = (self.params.frames, 2, self.params.height, self.params.width)
                if frames.shape == expected:
                    return frames
                log.warning("cached frames %s have shape %s, expected %s; rebuilding", cache, frames.shape, expected)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
                log.warning("unreadable cached frames %s (%s); rebuilding", cache, e)
        frames = self.convert(index)
        if cache is not None:
            # Counts fit uint16 in practice; int32 otherwise. Stored compact, returned as float32.
            small = frames.astype(np.uint16 if frames.max(initial=0) <= np.iinfo(np.uint16).max else np.int32)
            self._write_params()
            atomic_save_npz(cache, frames=small)
        return frames

    def __getitem__(self, index: int):
        x = torch.from_numpy(self.frames_array(index).astype(np.float32))
        label = self.targets[index]
        if self.transform is not None:
            x = self.transform(x)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return x, label

    def prepare(self, num_threads: int = 1, progress: bool = False) -> int:
        """Fill the cache for this split ahead of training; returns how many files were converted.

        Args:
            num_threads: conversion threads (numpy and zlib release the GIL).
            progress: show a tqdm bar.
        """
        if self.cache_root is None:
            raise ValueError("prepare() needs a cache; this dataset was built with cache_dir=False")
        todo = [i for i in range(len(self)) if not self.cache_path(i).is_file()]  # type: ignore[union-attr]
        with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
            results = pool.map(self.frames_array, todo)
            if progress:
                from tqdm import tqdm

                results = tqdm(results, total=len(todo), desc=f"CIFAR10-DVS {self.split} frames")
            for _ in results:
                pass
        return len(todo)
