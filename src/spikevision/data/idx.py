"""Reader for the IDX format of MNIST and Fashion-MNIST (plain or gzip-compressed).

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic
number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian ``uint32`` sizes,
then the values in C order, big-endian. Type codes: ``0x08`` uint8, ``0x09``
int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64.
Image files are ``[N, rows, cols]`` uint8 (``idx3``), label files ``[N]``
uint8 (``idx1``).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from spikevision.data.errors import CorruptFileError

__all__ = ["read_idx", "write_idx", "IDX_DTYPES"]

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise CorruptFileError(path, f"cannot decompress ({e})") from e


def read_idx(path: str | Path) -> np.ndarray:
    """Decode one IDX file (``.gz`` or raw) into a native-endian numpy array.

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
        array of the stored shape, e.g. ``[60000, 28, 28]`` uint8.

    Raises:
        FileNotFoundError: no such file.
        CorruptFileError: bad gzip stream, bad magic number, a type code that
            does not fit the data (the payload has exactly the size of another
            type's values), or a size that disagrees with the header (a
            truncated or padded file); the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    data = _read_bytes(path)
    if len(data) < 4:
        raise CorruptFileError(path, f"only {len(data)} bytes, too short for an IDX header")
    zero, code, ndim = int.from_bytes(data[0:2], "big"), data[2], data[3]
    if zero != 0 or code not in IDX_DTYPES or ndim == 0:
        raise CorruptFileError(
            path, f"bad IDX magic number {data[:4].hex()} (expected 0000 then a type code in "
            f"{sorted(hex(c) for c in IDX_DTYPES)} and ndim >= 1)", "is this an MNIST-style IDX file?")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptFileError(path, f"header declares {ndim} dimensions but the file ends after {len(data)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        count, payload = int(np.prod(shape, dtype=np.int64)), len(data) - header
        fits = [c for c, d in IDX_DTYPES.items() if d.itemsize != dtype.itemsize and count * d.itemsize == payload]
        if count and fits:  # the values are all there, at another width: the type byte is wrong, not the length
            raise CorruptFileError(
                path, f"type code {code:#04x} ({dtype.name}, {dtype.itemsize} bytes a value) does not fit the "
                f"data: shape {list(shape)} has {payload} bytes of values, the size of "
                f"{IDX_DTYPES[fits[0]].name} (code {fits[0]:#04x})",
                "the file's third byte (the type code) is wrong; MNIST-style images and labels are 0x08 (uint8)")
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise CorruptFileError(path, f"{what}: header says shape {list(shape)} ({expected} bytes) "
                                     f"but the decompressed file has {len(data)} bytes")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=dtype.itemsize > 1)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``).

    Used by the tests to build tiny data sets in the real format; also handy to
    export a subset.
    """
    codes = {v.newbyteorder("="): k for k, v in IDX_DTYPES.items()}
    arr = np.asarray(array)
    key = arr.dtype.newbyteorder("=")
    if key not in codes:
        raise TypeError(f"IDX cannot store dtype {arr.dtype}; use one of uint8, int8, int16, int32, float32, float64")
    code = codes[key]
    payload = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload += arr.astype(IDX_DTYPES[code], copy=False).tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
