"""Outputs are complete or absent: a failed write (full disk, an error in the writer) leaves nothing behind."""

import errno

import pytest

from spikevision.atomic import OutputWriteError, atomic_output, write_atomic


def test_write_replaces_in_one_step(tmp_path):
    target = tmp_path / "out.txt"
    write_atomic(target, "one")
    write_atomic(target, b"two")
    assert target.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    assert target.stat().st_mode & 0o777 == 0o644


class SafetensorLikeError(Exception):
    """What safetensors raises on a full disk: not an OSError."""


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   SafetensorLikeError("Error while serializing: IoError(Os { code: 28, kind: "
                                                       "StorageFull, message: \"No space left on device\" })")])
def test_full_disk_leaves_the_old_file_and_no_temporary(tmp_path, error):
    target = tmp_path / "model.safetensors"
    target.write_text("old")
    with pytest.raises(OutputWriteError, match="no space left on device") as e:
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise error
    assert e.value.errno == errno.ENOSPC and "\n" not in str(e.value)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_other_errors_propagate_and_clean_up(tmp_path):
    with pytest.raises(KeyError):
        with atomic_output(tmp_path / "x") as tmp:
            tmp.write_text("half")
            raise KeyError("bug")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputWriteError, match="cannot write"):
        write_atomic(tmp_path / "missing" / "x", "data")
