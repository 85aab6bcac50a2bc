import dataclasses

import numpy as np
import pytest
import torch

from spikevision.data import (
    AUGMENT_RECIPES,
    DataConfig,
    DataConfigError,
    TensorBatchLoader,
    UnknownDatasetError,
    build_dataset,
    build_loader,
    build_mixup,
    build_transform,
    get_dataset_info,
    set_loader_epoch,
    uses_fast_path,
)
from spikevision.data.constants import CIFAR10_MEAN, CIFAR10_STD


def test_unknown_names_suggest_nearest():
    with pytest.raises(UnknownDatasetError, match="'cifar10'"):
        build_dataset("cifar_10", "train")
    with pytest.raises(DataConfigError, match="did you mean 'batch_size'"):
        DataConfig.from_dict({"name": "mnist", "batchsize": 3})
    with pytest.raises(DataConfigError) as e:
        DataConfig.from_dict({"name": "fashion_mist", "augment": "crop_flp", "batch_size": 0})
    msg = str(e.value)  # every problem at once
    assert "fashion_mnist" in msg and "crop_flip" in msg and "batch_size" in msg


def test_config_roundtrip():
    cfg = DataConfig.from_dict({"name": "cifar10", "mean": [0.1, 0.2, 0.3], "std": [1, 1, 1]})
    assert cfg.mean == (0.1, 0.2, 0.3)
    assert DataConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(DataConfigError, match="even batch_size"):
        DataConfig(name="cifar10", batch_size=3, cutmix_alpha=1.0).validate()


@pytest.mark.parametrize("recipe", AUGMENT_RECIPES)
@pytest.mark.parametrize("name,size", [("cifar10", None), ("imagenet", 64), ("fashion_mnist", None)])
def test_every_recipe_builds_and_runs(recipe, name, size):
    from PIL import Image

    if recipe.startswith("imagenet") and name == "fashion_mnist":
        pytest.skip("ImageNet colour recipes are for RGB data")
    cfg = DataConfig(name=name, img_size=size, augment=recipe, random_erasing=0.25)
    info = get_dataset_info(name)
    c, s = info.in_channels, size or info.img_size
    mode = "L" if c == 1 else "RGB"
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (s + 9, s + 5, 3)[: 2 if c == 1 else 3],
                                                             dtype=np.uint8), mode)
    if not info.variable_size:
        img = img.resize((s, s))
    for train in (True, False):
        out = build_transform(cfg, train)(img)
        assert out.shape == (c, s, s) and out.dtype == torch.float32


def test_eval_transform_normalises_like_constants():
    from PIL import Image

    cfg = DataConfig(name="cifar10")
    arr = np.full((32, 32, 3), 128, np.uint8)
    out = build_transform(cfg, train=False)(Image.fromarray(arr))
    for ch in range(3):
        assert torch.allclose(out[ch], torch.tensor((128 / 255 - CIFAR10_MEAN[ch]) / CIFAR10_STD[ch]), atol=1e-6)
    assert build_transform(DataConfig(name="cifar10_dvs"), train=True) is None


def test_loaders_choose_fast_path(tmp_path, idx_set, cifar_set):
    idx_set(tmp_path, n_train=10, n_test=6)
    cfg = DataConfig(name="fashion_mnist", root=str(tmp_path), batch_size=4, num_workers=0)
    loader = build_loader(cfg, "train")
    assert isinstance(loader, TensorBatchLoader) and len(loader) == 2  # drop_last
    assert len(loader.dataset) == 10 and loader.dataset.classes[1] == "Trouser"
    x, y = next(iter(loader))
    assert x.shape == (4, 1, 28, 28) and y.dtype == torch.long
    ev = build_loader(cfg, "test")
    assert isinstance(ev, TensorBatchLoader) and sum(len(b[1]) for b in ev) == 6
    aug = DataConfig(name="cifar10", root=str(tmp_path), batch_size=4, num_workers=0, augment="crop_flip")
    cifar_set(tmp_path)
    dl = build_loader(aug, "train")  # crop and flip are drawn on tensors
    assert isinstance(dl, TensorBatchLoader) and dl.crop_padding == 4 and dl.hflip
    assert next(iter(dl))[0].shape == (4, 3, 32, 32)
    assert not build_loader(aug, "test").augments
    pil = DataConfig(name="cifar10", root=str(tmp_path), batch_size=4, num_workers=0, augment="resized_crop_flip")
    assert not uses_fast_path(pil, "train") and uses_fast_path(pil, "test")
    assert next(iter(build_loader(pil, "train")))[0].shape == (4, 3, 32, 32)
    erase = DataConfig(name="cifar10", root=str(tmp_path), batch_size=4, augment="crop_flip", random_erasing=0.25)
    assert uses_fast_path(erase, "train") and build_loader(erase, "train").random_erasing == 0.25  # drawn batched
    assert build_loader(erase, "test").random_erasing == 0.0
    with pytest.raises(ValueError, match="augment='resized_crop_flip'"):
        uses_fast_path(DataConfig(name="cifar10", augment="resized_crop_flip", fast_path="on"), "train")


