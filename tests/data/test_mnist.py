from pathlib import Path

import numpy as np
import pytest
import torch

from spikevision.data.constants import FASHION_MNIST_DEFAULT_ROOT
from spikevision.data.errors import CorruptFileError, DatasetNotFoundError
from spikevision.data.mnist import MNIST, FashionMNIST


def test_decoded_values_equal_written(tmp_path, idx_set):
    w = idx_set(tmp_path)
    ds = FashionMNIST(tmp_path, "train")
    assert len(ds) == 6 and ds.images.shape == (6, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert np.array_equal(ds.images[:, 0].numpy(), w["train_images"])
    assert ds.targets.tolist() == w["train_labels"].tolist()
    x, y = ds[3]  # no transform: float in [0, 1]
    assert torch.equal(x, torch.from_numpy(w["train_images"][3]).float().unsqueeze(0) / 255)
    assert y == w["train_labels"][3]
    test = MNIST(tmp_path, "test")
    assert np.array_equal(test.images[:, 0].numpy(), w["t10k_images"])


def test_transform_gets_pil_image(tmp_path, idx_set):
    w = idx_set(tmp_path)
    seen = []
    ds = FashionMNIST(tmp_path, "test", transform=lambda im: seen.append(im) or 0)
    ds[1]
    assert seen[0].mode == "L" and np.array_equal(np.asarray(seen[0]), w["t10k_images"][1])


def test_uncompressed_and_torchvision_layout(tmp_path, idx_set):
    w = idx_set(tmp_path / "FashionMNIST" / "raw", gz=False)
    ds = FashionMNIST(tmp_path, "train")
    assert np.array_equal(ds.images[:, 0].numpy(), w["train_images"])


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        FashionMNIST(tmp_path, "train")
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and str(tmp_path) in msg
    assert "train-images-idx3-ubyte.gz" in msg
    with pytest.raises(DatasetNotFoundError, match="MNIST IDX files"):
        MNIST(tmp_path, "test")


def test_truncated_file_and_count_mismatch_named(tmp_path, idx_set):
    idx_set(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-30])
    with pytest.raises(CorruptFileError, match="train-images-idx3-ubyte.gz"):
        FashionMNIST(tmp_path, "train")
    idx_set(tmp_path / "b", n_train=6)
    from spikevision.data.idx import write_idx

    write_idx(tmp_path / "b" / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(CorruptFileError, match="5 labels for 6 images"):
        FashionMNIST(tmp_path / "b", "train")


def test_bad_split(tmp_path, idx_set):
    idx_set(tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        FashionMNIST(tmp_path, "training")


@pytest.mark.skipif(not Path(FASHION_MNIST_DEFAULT_ROOT, "train-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist():
    train, test = FashionMNIST(split="train"), FashionMNIST(split="test")
    assert len(train) == 60000 and len(test) == 10000
    assert train.images.shape == (60000, 1, 28, 28)
    for ds in (train, test):
        assert int(ds.targets.min()) == 0 and int(ds.targets.max()) == 9
        assert torch.bincount(ds.targets).tolist() == [len(ds) // 10] * 10
