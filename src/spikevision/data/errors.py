"""Errors raised by :mod:`spikevision.data`; each names the file and the fix."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Iterable

__all__ = ["DatasetNotFoundError", "CorruptFileError", "UnknownDatasetError", "closest"]


class DatasetNotFoundError(FileNotFoundError):
    """The files of a data set are not where they were looked for.

    The message lists every place searched and how to get the files; nothing is
    ever downloaded.
    """


class CorruptFileError(ValueError):
    """A data file exists but cannot be decoded (truncated, wrong magic, bad pickle).

    Attributes:
        path: the offending file (None when re-raised from a DataLoader
            worker, whose message still names it).
    """

    def __init__(self, path: str | Path, problem: str | None = None, fix: str = "replace it with an intact copy") -> None:
        if problem is None:  # one argument: a whole message, as a DataLoader worker's error is re-raised
            self.path, self.problem, self.fix = None, None, fix
            super().__init__(str(path))
            return
        self.path, self.problem, self.fix = Path(path), problem, fix
        super().__init__(f"{self.path}: {problem}; {fix}")

    def __reduce__(self):  # rebuilt from its three parts when a DataLoader worker sends it back
        return type(self), (self.path, self.problem, self.fix)


class UnknownDatasetError(ValueError):
    """A data set name that is not registered."""


def closest(name: str, valid: Iterable[str]) -> str:
    """A ``"; did you mean a, b?"`` hint for ``name`` among ``valid`` (empty if none is close)."""
    close = difflib.get_close_matches(str(name), list(valid), n=3, cutoff=0.4)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
