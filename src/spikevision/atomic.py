"""Writing a file so that it is either complete or absent: a temporary file beside it, then a rename.

Every output that a failure must not leave half-written (exports, kept results,
generated sources) goes through :func:`atomic_output` or :func:`write_atomic`::

    with atomic_output("model.safetensors") as tmp:   # a temporary path in the same folder
        safetensors.torch.save_file(state, str(tmp))  # any writer that takes a path
    write_atomic("model.c", source_text)

On success the temporary file is flushed to disk and renamed over the target in
one step (``os.replace``); on any failure (a full disk, no permission, an
exception in the writer, Ctrl-C) it is removed and the target keeps what it held
before. A failed write raises :class:`OutputWriteError`, an ``OSError`` whose one-line
message names the file and the cause, also when the writer reported the full disk
in its own exception type (safetensors' ``SafetensorError``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["OutputWriteError", "atomic_output", "write_atomic"]

_NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded", "File too large")


class OutputWriteError(OSError):
    """An output could not be written; nothing was left at its path (a previous file there is untouched)."""


def _write_error(path: Path, e: BaseException) -> OutputWriteError:
    code = getattr(e, "errno", None)
    text = str(e)
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or any(t in text for t in _NO_SPACE_TEXT):
        err = OutputWriteError(f"cannot write {path}: no space left on device; free some space and run again "
                               "(nothing was written)")
        err.errno = errno.ENOSPC
        return err
    reason = getattr(e, "strerror", None) or " ".join(text.split()) or type(e).__name__
    err = OutputWriteError(f"cannot write {path} ({reason}); nothing was written")
    err.errno = code
    return err


@contextlib.contextmanager
def atomic_output(path: str | Path, mode: int = 0o644) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed onto ``path`` when the block ends without error.

    Args:
        path: the final file; its folder must exist.
        mode: permission bits of the final file, as given (the umask is not applied).

    Raises:
        OutputWriteError: the temporary file could not be created, written (an ``OSError`` or any
            exception saying the disk is full) or renamed; nothing is left behind.
    """
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as e:
        raise _write_error(path, e) from None
    tmp = Path(name)
    try:
        try:
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except OSError as e:
            raise _write_error(path, e) from None
        except Exception as e:
            if any(t in str(e) for t in _NO_SPACE_TEXT):
                raise _write_error(path, e) from None
            raise
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: str | bytes, mode: int = 0o644) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` through :func:`atomic_output`; returns ``path``.

    Raises:
        OutputWriteError: as :func:`atomic_output`.
    """
    with atomic_output(path, mode) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)
