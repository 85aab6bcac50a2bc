"""Building C with the system compiler and caching the libraries, for the neuron kernel and the deploy runtime.

One place decides where compiled code lives and what may be loaded from there:

- :func:`cache_dir`: a private folder, ``$SPIKEVISION_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/spikevision``, else ``~/.cache/spikevision``; created with
  mode 0700 and checked before every use (a real folder, owned by this user,
  no one else may write in it; an existing folder is never changed). When it
  is unusable (another owner, writable by others, a file in the way,
  read-only), this process builds into a fresh private folder of its own
  (``tempfile.mkdtemp``, removed at exit), never into a shared temp folder
  another user could have prepared.
- :func:`compiled_library`: the shared library built from a C source, named by a
  hash of the source, compiler, flags and CPU, so a changed source rebuilds.
  After a build the library's SHA-256 is written next to it (``<lib>.sha256``,
  atomically, after the library is in place); a cached library is used only if
  its bytes still match that hash, else it is rebuilt.
- :func:`load_library`: build if needed, verify, then ``dlopen``; nothing is
  loaded that this process did not build or could not verify.
- :class:`CompilerError`: no compiler, or none of the flag variants compiled;
  the message names ``$CC`` and the fix.
- :func:`split_ranges` and :func:`run_parallel`: how a call into a loaded
  library is split over threads (contiguous ranges, the first one on the
  caller's thread, the rest on one thread pool per process). ``ctypes``
  releases the GIL during a call, so the ranges run in parallel.

Environment (read when called): ``CC`` (the C compiler, default ``cc``),
``SPIKEVISION_CACHE_DIR``, ``XDG_CACHE_HOME``.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import logging
import os
import platform
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

from spikevision.atomic import write_atomic

__all__ = ["CompilerError", "LazyLibrary", "cache_dir", "compiled_library", "load_library", "file_digest",
           "split_ranges", "run_parallel", "DEFAULT_FLAGS", "DEFAULT_VARIANTS"]

log = logging.getLogger(__name__)

DEFAULT_FLAGS = ("-O2", "-shared", "-fPIC")
DEFAULT_VARIANTS: tuple[tuple[str, ...], ...] = (("-march=native",), ())
COMPILE_TIMEOUT_S = 300  # one variant; a hung compiler is reported, not waited on forever
_DIGEST_SUFFIX = ".sha256"
_lock = threading.Lock()
_private: Path | None = None  # this process's own folder, when the cache folder is unusable
_pool_lock = threading.Lock()
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool): a forked child makes its own


class CompilerError(OSError):
    """The C compiler is missing or failed; the message says which (``$CC``) and what to do."""


def _configured_dir() -> Path:
    if os.environ.get("SPIKEVISION_CACHE_DIR"):
        return Path(os.environ["SPIKEVISION_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spikevision"


def _private_ok(path: Path) -> bool:
    """Create ``path`` (mode 0700) if needed; True if it is a real folder of this user that no one else can write.

    An existing folder is never changed (it may be one the user shares on purpose): one that
    others may write in (group or world write bits, a sticky shared folder like ``/tmp``) or
    that belongs to another user is not used.
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        return False
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH | stat.S_ISVTX):
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _process_dir() -> Path:
    global _private
    if _private is None or not _private.is_dir():
        _private = Path(tempfile.mkdtemp(prefix="spikevision-build-"))  # 0700, a new name no one can pre-create
        atexit.register(shutil.rmtree, _private, True)
    return _private


