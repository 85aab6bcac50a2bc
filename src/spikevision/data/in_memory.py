"""In-memory image data sets and the fast tensor-batch path.

(Memory-saving training, activation recomputation, is :mod:`spikevision.train.memory_saving`.)

Small data sets (MNIST, Fashion-MNIST, CIFAR) are decoded once into a uint8
tensor ``[N, C, H, W]`` held in memory. Two ways to read them:

* :class:`InMemoryImageDataset` with a torchvision/timm transform (PIL image in,
  tensor out) behind a ``DataLoader``: needed for augmentation;
* :class:`TensorBatchLoader`: no per-sample Python at all. Each batch is one
  index into the uint8 tensor, scaled and normalised in one vectorised op,
  optionally on the GPU. It gives exactly what ``ToTensor() + Normalize()``
  gives sample by sample, and is what makes CPU training of small models fast
  (no worker processes, no collate). It also draws the two augmentations of the
  small-image recipes, random crop with zero padding and horizontal flip, as one
  batched gather (same distribution as torchvision's ``RandomCrop(padding=p)``
  and ``RandomHorizontalFlip()``), and random erasing with per-pixel normal noise
  as one masked select (same distribution as timm's ``RandomErasing(mode="pixel")``
  with one box, Zhong et al., AAAI 2020).
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, Sampler

__all__ = ["InMemoryImageDataset", "TensorBatchLoader", "ShardSampler", "time_major_collate", "set_loader_epoch"]


class InMemoryImageDataset(Dataset):
    """Images held as one uint8 tensor; ``__getitem__`` costs one slice.

    Args:
        images: uint8 ``[N, C, H, W]`` (C = 1 or 3).
        targets: int64 ``[N]`` class indices.
        classes: class names, index order.
        transform: applied to a PIL image (mode ``L`` or ``RGB``), as in
            torchvision. None: return the float tensor ``[C, H, W]`` in ``[0, 1]``.
        target_transform: applied to the int label.

    Returns per item ``(image, label)``.
    """

    def __init__(
        self,
        images: Tensor,
        targets: Tensor,
        classes: Sequence[str],
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be uint8 [N, C, H, W] with C in (1, 3), "
                             f"got {images.dtype} {list(images.shape)}")
        if targets.shape != (images.shape[0],):
            raise ValueError(f"targets must be [N] = [{images.shape[0]}], got {list(targets.shape)}")
        self.images = images
        self.targets = targets.long()
        self.classes = list(classes)
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def to_pil(self, index: int) -> Image.Image:
        """Image ``index`` as a PIL image (``L`` for 1 channel, ``RGB`` for 3)."""
        arr = self.images[index].numpy()
        if arr.shape[0] == 1:
            return Image.fromarray(arr[0], mode="L")
        return Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)), mode="RGB")

    def __getitem__(self, index: int):
        target = int(self.targets[index])
        if self.target_transform is not None:
            target = self.target_transform(target)
        if self.transform is None:
            return self.images[index].float().div_(255.0), target
        return self.transform(self.to_pil(index)), target

    def tensors(self) -> tuple[Tensor, Tensor]:
        """The whole split: uint8 ``[N, C, H, W]`` and int64 ``[N]`` (no copy)."""
        return self.images, self.targets


class TensorBatchLoader:
    """Batches straight from in-memory uint8 tensors, normalised on the fly.

    Equivalent to a ``DataLoader`` over ``ToTensor() + Normalize(mean, std)``
    (same values, to float rounding), but each batch is one gather plus one
    fused affine op. Iterating again reshuffles (epoch ``e`` uses the
    permutation of ``torch.Generator().manual_seed(seed + e)``, so runs are
    reproducible and every rank agrees on it); ``set_epoch`` pins the epoch as
    with ``DistributedSampler``.

    Args:
        images: uint8 ``[N, C, H, W]``.
        targets: int64 ``[N]``.
        batch_size: samples per batch (per rank).
        mean, std: per-channel normalisation, for pixels in ``[0, 1]``.
        shuffle: reshuffle each epoch.
        drop_last: drop the last incomplete batch; with several ranks it also
            cuts the epoch to a multiple of ``world_size`` so every rank runs
            the same number of steps (needed for DDP training).
        device: where batches are produced; the uint8 data moves there once
            (60000 Fashion-MNIST images are 47 MB).
        seed: base seed of the shuffling.
        rank, world_size: shard of a distributed run (rank r takes every
            ``world_size``-th index of the permutation).
        dataset: the data set the tensors came from, kept as ``.dataset``
            (like ``DataLoader.dataset``: ``len(loader.dataset)``, ``classes``).
        crop_padding: random crop of the original size from the image padded
            with ``crop_padding`` zero pixels on every side (0 = no crop).
        hflip: flip each image horizontally with probability 1/2.
        random_erasing: probability that an image gets one box of standard normal
            noise (in normalised units) after cropping and flipping: box area
            2%-33% of the image, aspect ratio log-uniform in [0.3, 3.33], placed
            uniformly; 10 draws per image and the first that fits is used (none
            fits: the image is kept), as timm draws them. 0 = off.

    The augmentation draws of epoch ``e`` come from a generator seeded by
    ``(seed, e, rank)``, so a resumed run redraws exactly the same crops and flips.

    Yields ``(x, y)``: float32 ``[B, C, H, W]`` and int64 ``[B]`` on ``device``.
    """

    def __init__(
        self,
        images: Tensor,
        targets: Tensor,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        shuffle: bool = True,
        drop_last: bool = False,
        device: str | torch.device = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        dataset: Dataset | None = None,
        crop_padding: int = 0,
        hflip: bool = False,
        random_erasing: float = 0.0,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"TensorBatchLoader needs uint8 images [N, C, H, W], "
                             f"got {images.dtype} {list(images.shape)}")
        C = images.shape[1]
        if len(mean) != C or len(std) != C:
            raise ValueError(f"mean/std need {C} values (one per channel), got {len(mean)} and {len(std)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if not isinstance(crop_padding, int) or crop_padding < 0:
            raise ValueError(f"crop_padding must be an int >= 0, got {crop_padding!r}")
        if not 0.0 <= random_erasing <= 1.0:
            raise ValueError(f"random_erasing must be a probability in [0, 1], got {random_erasing!r}")
        self.crop_padding, self.hflip, self.random_erasing = crop_padding, bool(hflip), float(random_erasing)
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.targets = targets.long().to(self.device)
        self.batch_size = batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        # x_norm = x_u8 * scale + shift  ==  (x_u8 / 255 - mean) / std
        std_t = torch.tensor(std, dtype=torch.float32)
        self._scale = (1.0 / (255.0 * std_t)).view(1, C, 1, 1).to(self.device)
        self._shift = (-torch.tensor(mean, dtype=torch.float32) / std_t).view(1, C, 1, 1).to(self.device)
        self._epoch = 0
        self.dataset = dataset

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch`` on the next iteration."""
        self._epoch = epoch

    def _indices(self, epoch: int) -> Tensor:
        n = self.images.shape[0]
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.drop_last and self.world_size > 1:
            order = order[: n - n % self.world_size]
        return order[self.rank :: self.world_size]

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (before dropping the last batch)."""
        return len(self._indices(0))

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def augments(self) -> bool:
        """Whether batches are randomly cropped or flipped."""
        return self.crop_padding > 0 or self.hflip

    def _augment(self, x: Tensor, g: torch.Generator) -> Tensor:
        """Random crop (zero padding) and horizontal flip of a uint8 batch ``[B, C, H, W]``, one gather."""
        B, C, H, W = x.shape
        p = self.crop_padding
        dy = torch.randint(0, 2 * p + 1, (B,), generator=g)
        dx = torch.randint(0, 2 * p + 1, (B,), generator=g)
        flip = torch.rand(B, generator=g) < 0.5 if self.hflip else torch.zeros(B, dtype=torch.bool)
        if p:
            x = torch.nn.functional.pad(x, (p, p, p, p))  # zeros = black pixels, as RandomCrop(padding=p)
        ar_h, ar_w = torch.arange(H), torch.arange(W)
        rows = dy[:, None] + ar_h  # [B, H] rows of the padded image
        cols = dx[:, None] + torch.where(flip[:, None], W - 1 - ar_w, ar_w)  # [B, W], reversed when flipped
        dev = x.device
        b = torch.arange(B, device=dev)[:, None, None]
        out = x[b, :, rows.to(dev)[:, :, None], cols.to(dev)[:, None, :]]  # [B, H, W, C]
        return out.permute(0, 3, 1, 2)

    #: random erasing's box: area fraction, aspect ratio range, draws per image (timm's defaults)
    ERASE_AREA, ERASE_RATIO, ERASE_TRIES = (0.02, 1 / 3), (0.3, 1 / 0.3), 10

    def _erase(self, x: Tensor, g: torch.Generator) -> Tensor:
        """Random erasing of a normalised float batch ``[B, C, H, W]``: one box of N(0, 1) noise per chosen image."""
        B, C, H, W = x.shape
        chosen = torch.rand(B, generator=g) < self.random_erasing
        lo, hi = self.ERASE_AREA
        area = H * W * (lo + (hi - lo) * torch.rand(B, self.ERASE_TRIES, generator=g))
        log_lo, log_hi = math.log(self.ERASE_RATIO[0]), math.log(self.ERASE_RATIO[1])
        ratio = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(B, self.ERASE_TRIES, generator=g))
        h = torch.round(torch.sqrt(area * ratio)).long()
        w = torch.round(torch.sqrt(area / ratio)).long()
        fits = (h < H) & (w < W)
        first = fits.int().argmax(1, keepdim=True)  # the first draw that fits (0 when none does: masked out below)
        chosen &= fits.any(1)
        h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
        top = (torch.rand(B, generator=g) * (H - h + 1)).long()
        left = (torch.rand(B, generator=g) * (W - w + 1)).long()
        noise = torch.randn(B, C, H, W, generator=g)
        rows, cols = torch.arange(H)[None, :], torch.arange(W)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])  # [B, H]
        in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # [B, W]
        box = (in_rows[:, :, None] & in_cols[:, None, :] & chosen[:, None, None])[:, None]  # [B, 1, H, W]
        return torch.where(box.to(x.device), noise.to(x.device), x)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        idx = self._indices(self._epoch).to(self.device)
        # distinct stream from the shuffle's (seed + epoch), one per rank
        g = torch.Generator().manual_seed(1_000_003 * (self.seed + 1) + 7_919 * self._epoch + self.rank)
        self._epoch += 1
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, len(idx)), self.batch_size):
            b = idx[start : start + self.batch_size]
            x = self.images[b]
            if self.augments:
                x = self._augment(x, g)
            x = torch.addcmul(self._shift, x.float(), self._scale)
            if self.random_erasing > 0:
                x = self._erase(x, g)
            yield x, self.targets[b]


class ShardSampler(Sampler[int]):
    """Evaluation sharding without padding: rank ``r`` takes indices ``r, r + W, ...``.

    Unlike ``DistributedSampler`` nothing is duplicated, so summing correct
    counts over ranks (all-reduce) gives the exact full-test-set accuracy.
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))


def time_major_collate(batch: Sequence[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
    """Collate event samples ``[T, C, H, W]`` into a time-major batch ``[T, B, C, H, W]``."""
    x = torch.stack([s[0] for s in batch], dim=1)
    y = torch.as_tensor([int(s[1]) for s in batch], dtype=torch.long)
    return x, y


def set_loader_epoch(loader: object, epoch: int) -> None:
    """Tell a loader (``TensorBatchLoader`` or a ``DataLoader`` whose sampler has
    ``set_epoch``, e.g. ``DistributedSampler``/``RepeatAugSampler``) which epoch
    starts, so shuffling differs per epoch and agrees across ranks."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
        return
    for attr in ("sampler", "batch_sampler"):
        s = getattr(loader, attr, None)
        if s is not None and hasattr(s, "set_epoch"):
            s.set_epoch(epoch)
        inner = getattr(s, "sampler", None)
        if inner is not None and hasattr(inner, "set_epoch"):
            inner.set_epoch(epoch)
