"""Keep freed memory in the process heap during training (glibc only).

By default glibc returns large freed blocks to the operating system, so every training step maps its
activations afresh: about 28,000 minor page faults per step of the headline recipe (~110 MB) and ~13% of
the step's CPU time on one thread (bench/neuron_fusion.md). :func:`keep_freed_memory` asks glibc, once per
process, to serve blocks below 32 MiB from the heap and to keep up to 1 GiB of freed memory there, so
later steps reuse the same pages; the peak memory is unchanged. The engine calls it when
``train.keep_freed_memory`` is true (the default). Elsewhere (macOS, musl, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

__all__ = ["keep_freed_memory"]

log = logging.getLogger(__name__)

# malloc.h parameter numbers and the values set
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 256 << 20))


def keep_freed_memory() -> bool:
    """Tell glibc's allocator to keep freed memory for reuse; returns whether it applied (False off glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = all(mallopt(option, value) == 1 for option, value in SETTINGS)
    if not ok:
        log.debug("mallopt refused a setting; freed memory goes back to the system as before")
    return ok
