"""The data set registry: what the engine and models need to know about each data set by name."""

from __future__ import annotations

from dataclasses import dataclass

from spikevision.data import constants as K
from spikevision.data.errors import UnknownDatasetError, closest

__all__ = ["DatasetInfo", "DATASETS", "get_dataset_info", "list_datasets"]


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about a data set the engine and models need.

    Attributes:
        name: registry name.
        num_classes: classes.
        in_channels: image channels (2 polarities for event data).
        img_size: native side length (ImageNet: the usual 224 crop).
        mean, std: normalisation constants (``data/constants.py``).
        is_event: samples are frame sequences ``[T, C, H, W]``.
        in_memory: decoded into one uint8 tensor (tensor fast path possible).
        variable_size: images of varying size (eval uses resize + centre crop).
    """

    name: str
    num_classes: int
    in_channels: int
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    is_event: bool = False
    in_memory: bool = False
    variable_size: bool = False


DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo("fashion_mnist", 10, 1, 28, K.FASHION_MNIST_MEAN, K.FASHION_MNIST_STD, in_memory=True),
    "mnist": DatasetInfo("mnist", 10, 1, 28, K.MNIST_MEAN, K.MNIST_STD, in_memory=True),
    "cifar10": DatasetInfo("cifar10", 10, 3, 32, K.CIFAR10_MEAN, K.CIFAR10_STD, in_memory=True),
    "cifar100": DatasetInfo("cifar100", 100, 3, 32, K.CIFAR100_MEAN, K.CIFAR100_STD, in_memory=True),
    "imagenet": DatasetInfo("imagenet", 1000, 3, 224, K.IMAGENET_MEAN, K.IMAGENET_STD, variable_size=True),
    "cifar10_dvs": DatasetInfo("cifar10_dvs", 10, 2, 128, (0.0, 0.0), (1.0, 1.0), is_event=True),
}


def list_datasets() -> list[str]:
    """Registered data set names."""
    return list(DATASETS)


def get_dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; unknown names suggest the nearest valid one."""
    if name not in DATASETS:
        raise UnknownDatasetError(f"unknown data set {name!r}{closest(name, DATASETS)} (known: {', '.join(DATASETS)})")
    return DATASETS[name]
