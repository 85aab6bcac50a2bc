"""The compiled-code cache: a private folder, nothing loaded that was not built here or does not match its hash,
and one clear error for a missing or failing compiler."""

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from spikevision import native_build as nb

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")

SOURCE = "int sv_answer(void) { return 42; }\n"
# a library whose constructor runs at dlopen, before any check of its symbols could reject it
PLANTED = '#include <stdio.h>\n__attribute__((constructor)) static void planted(void) {\n' \
          '  FILE *f = fopen("%s", "w"); if (f) { fputs("ran", f); fclose(f); }\n}\n' \
          'int sv_answer(void) { return 666; }\n'


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEVISION_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CC", raising=False)
    (tmp_path / "answer.c").write_text(SOURCE)
    return tmp_path


def _plant(tmp_path: Path, where: Path) -> Path:
    marker = tmp_path / "planted-ran"
    src = tmp_path / "planted.c"
    src.write_text(PLANTED % marker)
    built = nb.compiled_library(src, "planted")
    shutil.copyfile(built, tmp_path / "planted.so")
    os.replace(tmp_path / "planted.so", where)  # a new file (writing in place would change a loaded library)
    return marker


def test_cache_folder_is_private_and_libraries_carry_their_hash(cache):
    lib = nb.load_library(cache / "answer.c", "answer")
    assert lib.sv_answer() == 42
    folder = cache / "cache"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    path = nb.compiled_library(cache / "answer.c", "answer")
    assert path.parent == folder
    assert path.with_name(path.name + ".sha256").read_text().strip() == nb.file_digest(path)



@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777], ids=["world", "group", "sticky"])
def test_a_folder_others_can_write_is_not_used(cache, monkeypatch, mode):
    shared = cache / "shared"
    shared.mkdir()
    shared.chmod(mode)  # e.g. SPIKEVISION_CACHE_DIR=/tmp: another user could plant a library there
    monkeypatch.setenv("SPIKEVISION_CACHE_DIR", str(shared))
    monkeypatch.setattr(nb, "_private", None)
    path = nb.compiled_library(cache / "answer.c", "answer")
    assert path.parent != shared and list(shared.iterdir()) == []
    assert stat.S_IMODE(shared.stat().st_mode) == mode  # an existing folder is never changed


def test_a_replaced_library_is_rebuilt_not_loaded(cache):
    path = nb.compiled_library(cache / "answer.c", "answer")
    marker = _plant(cache, path)  # same name, old hash file: the bytes no longer match
    lib = nb.load_library(cache / "answer.c", "answer")
    assert lib.sv_answer() == 42 and not marker.exists()
    path.with_name(path.name + ".sha256").unlink()  # no hash: not verifiable, rebuilt too
    marker = _plant(cache, path)
    assert nb.load_library(cache / "answer.c", "answer").sv_answer() == 42 and not marker.exists()


def test_unusable_cache_folder_uses_a_fresh_private_folder_not_a_shared_one(cache, monkeypatch):
    (cache / "file").write_text("in the way")
    monkeypatch.setenv("SPIKEVISION_CACHE_DIR", str(cache / "file"))
    monkeypatch.setattr(nb, "_private", None)
    # the old fallback: a predictable folder in the shared temp folder, which another user can create first
    shared = Path(tempfile.gettempdir()) / f"spikevision-{os.getuid()}"
    path = nb.compiled_library(cache / "answer.c", "answer")
    assert shared not in path.parents and path.parent.name.startswith("spikevision-build-")
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    marker = _plant(cache, path)
    assert nb.load_library(cache / "answer.c", "answer").sv_answer() == 42 and not marker.exists()


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to make another owner's folder")
def test_a_folder_owned_by_someone_else_is_not_used(cache, monkeypatch):
    other = cache / "other"
    other.mkdir(mode=0o777)
    os.chown(other, 4242, 4242)
    monkeypatch.setenv("SPIKEVISION_CACHE_DIR", str(other))
    monkeypatch.setattr(nb, "_private", None)
    assert nb.compiled_library(cache / "answer.c", "answer").parent != other
    assert list(other.iterdir()) == []


@pytest.mark.parametrize("cc, message", [("/nonexistent/cc", "cannot be run"), ("false", "failed to compile")])
def test_missing_or_failing_compiler_is_one_clear_error(cache, monkeypatch, cc, message):
    monkeypatch.setenv("CC", cc)
    with pytest.raises(nb.CompilerError, match=message) as e:
        nb.compiled_library(cache / "answer.c", "answer")
    assert "CC" in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, OSError)
    assert [p.name for p in (cache / "cache").iterdir()] == []  # no half-built file left


@pytest.mark.parametrize("n, workers, align, expected", [
    (0, 4, 1, [(0, 0)]),  # one (empty) call
    (5, 1, 1, [(0, 5)]),
    (10, 3, 1, [(0, 4), (4, 8), (8, 10)]),  # a ragged last range
    (1000, 2, 256, [(0, 512), (512, 1000)]),  # multiples of the block
    (300, 8, 256, [(0, 256), (256, 300)]),  # never more ranges than blocks
])
def test_split_ranges(n, workers, align, expected):
    assert nb.split_ranges(n, workers, align) == expected


def test_run_parallel_runs_every_call_and_raises_their_errors():
    import threading

    seen = []
    nb.run_parallel([lambda i=i: seen.append((i, threading.current_thread().name)) for i in range(3)])
    assert sorted(i for i, _ in seen) == [0, 1, 2]
    assert dict(seen)[0] == threading.current_thread().name  # the first call runs on this thread

    def fail():
        raise ValueError("in a worker")

    with pytest.raises(ValueError, match="in a worker"):
        nb.run_parallel([lambda: None, fail])

