"""Build data sets, transforms, loaders and Mixup from names and a ``DataConfig``.

The training engine needs four calls::

    cfg = DataConfig.from_dict(recipe["data"])
    train_loader = build_loader(cfg, "train", rank=rank, world_size=world)
    eval_loader = build_loader(cfg, "test", rank=rank, world_size=world)
    mixup = build_mixup(cfg, get_dataset_info(cfg.name).num_classes)  # None when off

and, before each epoch, ``set_loader_epoch(train_loader, epoch)``. A loader
yields ``(x, y)``: ``x`` float ``[B, C, H, W]`` for images (the model's encoder
makes the sequence) or ``[T, B, 2, 128, 128]`` for event data; ``y`` int64
``[B]``. The tensor fast path yields on ``cfg.device``; DataLoaders on CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from spikevision.data.config import DataConfig
from spikevision.data.info import DATASETS, DatasetInfo, get_dataset_info, list_datasets
from spikevision.data.in_memory import ShardSampler, TensorBatchLoader, time_major_collate
from spikevision.data.transforms import build_transform, resolve_mean_std

#: augment recipes the tensor path draws itself (batched random crop / flip, no PIL)
TENSOR_AUGMENTS = ("none", "crop", "crop_flip")

__all__ = ["DatasetInfo", "DATASETS", "get_dataset_info", "list_datasets", "build_dataset", "build_loader",
           "build_mixup", "uses_fast_path"]


def build_dataset(name: str, split: str, root: str | Path | None = None, transform: Callable | None = None,
                  **options) -> Dataset:
    """Construct data set ``name`` for ``split`` (``"train"`` or ``"test"``; ``"val"`` = ``"test"``).

    Args:
        name: a registered name (see :func:`list_datasets`).
        split: ``"train"`` or ``"test"``.
        root: folder of the files (None: the data set's default location, if any).
        transform: per-sample transform (PIL in for images; frames tensor for event data).
        **options: event-data options of :class:`~spikevision.data.cifar10_dvs.CIFAR10DVS`
            (``frames``, ``split_by``, ``orientation``, ``split_rule``, ``train_ratio``,
            ``split_seed``, ``cache_dir``).

    Raises:
        UnknownDatasetError: unknown name (nearest names suggested).
        DatasetNotFoundError: files missing (says where to put them).
        CorruptFileError: a damaged file (named).
        TypeError: options given to a data set that takes none.
    """
    info = get_dataset_info(name)
    root = Path(root).expanduser() if root is not None else None
    if options.get("cache_dir"):
        options["cache_dir"] = Path(options["cache_dir"]).expanduser()
    if options and not info.is_event:
        raise TypeError(f"data set {name!r} takes no options, got {sorted(options)}")
    if name in ("fashion_mnist", "mnist"):
        from spikevision.data.mnist import MNIST, FashionMNIST

        return (FashionMNIST if name == "fashion_mnist" else MNIST)(root, split, transform)
    if name in ("cifar10", "cifar100"):
        from spikevision.data.cifar import CIFAR10, CIFAR100

        return (CIFAR10 if name == "cifar10" else CIFAR100)(root, split, transform)  # type: ignore[arg-type]
    if name == "imagenet":
        from spikevision.data.imagenet import ImageNetFolder

        return ImageNetFolder(root, split, transform)
    from spikevision.data.cifar10_dvs import CIFAR10DVS

    return CIFAR10DVS(root, split, transform=transform, **options)  # type: ignore[arg-type]


def uses_fast_path(cfg: DataConfig, split: str) -> bool:
    """Whether ``build_loader(cfg, split)`` serves batches through :class:`TensorBatchLoader`.

    Raises:
        ValueError: ``fast_path="on"`` where it cannot apply (says why).
    """
    info = get_dataset_info(cfg.name)
    train = split == "train"
    reasons = []
    if not info.in_memory:
        reasons.append(f"{cfg.name} is not an in-memory data set")
    if train and cfg.augment not in TENSOR_AUGMENTS:
        reasons.append(f"augment={cfg.augment!r} needs per-sample transforms (the tensor path draws "
                       f"{', '.join(TENSOR_AUGMENTS)})")
    if cfg.img_size not in (None, info.img_size):
        reasons.append(f"img_size={cfg.img_size} differs from the native {info.img_size} (resizing needed)")
    if train and cfg.repeated_aug > 0:
        reasons.append("repeated_aug needs its sampler")
    if cfg.fast_path == "off":
        return False
    if cfg.fast_path == "on" and reasons:
        raise ValueError(f"fast_path='on' cannot apply to the {split} split: {'; '.join(reasons)}. "
                         "Use fast_path='auto' or 'off'.")
    return not reasons


def _event_options(cfg: DataConfig) -> dict:
    if cfg.frames is None:
        raise ValueError(f"{cfg.name} needs data.frames = the model's T (e.g. data.frames=16); "
                         "the engine sets it from the model when left unset")
    return dict(frames=cfg.frames, split_by=cfg.split_by, orientation=cfg.orientation, split_rule=cfg.split_rule,
                train_ratio=cfg.train_ratio, split_seed=cfg.split_seed, cache_dir=cfg.cache_dir)


HOLDOUT_SEED = 0  # the holdout draw is fixed: every run (and seed) of a recipe validates on the same images


def holdout_indices(n: int, fraction: float) -> tuple[Tensor, Tensor]:
    """Sorted indices ``(train, holdout)`` splitting ``n`` training samples, ``round(fraction * n)`` held out.

    A fixed draw (seed ``HOLDOUT_SEED``), so every run of a recipe trains and validates on the same images.

    Raises:
        ValueError: ``fraction`` outside [0, 1), or a split that leaves either side empty.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout must be in [0, 1), got {fraction!r}")
    k = round(fraction * n)
    if fraction > 0 and not 0 < k < n:
        raise ValueError(f"holdout={fraction} of {n} training samples leaves {k} held out and {n - k} to train on")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(HOLDOUT_SEED))
    return order[k:].sort().values, order[:k].sort().values


