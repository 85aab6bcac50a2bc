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
        path: the offending file.
    """

    def __init__(self, path: str | Path, problem: str, fix: str = "replace it with an intact copy") -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}; {fix}")


class UnknownDatasetError(ValueError):
    """A data set name that is not registered."""


def closest(name: str, valid: Iterable[str]) -> str:
    """A ``"; did you mean a, b?"`` hint for ``name`` among ``valid`` (empty if none is close)."""
    close = difflib.get_close_matches(str(name), list(valid), n=3, cutoff=0.4)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