def test_repeated_aug_and_sharded_eval(tmp_path, cifar_set):
    cifar_set(tmp_path, per_batch=4)  # 20 train, 4 test
    cfg = DataConfig(name="cifar10", root=str(tmp_path), batch_size=2, num_workers=0, repeated_aug=3,
                     augment="crop_flip")
    dl = build_loader(cfg, "train", rank=0, world_size=2)
    assert type(dl.sampler).__name__ == "RepeatAugSampler"
    ev = [build_loader(DataConfig(name="cifar10", root=str(tmp_path), batch_size=3, num_workers=0, fast_path="off"),
                       "test", rank=r, world_size=3) for r in range(3)]
    assert sum(len(b[1]) for loader in ev for b in loader) == 4  # no padding duplicates


def test_event_loader_is_time_major(tmp_path, dvs_root):
    dvs_root(tmp_path, per_class=1, n_events=9)
    cfg = DataConfig(name="cifar10_dvs", root=str(tmp_path), batch_size=3, num_workers=0, frames=4,
                     cache_dir=str(tmp_path / "cache"))
    x, y = next(iter(build_loader(cfg, "train")))
    assert x.shape == (4, 3, 2, 128, 128) and y.shape == (3,)
    assert torch.equal(x.sum(dim=(0, 2, 3, 4)), torch.tensor([9.0, 9.0, 9.0]))
    with pytest.raises(ValueError, match="frames"):
        build_loader(DataConfig(name="cifar10_dvs", root=str(tmp_path)), "train")


def test_mixup_built_only_when_on():
    assert build_mixup(DataConfig(name="cifar10")) is None
    mix = build_mixup(DataConfig(name="cifar10", mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1))
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    xm, ym = mix(x, y)
    assert xm.shape == x.shape and ym.shape == (4, 10)
    assert torch.allclose(ym.sum(1), torch.ones(4)) and float(ym.min()) >= 0.1 / 10 - 1e-6


def test_epoch_draw_mix_is_all_or_nothing_per_epoch():
    from spikevision.data import EpochDrawMix

    cfg = DataConfig(name="cifar10", cutmix_alpha=1.0, mix_prob=0.5, mix_draw="epoch", seed=1)
    mix = build_mixup(cfg)
    assert isinstance(mix, EpochDrawMix)
    x = torch.arange(4 * 3 * 32 * 32, dtype=torch.float32).reshape(4, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 3])
    np.random.seed(0)  # timm draws lambda from numpy's global RNG
    states = []
    for epoch in range(12):
        mix.set_epoch(epoch)
        changed = [not torch.equal(mix(x.clone(), y)[0], x) for _ in range(4)]
        assert len(set(changed)) == 1  # every batch of an epoch alike
        states.append(changed[0])
    assert any(states) and not all(states)
    mix.active = False
    _, soft = mix(x, y)
    assert torch.equal(soft, torch.eye(10)[:4])


