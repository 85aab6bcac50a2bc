"""Event-camera files and event-to-frame integration.

AEDAT 2.0 (jAER), the format of the CIFAR10-DVS recordings (Li et al., Front.
Neurosci. 2017, figshare), read with numpy. Specification: iniVation, "AEDAT
File Formats" (docs.inivation.com, software-advanced-usage/file-formats):

* a text header of lines starting with ``#`` and ending in CRLF; the first is
  the version line ``#!AER-DAT2.0``;
* then events of 8 bytes each: a big-endian 32-bit address followed by a
  big-endian 32-bit timestamp in microseconds (read as unsigned, like
  SpikingJelly; recordings last about a second, far from any wrap);
* DVS128 address bits: ``p = addr & 1`` (1 = ON), ``x = (addr >> 1) & 0x7F``,
  ``y = (addr >> 8) & 0x7F`` with (0, 0) at the lower left; bit 15 (external
  events) is not filtered, as in SpikingJelly.

Another version line (3.x, 4.x) is an error. A file with no version line is
read as 2.0, as SpikingJelly does (the specification would call it 1.0, with
6-byte events; CIFAR10-DVS files all carry the 2.0 line).

No maintained Python decoder covers this old layout cheaply: ``aedat`` and
``expelliarmus`` read AEDAT 4 and Prophesee formats, and tonic's CIFAR10-DVS
reads its own AEDAT 4 re-upload. The layout is 8 bytes per event, so it is
decoded here in a few vectorised lines.

SpikingJelly's converted files (``events_np/<class>/*.npz`` with arrays ``t, x,
y, p``) are read too; they already hold the SpikingJelly orientation.

Frame integration follows SpikingJelly's ``integrate_events_by_fixed_frames_number``
(Fang et al., ICCV 2021, arXiv:2007.05785), which the S-ResNet code uses:

* ``split_by="number"``: with ``N`` events and ``F`` frames, frame ``j`` holds
  events ``[j*floor(N/F), (j+1)*floor(N/F))``; the last frame also takes the
  remainder.
* ``split_by="time"``: with ``dt = floor((t[N-1] - t[0]) / F)``, frame ``j``
  holds events with ``t[0] + j*dt <= t < t[0] + (j+1)*dt``; the last frame
  takes every later event. (SpikingJelly indexes the first to last event in
  each window and fails on an empty window; here windows are exact and an
  empty one gives an empty frame. ``dt = 0`` puts all events in the last
  frame.)

Each frame counts events per ``(polarity, y, x)``: ``[F, 2, H, W]``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from spikevision.data.errors import CorruptFileError

__all__ = [
    "Events", "read_aedat2", "write_aedat2", "decode_dvs128_address", "encode_dvs128_address",
    "read_events_npz", "spikingjelly_orientation", "events_to_frames", "load_dvs128_events",
]

Orientation = Literal["spikingjelly", "raw"]
SplitBy = Literal["number", "time"]


class Events(NamedTuple):
    """Decoded events; all arrays ``[N]`` int64. ``p``: 1 = ON, 0 = OFF (in the raw orientation)."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray


def _header_end(data: bytes, path: Path) -> int:
    """Byte offset after the ``#`` header lines; checks the AEDAT version if stated."""
    pos = 0
    while pos < len(data) and data[pos : pos + 1] == b"#":
        nl = data.find(b"\n", pos)
        if nl < 0:
            raise CorruptFileError(path, "header line without end (file truncated inside the header)")
        line = data[pos:nl].strip()
        if pos == 0 and line.startswith(b"#!AER-DAT"):
            version = line[len(b"#!AER-DAT") :].decode("ascii", "replace")
            if not version.startswith("2."):
                raise CorruptFileError(path, f"AEDAT version {version} found, this reader handles 2.0 "
                                             "(the format of the CIFAR10-DVS recordings)")
        pos = nl + 1
    return pos


def read_aedat2(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an AEDAT 2.0 file into raw ``(timestamps, addresses)``, both int64 ``[N]``.

    Raises:
        FileNotFoundError: no such file.
        CorruptFileError: event bytes not a multiple of 8 (truncated), a
            different AEDAT version, or no events at all; names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"event file not found: {path}")
    data = path.read_bytes()
    start = _header_end(data, path)
    body = len(data) - start
    if body % 8:
        raise CorruptFileError(path, f"{body} bytes of events is not a multiple of 8 (address + timestamp): "
                                     "the file is truncated")
    if body == 0:
        raise CorruptFileError(path, "no events after the header (empty or truncated recording)")
    raw = np.frombuffer(data, dtype=">u4", offset=start).reshape(-1, 2)
    return raw[:, 1].astype(np.int64), raw[:, 0].astype(np.int64)


