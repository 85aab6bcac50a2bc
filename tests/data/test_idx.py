import gzip

import numpy as np
import pytest

from spikevision.data.errors import CorruptFileError
from spikevision.data.idx import read_idx, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
def test_roundtrip_every_type(tmp_path, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == np.uint8:
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", a)
    b = read_idx(tmp_path / "a.gz")
    assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)


def test_header_bytes_are_the_published_layout(tmp_path):
    # Hand-built file: magic 0x00000803, dims 2 x 2 x 3 (big-endian), then the pixels.
    dims = (2).to_bytes(4, "big") + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    raw = bytes([0, 0, 8, 3]) + dims + bytes(range(12))
    (tmp_path / "x-idx3-ubyte").write_bytes(raw)
    a = read_idx(tmp_path / "x-idx3-ubyte")
    assert a.shape == (2, 2, 3) and a[1, 0, 2] == 8
    # big-endian int32 labels
    raw = bytes([0, 0, 0x0C, 1]) + (2).to_bytes(4, "big") + (258).to_bytes(4, "big") + (7).to_bytes(4, "big")
    (tmp_path / "l").write_bytes(raw)
    assert read_idx(tmp_path / "l").tolist() == [258, 7]


def test_truncated_gzip_names_the_file(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((50, 28, 28), np.uint8))
    data = (tmp_path / "train-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="train-images-idx3-ubyte.gz"):
        read_idx(tmp_path / "train-images-idx3-ubyte.gz")


def test_short_payload_and_bad_magic(tmp_path):
    with gzip.open(tmp_path / "short.gz", "wb") as f:  # valid gzip, payload cut
        f.write(bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big") * 3 + bytes(10))
    with pytest.raises(CorruptFileError, match="short.gz.*truncated"):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + bytes(8))
    with pytest.raises(CorruptFileError, match="magic"):
        read_idx(tmp_path / "bad")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        read_idx(tmp_path / "nope.gz")


def test_wrong_type_code_is_named_not_called_truncated(tmp_path):
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(10, dtype=np.uint8))
    raw = bytearray(gzip.decompress((tmp_path / "train-labels-idx1-ubyte.gz").read_bytes()))
    raw[2] = 0x0D  # says float32, holds uint8
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError) as e:
        read_idx(tmp_path / "train-labels-idx1-ubyte")
    msg = str(e.value)
    assert "train-labels-idx1-ubyte" in msg and "type code 0x0d (float32" in msg and "size of uint8" in msg
    assert "truncated" not in msg
    raw[2] = 0x08  # right code, one value missing: still "truncated"
    (tmp_path / "cut").write_bytes(bytes(raw[:-1]))
    with pytest.raises(CorruptFileError, match="truncated"):
        read_idx(tmp_path / "cut")
