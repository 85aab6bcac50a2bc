import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import transforms as T

from spikevision.data.in_memory import (
    InMemoryImageDataset,
    ShardSampler,
    TensorBatchLoader,
    set_loader_epoch,
    time_major_collate,
)


def _data(n=10, c=3):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, c, 5, 6), dtype=torch.uint8, generator=g), torch.arange(n) % 4


def test_tensor_path_equals_per_sample_transforms():
    images, targets = _data()
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    tf = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    ds = InMemoryImageDataset(images, targets, ["a", "b", "c", "d"], transform=tf)
    ref = DataLoader(ds, batch_size=4, shuffle=False)
    fast = TensorBatchLoader(images, targets, 4, mean, std, shuffle=False)
    assert len(fast) == len(ref) == 3
    for (xa, ya), (xb, yb) in zip(ref, fast, strict=True):
        assert torch.allclose(xa, xb, atol=1e-5) and torch.equal(ya, yb)


def test_shuffle_per_epoch_reproducible_and_complete():
    images, targets = _data(n=11, c=1)
    loader = TensorBatchLoader(images, targets, 3, (0.0,), (1.0,), shuffle=True, seed=5)

    def order(ld):
        return torch.cat([x.flatten(1)[:, 0] for x, _ in ld])

    e0, e1 = order(loader), order(loader)
    assert not torch.equal(e0, e1)  # reshuffled on the next iteration
    assert torch.allclose(e0.sort().values, (images.flatten(1)[:, 0].float() / 255).sort().values)
    loader.set_epoch(0)
    assert torch.equal(order(loader), e0)
    other = TensorBatchLoader(images, targets, 3, (0.0,), (1.0,), shuffle=True, seed=5)
    assert torch.equal(order(other), e0)


def test_drop_last_and_shards_cover_everything_once():
    images, targets = torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10)
    assert len(TensorBatchLoader(images, targets, 4, (0.0,), (1.0,), drop_last=True)) == 2
    seen = []
    for r in range(3):
        ld = TensorBatchLoader(images, targets, 2, (0.0,), (1.0,), shuffle=True, rank=r, world_size=3)
        seen += torch.cat([y for _, y in ld]).tolist()
    assert sorted(seen) == list(range(10))
    even = [len(TensorBatchLoader(images, targets, 1, (0.0,), (1.0,), drop_last=True, rank=r, world_size=3))
            for r in range(3)]
    assert even == [3, 3, 3]  # DDP: equal steps on every rank
    assert sorted(i for r in range(3) for i in ShardSampler(10, r, 3)) == list(range(10))


def _crops_of(img, p):
    """Every (dy, dx, flip) candidate of RandomCrop(padding=p) + flip, by a plain loop."""
    C, H, W = img.shape
    padded = torch.zeros(C, H + 2 * p, W + 2 * p, dtype=img.dtype)
    padded[:, p:p + H, p:p + W] = img
    for dy in range(2 * p + 1):
        for dx in range(2 * p + 1):
            crop = padded[:, dy:dy + H, dx:dx + W]
            yield (dy, dx, False), crop
            yield (dy, dx, True), crop.flip(-1)


def test_tensor_path_crop_flip_draws_valid_crops_reproducibly():
    g = torch.Generator().manual_seed(1)
    images = torch.randint(1, 256, (64, 2, 5, 6), dtype=torch.uint8, generator=g)  # no zeros: crops are unique
    targets = torch.arange(64)
    loader = TensorBatchLoader(images, targets, 16, (0.0, 0.0), (1 / 255, 1 / 255), shuffle=True, seed=3,
                               crop_padding=2, hflip=True)  # normalised values = raw pixel values
    seen = set()
    for x, y in loader:
        assert x.shape == (16, 2, 5, 6)
        for xi, yi in zip(x, y):
            match = [k for k, c in _crops_of(images[yi], 2) if torch.equal(c.float(), xi)]
            assert len(match) == 1, "not a crop of its own padded image"
            seen.add(match[0])
    assert len({k[:2] for k in seen}) > 12 and {k[2] for k in seen} == {False, True}  # offsets and flips vary
    loader.set_epoch(0)
    first = [x for x, _ in loader]
    loader.set_epoch(0)
    assert all(torch.equal(a, b) for a, (b, _) in zip(first, loader, strict=True))  # same (seed, epoch): same draws
    plain = TensorBatchLoader(images, targets, 16, (0.0, 0.0), (1 / 255, 1 / 255), shuffle=False)
    assert not plain.augments and torch.equal(next(iter(plain))[0], images[:16].float())
    with pytest.raises(ValueError, match="crop_padding"):
        TensorBatchLoader(images, targets, 2, (0.5,) * 2, (0.5,) * 2, crop_padding=-1)


