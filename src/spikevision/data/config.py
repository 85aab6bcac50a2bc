"""``DataConfig``: the ``data:`` section of a recipe, as one typed dataclass.

The training engine builds everything data-related from it (see
:mod:`spikevision.data.build`). Unknown keys are an error naming the nearest
valid key; :meth:`DataConfig.validate` reports every problem at once.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from spikevision.data.info import DATASETS
from spikevision.validation import check_values, did_you_mean

__all__ = ["DataConfig", "DataConfigError", "AUGMENT_RECIPES"]

# Transform recipe names (see spikevision.data.transforms for what each builds).
AUGMENT_RECIPES = ("none", "crop", "crop_flip", "resized_crop_flip", "imagenet_autoaugment", "imagenet_randaugment")


class DataConfigError(ValueError):
    """One or more invalid ``DataConfig`` fields; the message lists them all."""


@dataclass
class DataConfig:
    """What to load and how (one recipe's ``data:`` section).

    Args:
        name: data set (``fashion_mnist``, ``mnist``, ``cifar10``, ``cifar100``,
            ``imagenet``, ``cifar10_dvs``).
        root: folder of the files; None uses the data set's default (only
            Fashion-MNIST has one: ``/usr/share/datasets/fashion-mnist``).
        img_size: training/eval image side; None = the data set's native size
            (28, 32, 224 for ImageNet). Spiking-MLP's CIFAR-10 recipe uses 224.
        batch_size: training batch per process (rank).
        eval_batch_size: evaluation batch per process; None = ``batch_size``.
        num_workers: DataLoader worker processes (ignored by the tensor path).
        pin_memory: pin host memory (useful with CUDA).
        fast_path: ``"auto"`` serves in-memory data sets (MNIST, Fashion-MNIST,
            CIFAR) through :class:`~spikevision.data.in_memory.TensorBatchLoader`
            at native size with ``augment`` ``none``, ``crop`` or ``crop_flip``
            (with ``random_erasing`` too; all drawn batched on tensors): no workers,
            no PIL, batches made in a few tensor ops;
            ``"off"`` always uses a DataLoader; ``"on"`` requires the fast path.
        device: where the tensor path produces batches (``"cpu"`` or ``"cuda"``).
        augment: training transform recipe, one of ``AUGMENT_RECIPES``:
            ``none``; ``crop`` (RandomCrop, pad 4: MS-ResNet arXiv);
            ``crop_flip`` (+ horizontal flip: MS-ResNet TNNLS, GAC, S-ResNet CIFAR);
            ``resized_crop_flip`` (spiking-MLP CIFAR at 224);
            ``imagenet_autoaugment`` (RandomResizedCrop + torchvision AutoAugment:
            MS-ResNet, GAC ImageNet; no flip unless ``hflip``);
            ``imagenet_randaugment`` (timm: RandAugment ``rand_augment``, flip,
            RandomErasing ``random_erasing``: spiking MLP).
        hflip: add a horizontal flip to ``imagenet_autoaugment`` (MS-ResNet released: off).
        crop_padding: padding of ``crop``/``crop_flip`` (4).
        rand_augment: timm RandAugment spec (``"rand-m9-mstd0.5-inc1"``, spiking MLP).
        random_erasing: RandomErasing probability (spiking MLP ImageNet: 0.25; pixel mode, one box),
            applied by the ``crop``, ``crop_flip``, ``resized_crop_flip`` and ``imagenet_randaugment`` recipes.
        interpolation: resize interpolation, ``"bilinear"`` or ``"bicubic"`` (spiking MLP).
        crop_pct: eval centre-crop fraction for ImageNet (0.875 = resize 256, crop 224).
        mean, std: normalisation override; None = the data set's constants
            (``spikevision.data.constants``).
        mixup_alpha, cutmix_alpha: timm Mixup/CutMix alphas (0 = off; spiking MLP 0.8 / 1.0).
        mix_prob: probability a batch is mixed (spiking MLP 1.0; GAC CIFAR CutMix 0.5).
        mix_switch_prob: probability of CutMix instead of Mixup when both are on (0.5).
        mix_draw: ``"batch"`` (each batch mixed with ``mix_prob``; timm, spiking
            MLP) or ``"epoch"`` (one draw per epoch: GAC's released CIFAR quirk).
        label_smoothing: label smoothing inside Mixup targets (spiking MLP 0.1).
        repeated_aug: repeated-augmentation repeats (0 = off; spiking MLP 3), timm's RepeatAugSampler.
        drop_last: drop the last incomplete training batch.
        seed: base seed of shuffling and of the tensor path.
        holdout: fraction of the training split held out as a validation split (never trained on; the
            loader's split ``"holdout"``, read like the test split: no augmentation, fixed order). The same
            images for every run (a fixed draw, independent of ``seed``). 0 (default): no holdout; the engine
            then keeps no ``best.pt`` (checkpoints are never chosen on the test set) and runs report their
            final epoch. With a holdout the engine writes ``best.pt`` at the best holdout top-1.
        frames: (event data) frames per sample = T; None = the engine fills in the model's T.
        split_by: (event data) ``"number"`` (released) or ``"time"``.
        orientation: (event data) ``"spikingjelly"`` (released) or ``"raw"``.
        split_rule: (event data) ``"sorted"`` (released 900/100) or ``"random"``.
        train_ratio: (event data) per-class training fraction.
        split_seed: (event data) seed of the random split.
        cache_dir: (event data) frame cache folder; None = inside ``root``.
    """

    name: str = "fashion_mnist"
    root: str | None = None
    img_size: int | None = None
    batch_size: int = 128
    eval_batch_size: int | None = None
    num_workers: int = 2
    pin_memory: bool = False
    fast_path: Literal["auto", "on", "off"] = "auto"
    device: str = "cpu"
    augment: str = "none"
    hflip: bool = False
    crop_padding: int = 4
    rand_augment: str = "rand-m9-mstd0.5-inc1"
    random_erasing: float = 0.0
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    crop_pct: float = 0.875
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    mix_switch_prob: float = 0.5
    mix_draw: Literal["batch", "epoch"] = "batch"
    label_smoothing: float = 0.0
    repeated_aug: int = 0
    drop_last: bool = True
    seed: int = 0
    holdout: float = 0.0
    frames: int | None = None
    split_by: Literal["number", "time"] = "number"
    orientation: Literal["spikingjelly", "raw"] = "spikingjelly"
    split_rule: Literal["sorted", "random"] = "sorted"
    train_ratio: float = 0.9
    split_seed: int = 0
    cache_dir: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DataConfig":
        """Build from a mapping (a YAML section); raise one ``DataConfigError`` listing every problem.

        Unknown keys name the nearest valid one; values are checked against the fields' types, then
        :meth:`validate`'s ranges.
        """
        accepted, errors = check_values(d, typing.get_type_hints(cls), "data")
        cfg = cls(**accepted)
        for key in ("mean", "std"):
            if getattr(cfg, key) is not None:
                setattr(cfg, key, tuple(float(v) for v in getattr(cfg, key)))
        errors += cfg.problems()
        if errors:
            raise DataConfigError("invalid data config:\n  - " + "\n  - ".join(errors))
        return cfg

    def validate(self) -> "DataConfig":
        """Check every field; raise one ``DataConfigError`` listing all problems."""
        e = self.problems()
        if e:
            raise DataConfigError("invalid data config:\n  - " + "\n  - ".join(e))
        return self

    def problems(self) -> list[str]:
        """Every problem with the fields' values (empty when valid)."""
        e: list[str] = []
        for f in dataclasses.fields(self):  # NaN/inf slip through every range check below
            v = getattr(self, f.name)
            values = v if isinstance(v, (list, tuple)) else [v]
            if any(isinstance(x, float) and not math.isfinite(x) for x in values):
                e.append(f"{f.name} must be finite, got {v!r}")
        if self.name not in DATASETS:
            e.append(f"unknown data set {self.name!r}{did_you_mean(self.name, list(DATASETS), 0.4)}; "
                     f"known: {', '.join(DATASETS)}")
        if self.augment not in AUGMENT_RECIPES:
            e.append(f"unknown augment recipe {self.augment!r}{did_you_mean(self.augment, AUGMENT_RECIPES, 0.4)}; "
                     f"known: {', '.join(AUGMENT_RECIPES)}")
        for key in ("batch_size",):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                e.append(f"{key} must be a positive int, got {getattr(self, key)!r}")
        if self.eval_batch_size is not None and (not isinstance(self.eval_batch_size, int) or self.eval_batch_size < 1):
            e.append(f"eval_batch_size must be a positive int or None, got {self.eval_batch_size!r}")
        if self.img_size is not None and (not isinstance(self.img_size, int) or self.img_size < 1):
            e.append(f"img_size must be a positive int or None, got {self.img_size!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            e.append(f"num_workers must be an int >= 0, got {self.num_workers!r}")
        if self.fast_path not in ("auto", "on", "off"):
            e.append(f"fast_path must be 'auto', 'on' or 'off', got {self.fast_path!r}")
        if self.interpolation not in ("bilinear", "bicubic"):
            e.append(f"interpolation must be 'bilinear' or 'bicubic', got {self.interpolation!r}")
        for key in ("random_erasing", "mix_prob", "mix_switch_prob", "label_smoothing"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                e.append(f"{key} must be in [0, 1], got {v!r}")
        for key in ("mixup_alpha", "cutmix_alpha"):
            if not isinstance(getattr(self, key), (int, float)) or getattr(self, key) < 0:
                e.append(f"{key} must be >= 0, got {getattr(self, key)!r}")
        if (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.batch_size % 2:
            e.append(f"Mixup/CutMix need an even batch_size, got {self.batch_size}")
        if self.mix_draw not in ("batch", "epoch"):
            e.append(f"mix_draw must be 'batch' or 'epoch', got {self.mix_draw!r}")
        if not isinstance(self.repeated_aug, int) or self.repeated_aug < 0:
            e.append(f"repeated_aug must be an int >= 0 (0 = off), got {self.repeated_aug!r}")
        if not 0.0 < self.crop_pct <= 1.0:
            e.append(f"crop_pct must be in (0, 1], got {self.crop_pct!r}")
        if (self.mean is None) != (self.std is None):
            e.append("give both mean and std, or neither")
        elif self.mean is not None and len(self.mean) != len(self.std):  # type: ignore[arg-type]
            e.append(f"mean and std differ in length: {self.mean} vs {self.std}")
        if self.frames is not None and (not isinstance(self.frames, int) or self.frames < 1):
            e.append(f"frames must be a positive int or None, got {self.frames!r}")
        if self.split_by not in ("number", "time"):
            e.append(f"split_by must be 'number' or 'time', got {self.split_by!r}")
        if self.orientation not in ("spikingjelly", "raw"):
            e.append(f"orientation must be 'spikingjelly' or 'raw', got {self.orientation!r}")
        if self.split_rule not in ("sorted", "random"):
            e.append(f"split_rule must be 'sorted' or 'random', got {self.split_rule!r}")
        if not isinstance(self.holdout, (int, float)) or not 0.0 <= self.holdout < 1.0:
            e.append(f"holdout must be in [0, 1) (a fraction of the training split), got {self.holdout!r}")
        if not 0.0 < self.train_ratio < 1.0:
            e.append(f"train_ratio must be in (0, 1), got {self.train_ratio!r}")
        return e

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) for saving the resolved config."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