def cache_dir(*parts: str) -> Path:
    """The private cache folder (or a subfolder of it), created 0700 and checked; see the module docstring.

    Falls back to this process's own temporary folder when the configured one is unusable.
    """
    with _lock:
        base = _configured_dir()
        if not _private_ok(base):
            base = _process_dir()
        folder = base.joinpath(*parts)
        if parts and not _private_ok(folder):
            folder = _process_dir().joinpath(*parts)
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, in hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: a library built on another machine (a shared home) is not reused."""
    sig = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            sig += "".join(line for line in f if line.startswith(("flags", "model name")))
    except OSError:
        sig += platform.processor()
    return sig


def _compiler() -> list[str]:
    text = os.environ.get("CC") or "cc"
    try:
        cc = shlex.split(text)
    except ValueError as e:
        raise CompilerError(f"CC={text!r} cannot be read as a command ({e}); set CC to a C compiler such as gcc")
    if not cc:
        raise CompilerError("CC is blank; set CC to a C compiler such as gcc, or unset it to use cc")
    return cc


def _verified(lib: Path) -> bool:
    digest = lib.with_name(lib.name + _DIGEST_SUFFIX)
    try:
        return digest.read_text().strip() == file_digest(lib)
    except OSError:
        return False


def _build(cc: list[str], out: Path, source: Path, flags: tuple[str, ...] | list[str],
           variants: tuple[tuple[str, ...] | list[str], ...]) -> None:
    """Compile into a temporary file and rename it into place, then write its hash beside it."""
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        errors = []
        for extra in variants:
            cmd = [*cc, *flags, "-o", tmp, str(source), *extra]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
            except (FileNotFoundError, PermissionError, NotADirectoryError) as e:
                where = "from $CC" if os.environ.get("CC") else "the default, as $CC is unset"
                raise CompilerError(f"the C compiler {cc[0]!r} ({where}) cannot be run ({e.strerror or e}); "
                                    "install gcc or clang, or set CC to a working C compiler") from None
            except subprocess.TimeoutExpired:
                raise CompilerError(f"the C compiler {cc[0]!r} did not finish within {COMPILE_TIMEOUT_S} s; "
                                    "set CC to a working C compiler") from None
            if p.returncode == 0:
                digest = file_digest(Path(tmp))
                os.replace(tmp, out)
                write_atomic(out.with_name(out.name + _DIGEST_SUFFIX), digest + "\n", mode=0o600)
                return
            errors.append(" ".join(p.stderr.split())[-300:] or f"exit status {p.returncode}, no message")
        raise CompilerError(f"the C compiler {' '.join(cc)!r} (CC) failed to compile {source.name}: {errors[-1]}; "
                            "set CC to a working C compiler (gcc or clang)")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def compiled_library(source: Path, stem: str, flags: tuple[str, ...] | list[str] = DEFAULT_FLAGS,
                     variants: tuple[tuple[str, ...] | list[str], ...] = DEFAULT_VARIANTS) -> Path:
    """The shared library built from ``source``, verified against its recorded hash.

    Args:
        source: the C file.
        stem: the library's name before the hash (``lif_cpu`` gives ``lif_cpu-<hash>.so``).
        flags: compiler flags, always given.
        variants: extra flags tried in order until one compiles (``-march=native`` first, then plainer).

    Raises:
        CompilerError: no compiler, or every variant failed (the compiler's last message).
        OSError: the source cannot be read, or neither the cache nor a private temporary folder is writable.
    """
    cc = _compiler()
    key = hashlib.sha256("\0".join([Path(source).read_text(), repr((cc, list(flags), [list(v) for v in variants])),
                                    _cpu_signature()]).encode()).hexdigest()[:16]
    path = cache_dir() / f"{stem}-{key}.so"
    if not _verified(path):
        _build(cc, path, Path(source), flags, variants)
    return path


def load_library(source: Path, stem: str, flags: tuple[str, ...] | list[str] = DEFAULT_FLAGS,
                 variants: tuple[tuple[str, ...] | list[str], ...] = DEFAULT_VARIANTS) -> ctypes.CDLL:
    """:func:`compiled_library`, checked once more against its hash right before ``dlopen``.

    Raises:
        CompilerError, OSError: as :func:`compiled_library`; OSError also when the library changed
        on disk between the build and the load (it is not loaded).
    """
    path = compiled_library(source, stem, flags, variants)
    if not _verified(path):  # another of our processes rebuilt it meanwhile: build once more
        path.unlink(missing_ok=True)
        path = compiled_library(source, stem, flags, variants)
    if not _verified(path):
        raise OSError(f"{path} changed on disk after it was built; it was not loaded (run again to rebuild)")
    return ctypes.CDLL(str(path))


class LazyLibrary:
    """A C library built and loaded on first use, once per process (thread-safe), or the reason it is not.

    Args:
        source, stem, flags, variants: as :func:`load_library`.
        abi: ``(symbol, version)``: the library's ``int symbol(void)`` must return ``version``.
        configure: sets the loaded library's ``argtypes``/``restype``.
        loaded, fallback: the status texts, ``loaded.format(path=...)`` and ``fallback.format(error=...)``
            (the latter also logged as a warning).
    """

    def __init__(self, source: Path, stem: str, flags: Sequence[str], variants: Sequence[Sequence[str]],
                 abi: tuple[str, int], configure: Callable[[ctypes.CDLL], None], loaded: str,
                 fallback: str) -> None:
        self.source, self.stem, self.flags, self.variants = source, stem, list(flags), tuple(variants)
        self.abi, self.configure, self.loaded, self.fallback = abi, configure, loaded, fallback
        self._lock = threading.Lock()
        self._lib: ctypes.CDLL | None = None
        self._status: str | None = None  # None: not tried yet

    def load(self) -> ctypes.CDLL | None:
        """The library (built or found in the cache on the first call), or None if that failed."""
        with self._lock:
            if self._status is not None:
                return self._lib
            symbol, version = self.abi
            try:
                lib = load_library(self.source, self.stem, self.flags, self.variants)
                if getattr(lib, symbol)() != version:
                    raise RuntimeError(f"{lib._name} has ABI {getattr(lib, symbol)()}, expected {version}")
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                self._status = self.fallback.format(error=e)
                log.warning("spikevision: %s", self._status)
                return None
            self.configure(lib)
            self._lib, self._status = lib, self.loaded.format(path=lib._name)
            return lib

    def status(self) -> str:
        """Which path runs and why (loads the library if not yet tried)."""
        self.load()
        return self._status or ""


def split_ranges(n: int, workers: int, align: int = 1) -> list[tuple[int, int]]:
    """``[0, n)`` as at most ``workers`` contiguous ``(lo, hi)`` ranges whose sizes are multiples of ``align``.

    The last range may be shorter (ragged). ``n == 0`` gives the single empty range ``(0, 0)``, so a
    caller always makes one call.
    """
    blocks = -(-n // align)
    workers = max(1, min(workers, blocks))
    if workers == 1:
        return [(0, n)]
    per = -(-blocks // workers) * align
    return [(lo, min(n, lo + per)) for lo in range(0, n, per)]


def run_parallel(calls: Sequence[Callable[[], object]]) -> None:
    """Run ``calls[0]`` on this thread and the others on the process's thread pool; wait for all.

    Meant for calls into a library loaded with :func:`load_library`: ``ctypes`` releases the GIL,
    so they run in parallel. The pool grows to the largest number of extra calls seen; a forked
    child (whose copy of the pool has no threads) makes its own. An exception of any call is raised
    after all have finished.
    """
    global _pool
    if len(calls) == 1:
        calls[0]()
        return
    extra = len(calls) - 1
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] < extra:
            if _pool is not None and _pool[0] == os.getpid():
                _pool[2].shutdown(wait=False)  # too small: replaced
            _pool = (os.getpid(), extra, ThreadPoolExecutor(extra, "spikevision-native"))
        futures = [_pool[2].submit(call) for call in calls[1:]]
    try:
        calls[0]()
    finally:
        for f in futures:
            f.result()