def _erased_boxes(x, value):
    """Per image: None (untouched) or (top, left, h, w) of the pixels that differ from ``value``, checked to
    form one full rectangle on every channel."""
    boxes = []
    for img in x:
        changed = img != value
        assert torch.equal(changed, changed[:1].expand_as(changed)), "the box differs between channels"
        ys, xs = torch.nonzero(changed[0], as_tuple=True)
        if len(ys) == 0:
            boxes.append(None)
            continue
        top, left, h, w = ys.min().item(), xs.min().item(), ys.max().item() - ys.min().item() + 1, \
            xs.max().item() - xs.min().item() + 1
        assert len(ys) == h * w, "the changed pixels are not one rectangle"
        boxes.append((top, left, h, w))
    return boxes


def test_tensor_path_random_erasing_matches_timm_in_distribution():
    from timm.data.random_erasing import RandomErasing

    n, C, H, W = 4000, 1, 28, 28
    images, targets = torch.full((n, C, H, W), 100, dtype=torch.uint8), torch.arange(n)
    # mean 0, std 1/25500: every kept pixel is exactly 10000.0, far from any N(0, 1) noise value
    loader = TensorBatchLoader(images, targets, 500, (0.0,), (1 / 25500,), shuffle=True, seed=0, random_erasing=0.5)
    x = torch.cat([b for b, _ in loader])
    boxes = _erased_boxes(x, 10000.0)
    ours = [b for b in boxes if b is not None]
    noise = x[x != 10000.0]
    assert abs(noise.mean()) < 0.02 and abs(noise.std() - 1) < 0.02  # N(0, 1) noise in the box

    torch.manual_seed(0)  # the reference: timm's per-image RandomErasing, pixel mode, one box
    ref_eraser = RandomErasing(probability=0.5, mode="pixel", max_count=1, device="cpu")
    ref = [b for b in _erased_boxes(torch.stack([ref_eraser(torch.full((C, H, W), 10000.0)) for _ in range(n)]),
                                    10000.0) if b is not None]
    assert abs(len(ours) - len(ref)) < 0.05 * n  # how often an image is erased (about half)
    for stat in (lambda b: b[2] * b[3] / (H * W), lambda b: b[2] / b[3], lambda b: b[0] + b[2] / 2,
                 lambda b: b[1] + b[3] / 2):  # area fraction, aspect, centre row, centre column
        a, r = torch.tensor([stat(b) for b in ours]), torch.tensor([stat(b) for b in ref])
        assert abs(a.mean() - r.mean()) < 0.05 * r.mean() and abs(a.std() - r.std()) < 0.1 * r.std()

    loader.set_epoch(0)
    assert torch.equal(torch.cat([b for b, _ in loader]), x)  # same (seed, epoch): same boxes and noise
    crop = dict(shuffle=True, seed=0, crop_padding=2, hflip=True)
    with_p0 = TensorBatchLoader(images, targets, 500, (0.0,), (1.0,), random_erasing=0.0, **crop)
    without = TensorBatchLoader(images, targets, 500, (0.0,), (1.0,), **crop)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(with_p0, without, strict=True))  # off = no extra draws
    with pytest.raises(ValueError, match="random_erasing"):
        TensorBatchLoader(images, targets, 2, (0.5,), (0.5,), random_erasing=1.5)


def test_bad_inputs():
    images, targets = _data()
    with pytest.raises(ValueError, match="3 values"):
        TensorBatchLoader(images, targets, 2, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="uint8"):
        TensorBatchLoader(images.float(), targets, 2, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="rank"):
        ShardSampler(4, rank=2, world_size=2)


def test_time_major_collate_and_set_epoch():
    batch = [(torch.full((4, 2, 3, 3), float(i)), i) for i in range(5)]
    x, y = time_major_collate(batch)
    assert x.shape == (4, 5, 2, 3, 3) and torch.equal(x[2, 3], batch[3][0][2]) and y.tolist() == [0, 1, 2, 3, 4]

    class S(torch.utils.data.Sampler):
        epoch = -1

        def __iter__(self):
            return iter(range(3))

        def __len__(self):
            return 3

        def set_epoch(self, e):
            S.epoch = e

    set_loader_epoch(DataLoader(list(range(3)), sampler=S()), 7)
    assert S.epoch == 7
