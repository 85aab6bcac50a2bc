"""Matplotlib (Agg) figures for the analysis results; every function returns a ``Figure``.

Nothing is shown on screen; save with ``fig.savefig(path)``.
"""

from __future__ import annotations

import math
from typing import Mapping

__all__ = ["plot_depth_comparison", "plot_firing_rates"]

_STYLE = {"ms_resnet": "-", "spiking_resnet": "--"}
_LABEL = {"ms_resnet": "MS-ResNet", "spiking_resnet": "vanilla spiking ResNet"}


def _figure(**kwargs):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def plot_depth_comparison(data: Mapping[str, Mapping[int, Mapping[str, float]]], *, title: str | None = None):
    """Log10 gradient norm at each block input vs block index, one line per (family, depth).

    Args:
        data: the output of :func:`spikevision.analysis.isometry.depth_comparison`.
    """
    fig = _figure(figsize=(7, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    depths = sorted({d for per in data.values() for d in per})
    cmap = _colormap(len(depths))
    for family, per_depth in data.items():
        for depth, norms in sorted(per_depth.items()):
            vals = [math.log10(max(v, 1e-30)) for v in norms.values()]
            ax.plot(range(1, len(vals) + 1), vals, _STYLE.get(family, ":"), marker=".", color=cmap[depths.index(depth)],
                    label=f"{_LABEL.get(family, family)}-{depth}")
    ax.set_xlabel("residual block (input side = 1)")
    ax.set_ylabel("log10 ||dL/dx|| at block input")
    ax.set_title(title or "Gradient norm at block inputs after a few SGD steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_firing_rates(rates: Mapping[str, float], *, title: str = "Firing rate per spiking layer"):
    """Bar chart of spikes per neuron per step, one bar per spiking layer (forward order)."""
    fig = _figure(figsize=(max(5, 0.25 * len(rates) + 2), 3.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(rates)), list(rates.values()))
    ax.set_xticks(range(len(rates)))
    ax.set_xticklabels(list(rates), rotation=90, fontsize=6)
    ax.set_ylabel("spikes / neuron / step")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _colormap(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(i / max(1, n - 1) * 0.85) for i in range(n)]
