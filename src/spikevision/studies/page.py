"""A study's page: mean +- std over seeds per arm, curves, firing rate, energy and wall time.

Reads only the small files the study runner keeps per run
(``<results_dir>/<study>/<arm>-s<seed>/metrics.jsonl`` and ``measures.json``,
see :mod:`spikevision.studies.runner`), so ``spikevision study STUDY --report-only``
rewrites ``<results_dir>/<study>.md`` and its figure without a checkpoint or
any training.

Conventions: "final" is the test top-1 of the last epoch (the number a run
reports), "best" the highest over epochs (optimistic: chosen on the test set);
the std is the sample standard deviation over seeds (n - 1), blank for one
seed. Energy is per test image under the 45 nm convention of
:mod:`spikevision.analysis.energy`; wall time is the run's training time
including its per-epoch evaluations.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from spikevision.analysis.energy import E_AC_45NM_PJ, E_MAC_45NM_PJ
from spikevision.analysis.report import read_metrics
from spikevision.studies.spec import MEASURES_FILE, StudySpec

__all__ = ["ArmResult", "collect_results", "render_study", "write_study_page"]


# ---------------------------------------------------------------------------
# collecting and summarising
# ---------------------------------------------------------------------------

def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def _dedupe(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per epoch, the last written (a run killed between logging and saving repeats an epoch)."""
    by_epoch = {int(r["epoch"]): r for r in records}
    return [by_epoch[e] for e in sorted(by_epoch)]


def _log_spread(norms: Sequence[float]) -> float:
    """max/min of the block-input gradient norms (1 = equal at every block)."""
    good = [n for n in norms if n > 0 and math.isfinite(n)]
    return max(good) / min(good) if good else math.nan


@dataclass
class ArmResult:
    """One arm over its finished seeds."""

    arm: str
    seeds: list[int] = field(default_factory=list)
    final: list[float] = field(default_factory=list)  # final-epoch test top-1 per seed
    best: list[float] = field(default_factory=list)
    curves: list[list[tuple[int, float]]] = field(default_factory=list)  # (epoch, test top-1) per seed
    time_s: list[float] = field(default_factory=list)
    measures: list[dict[str, Any]] = field(default_factory=list)

    def stat(self, key: str) -> tuple[float, float]:
        """Mean and std over seeds of a measure (NaN where missing)."""
        return _mean_std([m[key] for m in self.measures if isinstance(m.get(key), (int, float))])

    def spread(self, key: str) -> tuple[float, float]:
        """Mean and std over seeds of the gradient-norm spread of ``grad_norms_<key>``."""
        return _mean_std([_log_spread(m[f"grad_norms_{key}"]) for m in self.measures if m.get(f"grad_norms_{key}")])


def collect_results(spec: StudySpec, results_dir: str | Path = "docs/studies") -> list[ArmResult]:
    """Every arm of ``spec`` with the seeds whose results exist (``measures.json`` present), in study order."""
    out = []
    for arm in spec.arms:
        res = ArmResult(arm)
        for seed in spec.seeds:
            folder = Path(results_dir) / spec.name / f"{arm}-s{seed}"
            if not (folder / MEASURES_FILE).is_file():
                continue
            records = _dedupe(read_metrics(folder / "metrics.jsonl"))
            tested = [r for r in records if isinstance(r.get("test_top1"), (int, float))]
            if not tested:
                continue
            res.seeds.append(seed)
            res.final.append(tested[-1]["test_top1"])
            res.best.append(max(r["test_top1"] for r in tested))
            res.curves.append([(int(r["epoch"]), r["test_top1"]) for r in tested])
            res.time_s.append(float(records[-1].get("train_time_s", math.nan)))
            res.measures.append(json.loads((folder / MEASURES_FILE).read_text()))
        out.append(res)
    return out


# ---------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------

def _pm(mean: float, std: float, fmt: str = "{:.2f}") -> str:
    if math.isnan(mean):
        return "-"
    return fmt.format(mean) + ("" if math.isnan(std) else " ± " + fmt.format(std))


def _settings_line(settings: Mapping[str, Any]) -> str:
    return ", ".join(f"`{k}={json.dumps(v) if not isinstance(v, str) else v}`" for k, v in settings.items()) or "none"