def _restrict(ds: Dataset, cfg: DataConfig, split: str) -> Tensor | None:
    """The indices of ``ds`` (the training split's data set) this split keeps, or None for all of it."""
    if split not in ("train", "holdout") or cfg.holdout == 0:
        return None
    train, held = holdout_indices(len(ds), cfg.holdout)  # type: ignore[arg-type]
    return held if split == "holdout" else train


def build_loader(cfg: DataConfig, split: str, *, rank: int = 0, world_size: int = 1):
    """Loader of one split for ``cfg`` (a ``DataLoader`` or a ``TensorBatchLoader``).

    Training shuffles (seeded by ``cfg.seed``), drops the last incomplete batch
    when ``cfg.drop_last``, and with several ranks shards by
    ``DistributedSampler`` (or timm's ``RepeatAugSampler`` when
    ``cfg.repeated_aug > 0``: each rank sees ``floor(N/256)*256/world_size``
    samples per epoch). Evaluation keeps order and, with several ranks, shards
    without padding (:class:`ShardSampler`) so summed counts are exact.

    Args:
        cfg: the data config.
        split: ``"train"`` or ``"test"`` (``"val"`` = ``"test"``), or ``"holdout"``: the part of the
            training split that ``cfg.holdout`` keeps out of ``"train"``, served like the test split.
        rank, world_size: this process's place in a distributed run.

    Returns:
        an iterable of ``(x, y)`` with ``len()`` = batches per epoch.
    """
    cfg.validate()
    if split not in ("train", "test", "val", "holdout"):
        raise ValueError(f"split must be 'train', 'test' ('val' = 'test') or 'holdout', got {split!r}")
    if split == "holdout" and cfg.holdout == 0:
        raise ValueError("split 'holdout' needs data.holdout > 0 (the fraction of the training split held out)")
    info = get_dataset_info(cfg.name)
    train = split == "train"
    source = "train" if split == "holdout" else split
    batch_size = cfg.batch_size if train else (cfg.eval_batch_size or cfg.batch_size)
    options = _event_options(cfg) if info.is_event else {}

    if uses_fast_path(cfg, split):
        ds = build_dataset(cfg.name, source, cfg.root)
        images, targets = ds.tensors()  # type: ignore[attr-defined]
        keep = _restrict(ds, cfg, split)
        if keep is not None:
            images, targets, ds = images[keep], targets[keep], Subset(ds, keep.tolist())
        mean, std = resolve_mean_std(cfg)
        crop = train and cfg.augment in ("crop", "crop_flip")
        return TensorBatchLoader(images, targets, batch_size, mean, std, shuffle=train,
                                 drop_last=train and cfg.drop_last, device=cfg.device, seed=cfg.seed,
                                 rank=rank, world_size=world_size, dataset=ds,
                                 crop_padding=cfg.crop_padding if crop else 0,
                                 hflip=train and cfg.augment == "crop_flip",
                                 random_erasing=cfg.random_erasing if crop else 0.0)

    ds = build_dataset(cfg.name, source, cfg.root, build_transform(cfg, train), **options)
    keep = _restrict(ds, cfg, split)
    if keep is not None:
        ds = Subset(ds, keep.tolist())
    sampler = None
    if train and cfg.repeated_aug > 0:
        from timm.data.distributed_sampler import RepeatAugSampler

        sampler = RepeatAugSampler(ds, num_replicas=world_size, rank=rank, shuffle=True,
                                   num_repeats=cfg.repeated_aug)
    elif train:  # also with one process: the order of epoch e depends only on (seed, e), so a resume replays it
        sampler = DistributedSampler(ds, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.seed,
                                     drop_last=cfg.drop_last)
    elif not train and world_size > 1:
        sampler = ShardSampler(len(ds), rank, world_size)  # type: ignore[arg-type]
    shuffle = train and sampler is None
    return DataLoader(
        ds, batch_size=batch_size, shuffle=shuffle, sampler=sampler, num_workers=cfg.num_workers,
        pin_memory=cfg.pin_memory, drop_last=train and cfg.drop_last,
        collate_fn=time_major_collate if info.is_event else None,
        persistent_workers=cfg.num_workers > 0,
    )


