"""Deprecated home of the study runner: studies live in :mod:`spikevision.studies`.

Every name this module exported is still here, with a ``DeprecationWarning`` on first use. ``run_study``
takes no ``measure=`` callback any more: a study measures what its ``measure`` section asks
(:func:`spikevision.studies.measure_run`).
"""

from __future__ import annotations

import warnings
from typing import Any

_MOVED = ("StudySpec", "StudyRun", "load_study", "plan_runs", "run_status", "MEASURES_FILE", "STUDY_KEYS",
          "PINNED_KEYS")
__all__ = [*_MOVED, "run_study"]


def _warn(name: str) -> None:
    warnings.warn(f"spikevision.train.study.{name} moved to spikevision.studies.{name}", DeprecationWarning,
                  stacklevel=3)


def run_study(spec: Any, *, measure: Any = None, **kwargs: Any) -> list[Any]:
    """:func:`spikevision.studies.run_study` (deprecated path); ``measure=`` is ignored with a warning."""
    from spikevision.studies import runner

    _warn("run_study")
    if measure is not None:
        warnings.warn("run_study(measure=...) is ignored: a study measures what its `measure` section asks "
                      "(spikevision.studies.measure_run)", DeprecationWarning, stacklevel=2)
    return runner.run_study(spec, **kwargs)


def __getattr__(name: str) -> Any:
    """The names that moved to :mod:`spikevision.studies`, with a ``DeprecationWarning``."""
    if name in _MOVED:
        import spikevision.studies as studies

        _warn(name)
        return getattr(studies, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
