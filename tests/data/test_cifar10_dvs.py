import os

import numpy as np
import pytest
import torch

import spikevision.data.cifar10_dvs as dvs_mod
from spikevision.data.cifar10_dvs import CIFAR10DVS, FrameParams, split_files
from spikevision.data.constants import CIFAR10_DVS_CLASSES
from spikevision.data.errors import CorruptFileError, DatasetNotFoundError


def _hand_frames(t, x, y, p, F):
    """Count frames by hand after SpikingJelly's orientation mapping (split by number)."""
    x2, y2, p2 = 127 - y, 127 - x, 1 - p
    n, di = len(t), len(t) // F
    out = np.zeros((F, 2, 128, 128))
    for k in range(n):
        j = min(k // di, F - 1)
        out[j, p2[k], y2[k], x2[k]] += 1
    return out


def test_sorted_split_is_lexicographic_900_100_rule(tmp_path, dvs_root):
    dvs_root(tmp_path, per_class=12)
    train = CIFAR10DVS(tmp_path, "train", frames=2, cache_dir=False)
    test = CIFAR10DVS(tmp_path, "test", frames=2, cache_dir=False)
    # ceil(0.9 * 12) = 11 train per class; lexicographic order puts "_9" last, so "_9" is the test file
    assert len(train) == 110 and len(test) == 10
    assert [p.name for p, _ in test.samples] == [f"cifar10_{c}_9.aedat" for c in CIFAR10_DVS_CLASSES]
    first = [p.name for p, y in train.samples if y == 0]
    assert first[:4] == ["cifar10_airplane_0.aedat", "cifar10_airplane_1.aedat",
                         "cifar10_airplane_10.aedat", "cifar10_airplane_11.aedat"]
    assert test.targets == list(range(10))


def test_published_counts():
    files = [[os.path.join("c", f"f_{i}") for i in range(1000)] for _ in range(10)]
    from pathlib import Path

    files = [[Path(f) for f in c] for c in files]
    tr, te = split_files(files, "train"), split_files(files, "test")
    assert len(tr) == 9000 and len(te) == 1000
    assert {p.name for p, _ in te if _ == 0} == {f"f_{i}" for i in sorted(map(str, range(1000)))[900:]}


def test_random_split_seeded_disjoint_complete(tmp_path, dvs_root):
    dvs_root(tmp_path, per_class=10, n_events=5)
    a = CIFAR10DVS(tmp_path, "train", frames=2, split_rule="random", split_seed=3, cache_dir=False).samples
    b = CIFAR10DVS(tmp_path, "train", frames=2, split_rule="random", split_seed=3, cache_dir=False).samples
    c = CIFAR10DVS(tmp_path, "train", frames=2, split_rule="random", split_seed=4, cache_dir=False).samples
    te = CIFAR10DVS(tmp_path, "test", frames=2, split_rule="random", split_seed=3, cache_dir=False).samples
    assert a == b and a != c
    assert not set(a) & set(te) and len(set(a) | set(te)) == 100 and len(te) == 10


def test_frames_equal_hand_count(tmp_path, dvs_root):
    written = dvs_root(tmp_path, per_class=2, n_events=41)
    ds = CIFAR10DVS(tmp_path, "train", frames=3, cache_dir=False)
    for i in (0, 5, 9):
        x, label = ds[i]
        path = ds.samples[i][0]
        assert x.dtype == torch.float32 and x.shape == (3, 2, 128, 128)
        assert np.array_equal(x.numpy(), _hand_frames(*written[path], 3))
        assert label == CIFAR10_DVS_CLASSES.index(path.parent.name)


def test_cache_reused_and_keyed_by_parameters(tmp_path, dvs_root, monkeypatch):
    dvs_root(tmp_path, per_class=10, n_events=20)  # 9 train / 1 test per class
    ds = CIFAR10DVS(tmp_path, "test", frames=4, cache_dir=tmp_path / "cache")
    first = [ds[i][0] for i in range(len(ds))]
    cache_dirs = list((tmp_path / "cache").iterdir())
    assert len(cache_dirs) == 1 and cache_dirs[0].name == FrameParams(4).cache_name()
    assert (cache_dirs[0] / "params.json").is_file()
    # Second pass must not decode any event file.
    monkeypatch.setattr(dvs_mod, "load_dvs128_events", lambda *a, **k: pytest.fail("cache not used"))
    again = CIFAR10DVS(tmp_path, "test", frames=4, cache_dir=tmp_path / "cache")
    assert all(torch.equal(a, again[i][0]) for i, a in enumerate(first))
    monkeypatch.undo()
    # Other parameters -> another folder, never the stale frames.
    other = CIFAR10DVS(tmp_path, "test", frames=4, split_by="time", cache_dir=tmp_path / "cache")
    other[0]
    names = {d.name for d in (tmp_path / "cache").iterdir()}
    assert len(names) == 2 and FrameParams(4, "time").cache_name() in names
    assert FrameParams(4).cache_name() != FrameParams(4, orientation="raw").cache_name() != FrameParams(5).cache_name()


def test_prepare_fills_cache(tmp_path, dvs_root):
    dvs_root(tmp_path, per_class=2, n_events=8)
    ds = CIFAR10DVS(tmp_path, "train", frames=2)
    assert ds.prepare(num_threads=2) == len(ds) == 20
    assert all(ds.cache_path(i).is_file() for i in range(len(ds)))
    assert ds.prepare() == 0


def test_no_partial_file_after_failure(tmp_path, dvs_root, monkeypatch):
    dvs_root(tmp_path, per_class=1, n_events=8)
    ds = CIFAR10DVS(tmp_path, "train", frames=2, cache_dir=tmp_path / "c", train_ratio=0.5)

    def dies_midway(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise RuntimeError("disk full")

    monkeypatch.setattr(dvs_mod.np, "savez_compressed", dies_midway)
    with pytest.raises(RuntimeError, match="disk full"):
        ds[0]
    left = [p for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert [p.name for p in left] == ["params.json"]  # no frames file, no temp file
    monkeypatch.undo()
    x, _ = ds[0]
    assert ds.cache_path(0).is_file() and x.sum() == 8


def test_truncated_event_file_named(tmp_path, dvs_root):
    dvs_root(tmp_path, per_class=2, n_events=8)
    bad = tmp_path / "cat" / "cifar10_cat_0.aedat"
    bad.write_bytes(bad.read_bytes()[:-5])
    ds = CIFAR10DVS(tmp_path, "train", frames=2, cache_dir=False)
    i = [p for p, _ in ds.samples].index(bad)
    with pytest.raises(CorruptFileError, match="cifar10_cat_0.aedat"):
        ds[i]


def test_missing_root_and_class(tmp_path, dvs_root):
    with pytest.raises(DatasetNotFoundError, match="airplane"):
        CIFAR10DVS(tmp_path / "none", "train", frames=2)
    dvs_root(tmp_path, per_class=1, n_events=4)
    for f in (tmp_path / "dog").iterdir():
        f.unlink()
    (tmp_path / "dog").rmdir()
    with pytest.raises(DatasetNotFoundError, match="dog"):
        CIFAR10DVS(tmp_path, "train", frames=2)
    with pytest.raises(ValueError, match="frames"):
        CIFAR10DVS(tmp_path, "train")


def test_unwritable_cache_fails_early(tmp_path, dvs_root):
    dvs_root(tmp_path, per_class=1, n_events=4)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="cache_dir"):
        CIFAR10DVS(tmp_path, "train", frames=2, cache_dir=blocker / "cache")