def build_mixup(cfg: DataConfig, num_classes: int | None = None):
    """Mixup/CutMix for ``cfg``, or None when both alphas are 0.

    Call it on a training batch ``x, y_soft = mixup(x, y)`` (``x`` ``[B, C, H, W]``,
    even ``B``); it returns soft targets ``[B, classes]`` with
    ``cfg.label_smoothing`` applied. Mixup and CutMix are truly optional:
    nothing is built when they are off (unlike the spiking-MLP code).

    Returns:
        timm ``Mixup`` (``mix_draw="batch"``), or
        :class:`~spikevision.data.mix.EpochDrawMix` (``mix_draw="epoch"``, GAC's
        released per-epoch draw; call its ``set_epoch(epoch)`` every epoch, e.g.
        through :func:`~spikevision.data.in_memory.set_loader_epoch`), or None.
    """
    if cfg.mixup_alpha <= 0 and cfg.cutmix_alpha <= 0:
        return None
    from timm.data import Mixup

    n = num_classes or get_dataset_info(cfg.name).num_classes
    per_batch_prob = cfg.mix_prob if cfg.mix_draw == "batch" else 1.0
    mixup = Mixup(mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.cutmix_alpha, prob=per_batch_prob,
                  switch_prob=cfg.mix_switch_prob, mode="batch", label_smoothing=cfg.label_smoothing,
                  num_classes=n)
    if cfg.mix_draw == "batch":
        return mixup
    from spikevision.data.mix import EpochDrawMix

    return EpochDrawMix(mixup, cfg.mix_prob, n, cfg.label_smoothing, cfg.seed)
