"""Training and evaluation transforms per recipe, built from torchvision and timm.

Recipes (``DataConfig.augment``), each used by a paper setting:

=====================  ==============================================================  =========================
name                   training transform                                              used by
=====================  ==============================================================  =========================
none                   (resize if ``img_size`` differs) + ToTensor + Normalize         quickstart, DVS-free evals
crop                   RandomCrop(pad 4) + ToTensor + Normalize                        MS-ResNet CIFAR (arXiv)
crop_flip              RandomCrop(pad 4) + HorizontalFlip + ToTensor + Normalize       MS-ResNet (TNNLS), GAC,
                                                                                       S-ResNet CIFAR
resized_crop_flip      RandomResizedCrop(img_size) + HorizontalFlip + Normalize        spiking MLP CIFAR-10 (224)
imagenet_autoaugment   RandomResizedCrop(224) + AutoAugment(ImageNet policy)           MS-ResNet, GAC ImageNet
                       [+ flip if ``hflip``] + Normalize
imagenet_randaugment   timm: RandomResizedCrop(224, scale 0.08-1) + flip +             spiking MLP ImageNet
                       RandAugment("rand-m9-mstd0.5-inc1") + Normalize +
                       RandomErasing(p, pixel mode)
=====================  ==============================================================  =========================

Evaluation: ImageNet-style data (variable image size) resize to
``img_size / crop_pct`` and centre-crop ``img_size`` (256 / 224); fixed-size
data sets only resize when ``img_size`` differs from the native size.
Event data sets get no transform (raw counts, as released).
"""

from __future__ import annotations

from typing import Callable

from spikevision.data.config import AUGMENT_RECIPES, DataConfig
from spikevision.data.info import get_dataset_info

__all__ = ["build_transform", "resolve_mean_std", "AUGMENT_RECIPES"]


def resolve_mean_std(cfg: DataConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation of ``cfg``: its override, else the data set's constants."""
    if cfg.mean is not None and cfg.std is not None:
        return tuple(cfg.mean), tuple(cfg.std)
    info = get_dataset_info(cfg.name)
    return info.mean, info.std


def _random_erasing(cfg: DataConfig) -> list[Callable]:
    if cfg.random_erasing <= 0:
        return []
    from timm.data.random_erasing import RandomErasing

    return [RandomErasing(probability=cfg.random_erasing, mode="pixel", max_count=1, device="cpu")]


def build_transform(cfg: DataConfig, train: bool) -> Callable | None:
    """Transform of one split for ``cfg`` (PIL image in, normalised float tensor ``[C, H, W]`` out).

    Args:
        cfg: the data config (``augment``, ``img_size``, ...).
        train: training (augmenting) or evaluation transform.

    Returns:
        a callable, or None for event data sets (frames are used as counts).

    Raises:
        ValueError: an unknown recipe name.
    """
    from torchvision import transforms as T  # imported here: torchvision takes ~1 s to import

    if cfg.augment not in AUGMENT_RECIPES:
        raise ValueError(f"unknown augment recipe {cfg.augment!r}; known: {', '.join(AUGMENT_RECIPES)}")
    info = get_dataset_info(cfg.name)
    if info.is_event:
        return None
    size = cfg.img_size or info.img_size
    interp = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}[cfg.interpolation]
    mean, std = resolve_mean_std(cfg)
    to_tensor = [T.ToTensor(), T.Normalize(mean, std)]

    if not train or cfg.augment == "none":
        if info.variable_size:
            resize = [T.Resize(int(round(size / cfg.crop_pct)), interpolation=interp), T.CenterCrop(size)]
        elif size != info.img_size:
            resize = [T.Resize((size, size), interpolation=interp)]
        else:
            resize = []
        return T.Compose(resize + to_tensor)

    recipe = cfg.augment
    if recipe in ("crop", "crop_flip"):
        pre = [] if size == info.img_size or info.variable_size else [T.Resize((size, size), interpolation=interp)]
        ops = pre + [T.RandomCrop(size, padding=cfg.crop_padding)]
        if recipe == "crop_flip":
            ops.append(T.RandomHorizontalFlip())
        return T.Compose(ops + to_tensor + _random_erasing(cfg))
    if recipe == "resized_crop_flip":
        ops = [T.RandomResizedCrop(size, interpolation=interp), T.RandomHorizontalFlip()]
        return T.Compose(ops + to_tensor + _random_erasing(cfg))
    if recipe == "imagenet_autoaugment":
        ops = [T.RandomResizedCrop(size, interpolation=interp)]
        if cfg.hflip:
            ops.append(T.RandomHorizontalFlip())
        ops.append(T.AutoAugment(T.AutoAugmentPolicy.IMAGENET))
        return T.Compose(ops + to_tensor + _random_erasing(cfg))
    # imagenet_randaugment: timm's standard ImageNet training pipeline.
    from timm.data import create_transform

    return create_transform(
        input_size=size, is_training=True, hflip=0.5, auto_augment=cfg.rand_augment,
        interpolation=cfg.interpolation, mean=mean, std=std,
        re_prob=cfg.random_erasing, re_mode="pixel", re_count=1,
    )