def decode_dvs128_address(addr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DVS128 address to ``(x, y, p)`` in the sensor's raw (jAER) orientation."""
    addr = np.asarray(addr, dtype=np.int64)
    return (addr >> 1) & 0x7F, (addr >> 8) & 0x7F, addr & 1


def encode_dvs128_address(x: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Inverse of :func:`decode_dvs128_address` (used to write test files)."""
    return (np.asarray(y, np.int64) << 8) | (np.asarray(x, np.int64) << 1) | np.asarray(p, np.int64)


def write_aedat2(path: str | Path, t: np.ndarray, addr: np.ndarray,
                 header: str = "# written by spikevision\r\n") -> None:
    """Write an AEDAT 2.0 file (``#!AER-DAT2.0`` header, big-endian address/timestamp pairs)."""
    body = np.empty((len(t), 2), dtype=">u4")
    body[:, 0] = addr
    body[:, 1] = t
    Path(path).write_bytes(b"#!AER-DAT2.0\r\n" + header.encode("ascii") + body.tobytes())


def spikingjelly_orientation(x: np.ndarray, y: np.ndarray, p: np.ndarray, size: int = 128):
    """SpikingJelly's CIFAR10-DVS mapping ``x' = S-1-y, y' = S-1-x, p' = 1-p`` (its own inverse)."""
    return size - 1 - y, size - 1 - x, 1 - p


def read_events_npz(path: str | Path) -> Events:
    """Read SpikingJelly's ``events_np`` file (arrays ``t, x, y, p``; SpikingJelly orientation)."""
    path = Path(path)
    try:
        with np.load(path) as z:
            ev = Events(*(np.asarray(z[k]).astype(np.int64).ravel() for k in ("t", "x", "y", "p")))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise CorruptFileError(path, f"cannot read events npz with arrays t, x, y, p ({type(e).__name__}: {e})") from e
    if not len({len(a) for a in ev}) == 1:
        raise CorruptFileError(path, f"arrays t, x, y, p differ in length {[len(a) for a in ev]}")
    if len(ev.t) == 0:
        raise CorruptFileError(path, "no events")
    return ev


def load_dvs128_events(path: str | Path, orientation: Orientation = "spikingjelly") -> Events:
    """Events of one DVS128 recording (``.aedat`` or SpikingJelly ``.npz``) in the chosen orientation.

    Args:
        path: the file.
        orientation: ``"spikingjelly"`` (default, released-compatible: the
            mapping of :func:`spikingjelly_orientation`, used by the S-ResNet
            and PLIF results) or ``"raw"`` (jAER sensor coordinates and
            polarity, 1 = ON).
    """
    if orientation not in ("spikingjelly", "raw"):
        raise ValueError(f"orientation must be 'spikingjelly' or 'raw', got {orientation!r}")
    path = Path(path)
    if path.suffix == ".npz":
        ev = read_events_npz(path)  # stored in SpikingJelly orientation
        if orientation == "raw":
            ev = Events(ev.t, *spikingjelly_orientation(ev.x, ev.y, ev.p))
        return ev
    t, addr = read_aedat2(path)
    x, y, p = decode_dvs128_address(addr)
    if orientation == "spikingjelly":
        x, y, p = spikingjelly_orientation(x, y, p)
    return Events(t, x, y, p)


def events_to_frames(events: Events, frames: int, split_by: SplitBy = "number",
                     height: int = 128, width: int = 128) -> np.ndarray:
    """Integrate events into ``frames`` count images (see the module docstring for the rules).

    Args:
        events: ``Events`` with ``N >= 1``.
        frames: number of frames ``F`` (the time steps ``T``).
        split_by: ``"number"`` (equal event counts, SpikingJelly default) or ``"time"``.
        height, width: frame size; every event must lie inside it.

    Returns:
        int64 counts ``[F, 2, H, W]`` (channel = polarity).

    Raises:
        ValueError: bad ``frames``/``split_by``, or events outside the frame or
            polarity not 0/1.
    """
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be a positive int, got {frames!r}")
    if split_by not in ("number", "time"):
        raise ValueError(f"split_by must be 'number' or 'time', got {split_by!r}")
    t, x, y, p = (np.asarray(a, dtype=np.int64) for a in events)
    n = len(t)
    if n == 0:
        return np.zeros((frames, 2, height, width), dtype=np.int64)
    if x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height:
        raise ValueError(f"events outside the {height}x{width} frame: x in [{x.min()}, {x.max()}], "
                         f"y in [{y.min()}, {y.max()}]")
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"polarity must be 0 or 1, found values in [{p.min()}, {p.max()}]")
    if split_by == "number":
        step = n // frames
        f = np.minimum(np.arange(n) // step, frames - 1) if step else np.full(n, frames - 1)
    else:
        dt = (t[-1] - t[0]) // frames
        f = np.clip((t - t[0]) // dt, 0, frames - 1) if dt > 0 else np.full(n, frames - 1)
    flat = ((f * 2 + p) * height + y) * width + x
    return np.bincount(flat, minlength=frames * 2 * height * width).reshape(frames, 2, height, width)
