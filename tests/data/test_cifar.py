import os
import pickle

import numpy as np
import pytest
import torch

from spikevision.data.cifar import CIFAR10, CIFAR100, read_cifar_pickle
from spikevision.data.errors import CorruptFileError, DatasetNotFoundError


def test_cifar10_pixels_follow_the_published_layout(tmp_path, cifar_set):
    w = cifar_set(tmp_path)
    ds = CIFAR10(tmp_path, "train")
    data, labels = w["train"]
    assert len(ds) == 20 and ds.images.shape == (20, 3, 32, 32)
    # row layout: 1024 red, then green, then blue, each row-major 32 x 32
    for n, c, h, x in [(0, 0, 0, 0), (5, 1, 3, 7), (19, 2, 31, 31), (11, 2, 10, 20)]:
        assert int(ds.images[n, c, h, x]) == int(data[n, c * 1024 + h * 32 + x])
    assert ds.targets.tolist() == labels.tolist()
    assert ds.classes[:2] == ["class0", "class1"]
    img = ds.to_pil(5)
    assert img.mode == "RGB" and np.asarray(img)[3, 7, 1] == data[5, 1024 + 3 * 32 + 7]
    test = CIFAR10(tmp_path / "cifar-10-batches-py", "test")  # the batch folder itself also works
    assert len(test) == 4 and test.targets.tolist() == w["test"][1].tolist()


def test_cifar100_fine_labels(tmp_path, cifar_set):
    w = cifar_set(tmp_path, hundred=True)
    ds = CIFAR100(tmp_path, "test")
    assert ds.targets.tolist() == w["test"][1].tolist() and len(ds.classes) == 100
    x, _ = ds[0]
    assert x.shape == (3, 32, 32) and torch.equal(x, ds.images[0].float() / 255)


def test_missing_file_is_named(tmp_path, cifar_set):
    cifar_set(tmp_path)
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DatasetNotFoundError, match="data_batch_3.*cifar-10-python.tar.gz"):
        CIFAR10(tmp_path, "train")
    CIFAR10(tmp_path, "test")  # the test split does not need it
    with pytest.raises(DatasetNotFoundError, match="root="):
        CIFAR10(None, "train")


def test_truncated_pickle_is_named(tmp_path, cifar_set):
    cifar_set(tmp_path)
    p = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(CorruptFileError, match="data_batch_2"):
        CIFAR10(tmp_path, "train")


def test_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "evil").write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(CorruptFileError, match="refusing"):
        read_cifar_pickle(tmp_path / "evil")


def test_newer_pickle_protocols_load(tmp_path):
    a = np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072)
    for proto in (2, 4, 5):
        (tmp_path / f"p{proto}").write_bytes(pickle.dumps({"data": a, "labels": [1, 2]}, protocol=proto))
        d = read_cifar_pickle(tmp_path / f"p{proto}")
        assert np.array_equal(d["data"], a) and d["labels"] == [1, 2]
