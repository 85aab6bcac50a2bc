"""Data: static image sets, CIFAR10-DVS event frames, transforms and loaders.

Entry points: :class:`DataConfig`, :func:`build_dataset`, :func:`build_loader`,
:func:`build_mixup`, :func:`get_dataset_info`; see ``docs/data.md``.
"""

from spikevision.data.build import (
    DATASETS,
    DatasetInfo,
    build_dataset,
    build_loader,
    build_mixup,
    get_dataset_info,
    list_datasets,
    uses_fast_path,
)
from spikevision.data.cifar import CIFAR10, CIFAR100
from spikevision.data.cifar10_dvs import CIFAR10DVS, FrameParams
from spikevision.data.config import AUGMENT_RECIPES, DataConfig, DataConfigError
from spikevision.data.errors import CorruptFileError, DatasetNotFoundError, UnknownDatasetError
from spikevision.data.events import events_to_frames, load_dvs128_events, read_aedat2
from spikevision.data.idx import read_idx
from spikevision.data.in_memory import (
    InMemoryImageDataset,
    ShardSampler,
    TensorBatchLoader,
    set_loader_epoch,
    time_major_collate,
)
from spikevision.data.mix import EpochDrawMix
from spikevision.data.mnist import MNIST, FashionMNIST
from spikevision.data.transforms import build_transform


def __getattr__(name: str):
    # ImageNetFolder subclasses torchvision's ImageFolder; importing torchvision
    # costs about a second, so it is loaded on first use only.
    if name == "ImageNetFolder":
        from spikevision.data.imagenet import ImageNetFolder

        return ImageNetFolder
    raise AttributeError(f"module 'spikevision.data' has no attribute {name!r}")


__all__ = [
    "AUGMENT_RECIPES", "CIFAR10", "CIFAR100", "CIFAR10DVS", "CorruptFileError", "DATASETS", "DataConfig",
    "DataConfigError", "DatasetInfo", "DatasetNotFoundError", "EpochDrawMix", "FashionMNIST", "FrameParams",
    "ImageNetFolder",
    "InMemoryImageDataset", "MNIST", "ShardSampler", "TensorBatchLoader", "UnknownDatasetError", "build_dataset",
    "build_loader", "build_mixup", "build_transform", "events_to_frames", "get_dataset_info", "list_datasets",
    "load_dvs128_events", "read_aedat2", "read_idx", "set_loader_epoch", "time_major_collate", "uses_fast_path",
]