def render_study(spec: StudySpec, results: Sequence[ArmResult], figure: str | None = None) -> str:
    """The study's markdown page (tables from ``results``; ``figure``: the curves' file name beside it)."""
    lines = [f"# Study: {spec.title or spec.name}", ""]
    if spec.claim:
        lines += [f"**Claim tested.** {spec.claim}", ""]
    recipe = spec.recipe.as_posix() if spec.recipe else "config defaults"
    lines += [f"**Setting.** Base recipe `{recipe}`; the same budget for every arm: {_settings_line(spec.settings)}; "
              f"seeds {', '.join(map(str, spec.seeds))} (each sets `train.seed` and `data.seed`).", ""]
    has_energy = any(a.measures and "energy_uj" in a.measures[0] for a in results)
    head = ["arm", "settings", "seeds", "final top-1 (%)", "best top-1 (%)"]
    if has_energy:
        head += ["firing rate", "energy / image (µJ)", "ACs / image", "MACs / image"]
    head += ["wall time / run (s)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in results:
        row = [f"`{a.arm}`", _settings_line(spec.arms[a.arm]), str(len(a.seeds)),
               _pm(*_mean_std(a.final)), _pm(*_mean_std(a.best))]
        if has_energy:
            row += [_pm(*a.stat("firing_rate"), "{:.3f}"), _pm(*a.stat("energy_uj"), "{:.3g}"),
                    _pm(*a.stat("acs"), "{:.3g}"), _pm(*a.stat("macs"), "{:.3g}")]
        row += [_pm(*_mean_std(a.time_s), "{:.0f}")]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    missing = [f"`{a.arm}` ({len(spec.seeds) - len(a.seeds)} of {len(spec.seeds)})" for a in results
               if len(a.seeds) < len(spec.seeds)]
    if missing:
        lines += [f"**Incomplete**: seeds still to run for {', '.join(missing)}.", ""]
    iso = [a for a in results if any(m.get("grad_norms_init") for m in a.measures)]
    if iso:
        lines += ["Gradient isometry: max/min of the block-input gradient norms ||dL/dx_l|| over the residual "
                  "blocks, on the first batch of the measured test images (1 = equal at every block: Hu et al.'s "
                  "gradient norm equality), at initialisation and after training, mean over seeds.", "",
                  "| arm | blocks | spread at init | spread trained |", "|---|---|---|---|"]
        for a in iso:
            n = len(next(m["grad_norms_init"] for m in a.measures if m.get("grad_norms_init")))
            lines.append(f"| `{a.arm}` | {n} | {_pm(*a.spread('init'), '{:.3g}')} | "
                         f"{_pm(*a.spread('trained'), '{:.3g}')} |")
        lines.append("")
    ranked = sorted((a for a in results if a.final), key=lambda a: -statistics.fmean(a.final))
    if len(ranked) > 1:
        lines += ["Ranking by mean final top-1: " + " > ".join(f"`{a.arm}`" for a in ranked) + "."]
        if has_energy:
            by_e = sorted((a for a in ranked if not math.isnan(a.stat("energy_uj")[0])),
                          key=lambda a: a.stat("energy_uj")[0])
            lines += ["", "Ranking by energy per image (lowest first): " + " < ".join(f"`{a.arm}`" for a in by_e) + "."]
        lines.append("")
    if figure:
        lines += [f"![test top-1 per epoch; final accuracy against energy per image]({figure})", ""]
    if spec.verdict:
        lines += ["## Verdict", "", spec.verdict, ""]
    if spec.notes:
        lines += ["## Notes", "", spec.notes, ""]
    # a study in a studies/ folder is shown as studies/<file>, whatever path it was run by (the page is the same)
    shown = f"studies/{spec.path.name}" if spec.path.parent.name == "studies" else spec.path.as_posix()
    lines += ["## Reproduce", "", "```bash",
              f"spikevision study {shown}               # train what is missing, then write this page",
              f"spikevision study {shown} --report-only # rewrite this page from the kept results",
              "```", "", "Per-run results (`metrics.jsonl`, `measures.json`) are kept in "
              f"[`{spec.name}/`]({spec.name}/). Energy: E = {E_MAC_45NM_PJ:g} pJ x MACs + {E_AC_45NM_PJ:g} pJ x ACs "
              "(45 nm, Horowitz ISSCC 2014; compute only), on the first test images; the firing rate is the mean over all spiking "
              "neurons and time steps on the same images.", ""]
    return "\n".join(lines)


def _plot(spec: StudySpec, results: Sequence[ArmResult], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    drawn = [a for a in results if a.curves]
    if not drawn:
        return False
    costed = [a for a in drawn if a.final and not math.isnan(a.stat("energy_uj")[0])]
    fig, axes = plt.subplots(1, 2 if costed else 1, figsize=(11.0 if costed else 6.4, 4.0), dpi=110, squeeze=False)
    ax = axes[0, 0]
    colors = {}
    if max(len(c) for a in drawn for c in a.curves) > 1:  # curves: test top-1 after each epoch
        for a in drawn:
            epochs = sorted({e for c in a.curves for e, _ in c})
            per_epoch = [[v for c in a.curves for e, v in c if e == ep] for ep in epochs]
            mean = [statistics.fmean(v) for v in per_epoch]
            x = [e + 1 for e in epochs]
            (line,) = ax.plot(x, mean, marker=".", label=f"{a.arm} (n={len(a.seeds)})")
            colors[a.arm] = line.get_color()
            if len(a.curves) > 1:
                ax.fill_between(x, [min(v) for v in per_epoch], [max(v) for v in per_epoch], alpha=0.2,
                                color=line.get_color())
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("test top-1 per epoch (mean; band: min-max over seeds)", fontsize=9)
        ax.legend(fontsize=7)
    else:  # one evaluation per run (a one-epoch budget): one bar per arm, its seeds as dots
        for i, a in enumerate(drawn):
            values = [v for c in a.curves for _, v in c]
            bar = ax.bar(i, statistics.fmean(values), width=0.6, alpha=0.7, label=f"{a.arm} (n={len(a.seeds)})",
                         color=f"C{i % 10}")
            colors[a.arm] = bar.patches[0].get_facecolor()
            ax.plot([i] * len(values), values, "k.", markersize=4)
        ax.set_xticks(range(len(drawn)), [a.arm for a in drawn], rotation=30, ha="right", fontsize=7)
        ax.set_title("final test top-1 per arm (bar: mean; dots: seeds)", fontsize=9)
    ax.set_ylabel("test top-1 (%)")
    fig.suptitle(spec.title or spec.name, fontsize=9)
    finals = [v for a in drawn for c in a.curves for _, v in c[-1:]]
    bars = ax.patches  # bars start at 0: their axis must too
    ax.set_ylim(0.0 if bars else max(0.0, min(finals) - 8.0), min(100.0, max(finals) + 2.0))
    ax.grid(alpha=0.3)
    if costed:  # the trade-off: final accuracy against energy per image, one point per arm (+- std over seeds)
        ax = axes[0, 1]
        for a in costed:
            (e, e_std), (acc, acc_std) = a.stat("energy_uj"), _mean_std(a.final)
            ax.errorbar(e, acc, xerr=0 if math.isnan(e_std) else e_std, yerr=0 if math.isnan(acc_std) else acc_std,
                        fmt="o", color=colors[a.arm], capsize=3)
            ax.annotate(a.arm, (e, acc), textcoords="offset points", xytext=(5, 4), fontsize=7)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("energy per image (µJ, log scale)")
        ax.set_ylabel("final test top-1 (%)")
        ax.set_title("accuracy vs energy (mean ± std over seeds)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return True


def write_study_page(spec: StudySpec, results_dir: str | Path = "docs/studies") -> Path:
    """Write ``<results_dir>/<study>.md`` and ``<study>.png`` (mean curve per arm, min-max band over seeds;
    beside it, when energy was measured, final accuracy against energy per image per arm)."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    results = collect_results(spec, results_dir)
    fig = results_dir / f"{spec.name}.png"
    has_fig = _plot(spec, results, fig)
    page = results_dir / f"{spec.name}.md"
    tmp = page.with_name(page.name + ".tmp")
    tmp.write_text(render_study(spec, results, fig.name if has_fig else None))
    tmp.replace(page)
    return page
