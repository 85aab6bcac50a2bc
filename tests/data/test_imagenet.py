import numpy as np
import pytest

from spikevision.data.errors import DatasetNotFoundError
from spikevision.data.imagenet import ImageNetFolder


def test_image_folder_reads_classes_and_pixels(tmp_path, image_folder):
    written = image_folder(tmp_path, "train")
    image_folder(tmp_path, "val", per_class=1)
    train = ImageNetFolder(tmp_path, "train")
    assert len(train) == 4 and train.classes == ["cat", "dog"]
    for i, (path, label) in enumerate(train.samples):
        img, y = train[i]
        arr, expected_label = written[type(tmp_path)(path)]
        assert y == label == expected_label and np.array_equal(np.asarray(img), arr)
    assert len(ImageNetFolder(tmp_path, "test")) == 2  # "test" reads val/


def test_missing_and_flat_val(tmp_path, image_folder):
    image_folder(tmp_path, "train")
    with pytest.raises(DatasetNotFoundError, match="val"):
        ImageNetFolder(tmp_path, "val")
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match="class folders"):
        ImageNetFolder(tmp_path, "val")
    with pytest.raises(ValueError, match="split"):
        ImageNetFolder(tmp_path, "validation")


def test_truncated_image_is_named_also_from_a_worker(tmp_path, image_folder):
    import pickle

    from PIL import Image
    from torch.utils.data import DataLoader

    from spikevision.data.errors import CorruptFileError

    image_folder(tmp_path, "train")
    bad = tmp_path / "train" / "dog" / "9.jpg"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(bad)
    bad.write_bytes(bad.read_bytes()[:200])  # cut a real JPEG short
    ds = ImageNetFolder(tmp_path, "train")
    index = [p for p, _ in ds.samples].index(str(bad))
    with pytest.raises(CorruptFileError, match=r"9\.jpg: cannot decode the image"):
        ds[index]
    err = CorruptFileError(bad, "cannot decode the image", "replace it")
    back = pickle.loads(pickle.dumps(err))  # how a DataLoader worker sends it to the main process
    assert isinstance(back, CorruptFileError) and back.path == bad and str(back) == str(err)
    loader = DataLoader(ds, batch_size=1, num_workers=1, collate_fn=lambda b: b)
    with pytest.raises(CorruptFileError, match=r"9\.jpg"):
        list(loader)
