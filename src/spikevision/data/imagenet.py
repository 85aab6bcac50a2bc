"""ImageNet-1k (Russakovsky et al., IJCV 2015) as class folders, read by torchvision's ImageFolder.

Layout::

    <root>/train/n01440764/*.JPEG   (1000 class folders)
    <root>/val/n01440764/*.JPEG     (validation images sorted into the same folders)

The official validation tarball is flat; sort it into class folders first (the
widely used ``valprep.sh`` does that). Class index = position of the folder name
in sorted order, as in every reference ImageNet script.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PIL import Image, UnidentifiedImageError
from torchvision.datasets import ImageFolder

from spikevision.data.errors import CorruptFileError, DatasetNotFoundError

__all__ = ["ImageNetFolder"]

_SPLIT_DIRS = {"train": "train", "test": "val", "val": "val"}


def load_rgb(path: str) -> Image.Image:
    """Open an image file as RGB; a truncated or undecodable file raises :class:`CorruptFileError` naming it."""
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise CorruptFileError(path, f"cannot decode the image ({e})",
                               "replace it with an intact copy or delete it") from e


class ImageNetFolder(ImageFolder):
    """ImageNet from ``<root>/train`` and ``<root>/val`` class folders.

    Any folder-per-class data set works the same way (e.g. a 100-class subset).

    Args:
        root: folder holding ``train/`` and ``val/``.
        split: ``"train"`` or ``"val"`` (``"test"`` is an alias of ``"val"``).
        transform: applied to the PIL RGB image.

    Raises:
        DatasetNotFoundError: the split folder is missing or holds no class
            folders with images (e.g. the flat, unsorted val tarball).
        CorruptFileError: (when an item is read) a truncated or undecodable image, naming it.
    """

    def __init__(self, root: str | Path | None, split: str = "train",
                 transform: Callable | None = None, target_transform: Callable | None = None) -> None:
        if split not in _SPLIT_DIRS:
            raise ValueError(f"split must be 'train' or 'val' ('test' = 'val'), got {split!r}")
        if root is None:
            raise DatasetNotFoundError("ImageNet needs root=<folder holding train/ and val/ class folders>")
        folder = Path(root) / _SPLIT_DIRS[split]
        if not folder.is_dir():
            raise DatasetNotFoundError(
                f"ImageNet {split} folder {folder} not found; expected {Path(root)}/train/<wnid>/*.JPEG and "
                f"{Path(root)}/val/<wnid>/*.JPEG (sort the flat validation tarball into class folders first)")
        has_class_dirs = any(p.is_dir() for p in folder.iterdir())
        if not has_class_dirs:
            raise DatasetNotFoundError(
                f"{folder} holds no class folders; ImageFolder needs {folder}/<class>/<image> "
                "(the official val tarball is flat: sort it into class folders first)")
        try:
            super().__init__(str(folder), transform=transform, target_transform=target_transform, loader=load_rgb)
        except FileNotFoundError as e:  # class folders without any image file
            raise DatasetNotFoundError(f"{folder}: {e}") from e
        self.split = _SPLIT_DIRS[split]
