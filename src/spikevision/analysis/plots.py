"""Matplotlib (Agg) figures for the analysis results; every function returns a ``Figure``.

Nothing is shown on screen; save with ``fig.savefig(path)``.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

__all__ = ["plot_depth_comparison", "plot_firing_rates", "plot_training_curves", "plot_ops_energy",
           "plot_receptive_fields"]

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


def _curve(ax, records, key: str, label: str, marker: str = ".") -> bool:
    pts = [(r["epoch"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    if pts:
        ax.plot(*zip(*pts), marker=marker, label=label)
    return bool(pts)


def plot_training_curves(records: Sequence[Mapping[str, float]], *, title: str = "Training curves"):
    """Loss, top-1 (%) and learning rate per epoch from ``metrics.jsonl`` records (train and test).

    Args:
        records: one dict per epoch with ``epoch`` and any of ``train_loss``, ``test_loss``,
            ``train_top1``, ``test_top1``, ``lr`` (the engine's keys); missing keys are skipped.
    """
    fig = _figure(figsize=(11, 3.4))
    from matplotlib.ticker import MaxNLocator

    panels = ((("train_loss", "train"), ("test_loss", "test")), (("train_top1", "train"), ("test_top1", "test")),
              (("lr", "lr at epoch end"),))
    for i, (keys, ylabel) in enumerate(zip(panels, ("loss", "top-1 (%)", "learning rate"))):
        ax = fig.add_subplot(1, 3, i + 1)
        drawn = [_curve(ax, records, key, label) for key, label in keys]
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if sum(drawn) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_ops_energy(layers: Sequence, *, e_mac_pj: float, e_ac_pj: float, convention: str,
                    title: str = "Operations and energy per layer, per sample"):
    """Stacked ACs/MACs per synaptic layer (top) and the energy they cost (bottom).

    Args:
        layers: :class:`~spikevision.analysis.synops.LayerOps` rows (per sample), forward order.
        e_mac_pj, e_ac_pj: energy per MAC and per AC (pJ).
        convention: the energy convention, printed under the figure.
    """
    names = [r.name for r in layers]
    acs = [r.acs for r in layers]
    macs = [r.macs for r in layers]
    x = range(len(layers))
    fig = _figure(figsize=(max(6, 0.3 * len(layers) + 2.5), 6.2))
    top = fig.add_subplot(2, 1, 1)
    top.bar(x, acs, label="ACs (binary input)")
    top.bar(x, macs, bottom=acs, label="MACs (real/integer input)")
    top.set_ylabel("operations / sample")
    top.set_xticks(list(x))
    top.set_xticklabels([])
    top.legend(fontsize=7)
    top.set_title(title)
    bottom = fig.add_subplot(2, 1, 2)
    e_ac = [a * e_ac_pj / 1e3 for a in acs]
    e_mac = [m * e_mac_pj / 1e3 for m in macs]
    bottom.bar(x, e_ac, label=f"ACs x {e_ac_pj:g} pJ")
    bottom.bar(x, e_mac, bottom=e_ac, label=f"MACs x {e_mac_pj:g} pJ")
    bottom.set_ylabel("energy / sample (nJ)")
    bottom.set_xticks(list(x))
    bottom.set_xticklabels(names, rotation=90, fontsize=6)
    bottom.legend(fontsize=7)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.text(0.01, 0.01, convention, fontsize=6, ha="left", va="bottom", wrap=True)
    return fig


def plot_receptive_fields(mixes: Sequence, tokens_per_layer: Sequence[Sequence[tuple[int, int]]] | None = None, *,
                          title: str = "Learned token-mixing weights"):
    """One row per token-mixing layer: ``W_h``, ``W_w`` and the receptive fields of a few output tokens.

    Args:
        mixes: :class:`~spikevision.analysis.receptive_fields.TokenMixingWeights`, one per layer.
        tokens_per_layer: output tokens ``(row, col)`` to draw per layer (default: corners and centre).

    Each field is ``field_h + field_w`` of
    :func:`~spikevision.analysis.receptive_fields.receptive_field` on the token
    grid, the output token marked with a cross; colours are symmetric around 0
    per panel (red positive, blue negative).
    """
    from spikevision.analysis.receptive_fields import default_tokens, receptive_field

    if tokens_per_layer is None:
        tokens_per_layer = [default_tokens(*m.grid) for m in mixes]
    cols = 2 + max((len(t) for t in tokens_per_layer), default=0)
    fig = _figure(figsize=(2.1 * cols, 2.5 * max(1, len(mixes)) + 0.4))
    for r, (mix, tokens) in enumerate(zip(mixes, tokens_per_layer)):
        panels = [(mix.weight_h, f"W_h {mix.weight_h.shape[0]}x{mix.weight_h.shape[1]}\n(out row, in row)", None),
                  (mix.weight_w, f"W_w {mix.weight_w.shape[0]}x{mix.weight_w.shape[1]}\n(out col, in col)", None)]
        for i, k in tokens:
            fh, fw = receptive_field(mix, i, k)
            panels.append((fh + fw, f"token ({i}, {k})", (i, k)))
        for c, (arr, label, mark) in enumerate(panels):
            ax = fig.add_subplot(len(mixes), cols, r * cols + c + 1)
            lim = float(abs(arr).max()) or 1.0
            ax.imshow(arr, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            if mark is not None:
                ax.plot(mark[1], mark[0], "kx", markersize=5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(label, fontsize=7)
            if c == 0:
                ax.set_ylabel(mix.name, fontsize=6)
    fig.suptitle(title + (" (BN scale folded)" if mixes and mixes[0].bn_folded else ""), fontsize=9)
    fig.tight_layout()
    return fig


def _colormap(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(i / max(1, n - 1) * 0.85) for i in range(n)]