def test_dataloader_order_depends_only_on_seed_and_epoch(tmp_path, cifar_set):
    """A resumed run builds a fresh loader: its epoch e must see the order the uninterrupted run saw."""
    cifar_set(tmp_path, per_batch=4)  # 20 train images
    cfg = DataConfig(name="cifar10", root=str(tmp_path), batch_size=4, num_workers=0, augment="crop_flip",
                     drop_last=False, fast_path="off")

    def labels(loader, epoch):
        set_loader_epoch(loader, epoch)
        return torch.cat([y for _, y in loader]).tolist()

    running = build_loader(cfg, "train")
    orders = [labels(running, e) for e in range(3)]
    assert orders[0] != orders[1] or orders[1] != orders[2]  # reshuffled per epoch
    fresh = build_loader(cfg, "train")
    assert labels(fresh, 2) == orders[2]  # no memory of the epochs served before
    other = build_loader(dataclasses.replace(cfg, seed=cfg.seed + 1), "train")
    assert labels(other, 2) != orders[2]


def test_dataloader_shards_over_ranks_by_epoch(tmp_path, cifar_set):
    """The DataLoader path under torchrun: disjoint rank shards covering the epoch, reshuffled per epoch,
    reproducible by a fresh loader (what a resumed rank builds)."""
    cifar_set(tmp_path, per_batch=4)  # 20 train images
    cfg = DataConfig(name="cifar10", root=str(tmp_path), batch_size=2, num_workers=0, augment="crop_flip",
                     drop_last=False, fast_path="off")

    def indices(rank, epoch):
        loader = build_loader(cfg, "train", rank=rank, world_size=2)
        set_loader_epoch(loader, epoch)
        return list(iter(loader.sampler))

    for epoch in (0, 1):
        a, b = indices(0, epoch), indices(1, epoch)
        assert len(a) == len(b) == 10 and set(a).isdisjoint(b) and set(a) | set(b) == set(range(20))
    assert indices(0, 0) != indices(0, 1)
    assert indices(1, 1) == indices(1, 1)


def test_holdout_indices_are_a_fixed_disjoint_cover():
    from spikevision.data.build import holdout_indices

    train, held = holdout_indices(50, 0.2)
    assert len(held) == 10 and len(train) == 40
    assert sorted(train.tolist() + held.tolist()) == list(range(50))  # disjoint, covers every sample
    again = holdout_indices(50, 0.2)
    assert torch.equal(again[0], train) and torch.equal(again[1], held)  # the same draw every time
    assert len(holdout_indices(50, 0.0)[1]) == 0
    with pytest.raises(ValueError, match="leaves 0 held out"):
        holdout_indices(3, 0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        holdout_indices(10, 1.0)


@pytest.mark.parametrize("fast_path", ["auto", "off"])
def test_holdout_split_is_carved_from_training_data_and_served_like_the_test_split(tmp_path, idx_set, fast_path):
    from spikevision.data.build import holdout_indices
    from spikevision.data.mnist import FashionMNIST

    idx_set(tmp_path, n_train=20, n_test=6)
    base = dict(name="fashion_mnist", root=str(tmp_path), batch_size=4, eval_batch_size=3, num_workers=0,
                fast_path=fast_path, augment="crop_flip", mean=(0.0,), std=(1.0,))
    cfg = DataConfig(**base, holdout=0.25)
    train_loader, held_loader = build_loader(cfg, "train"), build_loader(cfg, "holdout")
    assert len(train_loader) == 3  # 15 images left to train on, batches of 4, drop_last
    held = [b for b in held_loader]
    assert [len(y) for _, y in held] == [3, 2]  # 5 images, the eval batch size, in order, none dropped
    keep_train, keep_held = holdout_indices(20, 0.25)
    images, labels = FashionMNIST(tmp_path, "train").tensors()
    x = torch.cat([b[0] for b in held])  # not augmented: exactly the held-out images (mean 0, std 1)
    assert torch.allclose(x, images[keep_held].float().div(255).reshape(5, 1, 28, 28))
    assert torch.equal(torch.cat([b[1] for b in held]), labels[keep_held])
    every = build_loader(DataConfig(**base, holdout=0.25, drop_last=False), "train")
    seen = torch.cat([y for _, y in every])
    assert sorted(seen.tolist()) == sorted(labels[keep_train].tolist())  # training never sees the holdout
    with pytest.raises(ValueError, match="needs data.holdout > 0"):
        build_loader(DataConfig(**base), "holdout")
    with pytest.raises(DataConfigError, match="holdout must be in"):
        DataConfig(name="fashion_mnist", holdout=1.5).validate()
