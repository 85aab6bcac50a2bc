"""Deprecated home of the study page: studies live in :mod:`spikevision.studies` (page, runner, spec).

Every name this module exported is still here, with a ``DeprecationWarning`` on first use.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["ArmResult", "collect_results", "measure_run", "render_study", "write_study_page"]


def __getattr__(name: str) -> Any:
    """The names that moved to :mod:`spikevision.studies`, with a ``DeprecationWarning``."""
    if name in __all__:
        import spikevision.studies as studies

        warnings.warn(f"spikevision.analysis.study_report.{name} moved to spikevision.studies.{name}",
                      DeprecationWarning, stacklevel=2)
        return getattr(studies, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
