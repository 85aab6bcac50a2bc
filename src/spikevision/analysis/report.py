"""The run report: ``RUN_DIR/report.md`` plus figures in ``RUN_DIR/report/`` (``spikevision report``).

What goes in (all from the run directory; nothing re-trained, accuracy not re-evaluated):

* **summary table**: model and its builder arguments, parameters, epochs/steps,
  final and best test top-1 (``metrics.jsonl``), mean firing rate, ACs/MACs and
  energy per sample with the energy convention;
* **training curves** (``training_curves.png``): loss, top-1 and learning rate per epoch;
* **firing rates** (``firing_rates.png``): spikes per neuron per step of every
  spiking layer, measured with :class:`~spikevision.analysis.monitors.FiringRateMonitor`
  on the first ``batches`` test batches of the run's own data set;
* **operations and energy** (``ops_energy.png``): stacked ACs/MACs per synaptic
  layer and their energy (:class:`~spikevision.analysis.synops.SynOpsCounter`, same batches);
* **receptive fields** (``receptive_fields.png``, spiking MLPs only): the
  learned token-mixing matrices on the token grid
  (:mod:`~spikevision.analysis.receptive_fields`);
* ``summary.json``: the summary's numbers, unrounded, for scripts.

Everything is computed first and written to a temporary folder inside the run
directory, then moved into place, so a failure leaves no half-written report
(and an older report intact).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor, nn

from spikevision.analysis.energy import PAPER_45NM, EnergyModel, MemoryEnergyModel
from spikevision.analysis.monitors import FiringRateMonitor, spiking_layers
from spikevision.analysis.synops import IntegerMode, SynOpsCounter, connection_sparsity, footprint
from spikevision.analysis.profile import Profile, _counting_line, _energy_str, _samples_and_T, _si, format_profile
from spikevision.analysis.receptive_fields import TokenMixingWeights, token_mixing_weights
from spikevision.train.checkpoint import METRICS_FILE  # the engine's per-epoch log, one JSON line per epoch

__all__ = ["REPORT_FILE", "FIGURE_DIR", "FIGURES", "METRICS_FILE", "MetricsSummary", "RunReport", "read_metrics",
           "summarize_metrics", "measure", "build_report", "render_markdown", "write_report"]

REPORT_FILE = "report.md"
FIGURE_DIR = "report"
FIGURES = {"curves": "training_curves.png", "rates": "firing_rates.png", "ops": "ops_energy.png",
           "fields": "receptive_fields.png"}
SUMMARY_FILE = "summary.json"


# ---------------------------------------------------------------------------
# metrics.jsonl
# ---------------------------------------------------------------------------

def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (one JSON object per line, one line per epoch).

    Raises:
        FileNotFoundError: no such file (the run never finished an epoch).
        ValueError: a line is not a JSON object with an ``epoch``, or the file has no record.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run has not finished an epoch yet "
                                "(the engine appends one line per epoch); train it first")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {n} is not valid JSON ({e}); remove or repair that line") from None
        if not isinstance(rec, dict) or "epoch" not in rec:
            raise ValueError(f"{path} line {n} is not an epoch record (a JSON object with 'epoch'); got {line[:80]!r}")
        problem = _record_problem(rec)
        if problem:
            raise ValueError(f"{path} line {n}: {problem}; remove or repair that line")
        records.append(rec)
    if not records:
        raise ValueError(f"{path} is empty: the run has not finished an epoch yet; train it first")
    return records


def _record_problem(rec: dict[str, Any]) -> str:
    """What is wrong with one parsed epoch record ("" if nothing): the engine writes numbers only."""
    epoch = rec["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        return f"'epoch' must be a whole number >= 0, got {json.dumps(epoch)[:40]}"
    for key, value in rec.items():
        if value is None or isinstance(value, str):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{key!r} must be a number or null, got {json.dumps(value)[:40]}"
        if not math.isfinite(value):
            return f"{key!r} must be a finite number or null, got {value}"
    return ""


@dataclass
class MetricsSummary:
    """What the report states from ``metrics.jsonl`` (None where the run logged no test evaluation)."""

    epochs: int  # records (epochs logged)
    last_epoch: int
    step: int | None
    final_top1: float | None  # test top-1 (%) of the last evaluated epoch
    final_epoch: int | None
    best_top1: float | None  # highest test top-1 (%) over the run
    best_epoch: int | None
    final_train_loss: float | None
    final_test_loss: float | None
    logged_firing_rate: float | None  # the engine's firing rate at the last evaluation (whole test set)
    train_time_s: float | None


def summarize_metrics(records: Sequence[dict[str, Any]]) -> MetricsSummary:
    """Final and best test top-1 and the other summary numbers of ``records`` (the engine's keys)."""
    last = records[-1]
    evaluated = [r for r in records if isinstance(r.get("test_top1"), (int, float))]
    final = evaluated[-1] if evaluated else None
    best = max(evaluated, key=lambda r: r["test_top1"]) if evaluated else None  # first epoch on ties
    return MetricsSummary(
        epochs=len(records), last_epoch=int(last["epoch"]), step=last.get("step"),
        final_top1=final["test_top1"] if final else None, final_epoch=int(final["epoch"]) if final else None,
        best_top1=best["test_top1"] if best else None, best_epoch=int(best["epoch"]) if best else None,
        final_train_loss=last.get("train_loss"), final_test_loss=final.get("test_loss") if final else None,
        logged_firing_rate=final.get("firing_rate") if final else None, train_time_s=last.get("train_time_s"))


# ---------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------

def measure(model: nn.Module, batches: Iterable[Tensor | tuple[Tensor, Any]], *, integer_inputs: IntegerMode = "mac",
            energy: EnergyModel = PAPER_45NM, device: str | torch.device = "cpu", seed: int = 0) -> Profile:
    """:func:`~spikevision.analysis.profile.profile_model` over several batches (counts per sample over all).

    Two passes over the batches, each after ``torch.manual_seed(seed)`` (so a
    stochastic encoder sees the same draws): one under a
    :class:`~spikevision.analysis.monitors.FiringRateMonitor`, one under an
    :class:`~spikevision.analysis.synops.SynOpsCounter`. One pass with both would let
    the counter's addition tracking count the monitor's own running sums
    (from the second call on) as network additions.

    Args:
        model: the network (eval mode for the call, mode restored afterwards).
        batches: images ``[B, C, H, W]`` or sequences ``[T, B, ...]``, or ``(x, y)`` pairs.
        integer_inputs: how integer inputs count (see :class:`~spikevision.analysis.synops.SynOpsCounter`).
        energy: energy per operation.
        device: where to run.
        seed: torch seed set before each pass.

    Raises:
        ValueError: no batch.
    """
    xs = [b[0] if isinstance(b, (tuple, list)) else b for b in batches]
    if not xs:
        raise ValueError("measure() needs at least one batch")
    samples = sum(_samples_and_T(x)[0] for x in xs)
    T = getattr(model, "T", None) or _samples_and_T(xs[0])[1]
    was_training = model.training
    model.eval()
    try:
        monitor = FiringRateMonitor(model) if spiking_layers(model) else None
        with torch.no_grad(), (monitor if monitor is not None else nullcontext()):
            torch.manual_seed(seed)
            for x in xs if monitor is not None else []:
                model(x.to(device))
        counter = SynOpsCounter(model, integer_inputs=integer_inputs, T=T)
        with torch.no_grad(), counter:
            torch.manual_seed(seed)
            for x in xs:
                model(x.to(device))
    finally:
        model.train(was_training)
    return Profile(counter.result(samples), monitor.rates() if monitor else {}, T, samples, footprint(model),
                   connection_sparsity(model), energy, MemoryEnergyModel(compute=energy))


# ---------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------

@dataclass
class RunReport:
    """Everything :func:`render_markdown` and the figures need (built by :func:`build_report`)."""

    run_dir: Path
    checkpoint: Path
    model_name: str
    model_kwargs: dict[str, Any]
    ckpt_epoch: int
    ckpt_step: int
    params: int
    records: list[dict[str, Any]]
    metrics: MetricsSummary
    profile: Profile
    data: str  # "first 4 test batches of mnist"
    batch_size: int
    token_mixing: list[TokenMixingWeights] = field(default_factory=list)
    ckpt_epoch_step: int = 0  # batches done in the epoch in progress (mid-epoch checkpoints)

    def summary(self) -> dict[str, Any]:
        """The summary's numbers, unrounded (``summary.json``)."""
        p, t = self.profile, self.profile.ops.totals
        return {
            "model": self.model_name, "model_kwargs": self.model_kwargs, "params": self.params,
            "checkpoint": str(self.checkpoint.relative_to(self.run_dir)), "checkpoint_epoch": self.ckpt_epoch,
            "checkpoint_step": self.ckpt_step, "epochs_logged": self.metrics.epochs,
            "final_top1": self.metrics.final_top1, "final_epoch": self.metrics.final_epoch,
            "best_top1": self.metrics.best_top1, "best_epoch": self.metrics.best_epoch,
            "logged_firing_rate": self.metrics.logged_firing_rate,
            "measured_on": self.data, "samples": p.samples, "T": p.T,
            "mean_firing_rate": None if math.isnan(p.mean_rate) else p.mean_rate,
            "firing_rates": {n: r.rate for n, r in p.rates.items()},
            "acs_per_sample": t["acs"], "macs_per_sample": t["macs"], "dense_macs_per_sample": t["dense_macs"],
            "energy_pj_per_sample": p.energy_pj(), "energy_convention": p.energy.convention(),
            "energy_with_memory_pj_per_sample": p.energy_pj(p.memory_energy),
        }


def _validate_run_dir(run_dir: Path) -> None:
    if not run_dir.exists():
        raise FileNotFoundError(f"run directory {run_dir} not found; pass runs/<name> of a training run")
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a directory; pass a run directory (runs/<name>), "
                                "not a checkpoint file")


def build_report(run_dir: str | Path, *, batches: int = 4, batch_size: int = 16, data_root: str | Path | None = None,
                 checkpoint: str = "best", seed: int = 0, device: str = "cpu") -> RunReport:
    """Read the run, load its checkpoint and measure it on its own test data (nothing is written).

    Args:
        run_dir: the run directory (``runs/<name>``).
        batches: test batches to measure firing rates and operations on.
        batch_size: samples per batch.
        data_root: data folder (default: the run's ``data.root``).
        checkpoint: ``"best"`` (``best.pt``, else ``last.pt``) or ``"last"``.
        seed: torch seed before measuring (stochastic encoders).
        device: where to run the model.

    Raises:
        FileNotFoundError: no run directory, ``metrics.jsonl``, checkpoint or data set.
        ValueError: a damaged ``metrics.jsonl`` or checkpoint, or bad arguments.
    """
    from spikevision.analysis.load import run_test_batches
    from spikevision.train import checkpoint as ck

    run_dir = Path(run_dir)
    _validate_run_dir(run_dir)
    if batches < 1 or batch_size < 1:
        raise ValueError(f"batches and batch_size must be >= 1, got {batches} and {batch_size}")
    records = read_metrics(run_dir / METRICS_FILE)
    run = ck.load_run(run_dir, checkpoint)  # type: ignore[arg-type]
    model, state, path = run.model, run.state, run.path
    try:
        data, what = run_test_batches(state, batch_size=batch_size, batches=batches, data_root=data_root)
    except (FileNotFoundError, ValueError) as e:
        raise type(e)(f"cannot load the run's test data: {e} (pass --data-root DIR if the data moved)") from None
    model.to(device)
    prof = measure(model, data, device=device, seed=seed)
    return RunReport(run_dir, path, state[ck.MODEL_NAME_KEY], dict(state[ck.MODEL_KWARGS_KEY]),
                     int(state[ck.EPOCH_KEY]), int(state[ck.STEP_KEY]), sum(p.numel() for p in model.parameters()),
                     records, summarize_metrics(records), prof, what, batch_size, token_mixing_weights(model),
                     int(state.get(ck.EPOCH_STEP_KEY) or 0))


def _pct(v: float | None, epoch: int | None) -> str:
    return "not evaluated" if v is None else f"{v:.2f} % (epoch {epoch})"


def _n(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def _kwargs(kw: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in kw.items())


def render_markdown(rep: RunReport) -> str:
    """``report.md``: summary table, figure links, conventions, per-layer table."""
    p, m, t = rep.profile, rep.metrics, rep.profile.ops.totals
    T = p.T or 1
    ckpt = rep.checkpoint.relative_to(rep.run_dir)
    rate = p.mean_rate
    rate_str = "no spiking layer" if math.isnan(rate) else (
        f"{rate:.4f} spikes/neuron/step ({rate * T:.3f} per neuron per sample)")
    logged = "" if m.logged_firing_rate is None else f"{m.logged_firing_rate:.4f}"
    rows = [
        ("model", f"`{rep.model_name}` ({_kwargs(rep.model_kwargs)})"),
        ("parameters", f"{_si(rep.params)} ({rep.params:,})"),
        ("training", f"{_n(m.epochs, 'epoch')} logged (last epoch {m.last_epoch}, {m.step} steps)"
         + (f", {m.train_time_s:.1f} s" if m.train_time_s is not None else "")),
        ("final test top-1", _pct(m.final_top1, m.final_epoch)),
        ("max test top-1 over epochs (chosen on the test set: optimistic)", _pct(m.best_top1, m.best_epoch)),
        ("final train loss", "" if m.final_train_loss is None else f"{m.final_train_loss:.4f}"),
        ("checkpoint measured", f"`{ckpt}` (saved after {_n(rep.ckpt_epoch, 'epoch')}"
         + (f" + {_n(rep.ckpt_epoch_step, 'batch', 'batches')}" if rep.ckpt_epoch_step else "")
         + f", step {rep.ckpt_step})"),
        ("measured on", f"{rep.data}: {p.samples} samples, batch {rep.batch_size}, T={p.T}"),
        ("mean firing rate", rate_str),
        ("firing rate logged at the last evaluation", logged or "not logged"),
        ("ACs / MACs per sample", f"{_si(t['acs'])} / {_si(t['macs'])} (dense MACs {_si(t['dense_macs'])})"),
        ("energy per sample", f"{_energy_str(p.energy_pj())} ({p.energy.convention()})"),
        ("energy per sample with memory", f"{_energy_str(p.energy_pj(p.memory_energy))} (SRAM model, see below)"),
    ]
    lines = [f"# Run report: {rep.run_dir.name}", "",
             f"Written by `spikevision report` from `{rep.run_dir}`. Accuracy and curves come from "
             f"`{METRICS_FILE}`; firing rates, operations and energy are measured on the checkpoint below.", "",
             "## Summary", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "## Figures", "",
              "### Training curves", "", f"![training curves]({FIGURE_DIR}/{FIGURES['curves']})", "",
              "### Firing rate per spiking layer", "", f"![firing rates]({FIGURE_DIR}/{FIGURES['rates']})", "",
              "### Operations and energy per layer", "", f"![operations and energy]({FIGURE_DIR}/{FIGURES['ops']})",
              ""]
    if rep.token_mixing:
        lines += ["### Token-mixing receptive fields", "",
                  f"![receptive fields]({FIGURE_DIR}/{FIGURES['fields']})", "",
                  "One row per token-mixing layer: the H-branch matrix `W_h` (output row x input row), the "
                  "W-branch matrix `W_w` (output column x input column), then, for a few output tokens "
                  "`(i, k)` (marked x), the sum of the H-branch field (column `k` holds `W_h[i, :]`) and the "
                  "W-branch field (row `i` holds `W_w[k, :]`) on the token grid. Raw conv weights (BN not "
                  "folded, biases not drawn); red positive, blue negative, colour scale per panel.", ""]
    lines += ["## Conventions", "",
              f"* Accuracy: test top-1 of the engine's evaluation on the whole test set, as logged in "
              f"`{METRICS_FILE}`; final = last evaluated epoch, best = highest (first on ties). Not re-evaluated.",
              "* Firing rate: spikes per neuron per time step of each spiking layer (mean of its output); the "
              "mean weights layers by neuron count; x T = spikes per neuron per sample.",
              f"* Measurement: {rep.data} in test order, eval mode (BN running statistics), no autograd, "
              f"weights of `{ckpt}`.",
              f"* Energy: {p.energy.convention()}; per sample. With memory: {p.memory_energy.convention()}.",
              f"* {_counting_line(p)}.",
              "* Operation counts and energy are estimates of the network as trained (BN not folded); see "
              "`docs/analysis.md`.", ""]
    if any(rep.run_dir.glob("events.out.tfevents.*")):
        lines += [f"TensorBoard: `tensorboard --logdir {rep.run_dir}`.", ""]
    lines += ["## Per-layer profile", "", "```", format_profile(p), "```", ""]
    return "\n".join(lines)


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=110)


def write_report(run_dir: str | Path, **kwargs: Any) -> Path:
    """Build the report (:func:`build_report` arguments) and write ``report.md`` and ``report/`` atomically.

    Returns:
        the path of ``report.md``.

    Raises:
        as :func:`build_report`; on any error nothing in the run directory changes.
    """
    from spikevision.analysis.plots import (
        plot_firing_rates, plot_ops_energy, plot_receptive_fields, plot_training_curves,
    )

    rep = build_report(run_dir, **kwargs)
    run_dir = rep.run_dir
    tmp = Path(tempfile.mkdtemp(prefix=".report-tmp-", dir=run_dir))
    try:
        figs = tmp / FIGURE_DIR
        figs.mkdir()
        name = rep.run_dir.name
        _save(plot_training_curves(rep.records, title=f"{name}: training curves"), figs / FIGURES["curves"])
        _save(plot_firing_rates({n: r.rate for n, r in rep.profile.rates.items()},
                                title=f"{name}: firing rate per spiking layer\n({rep.data})"), figs / FIGURES["rates"])
        e = rep.profile.energy
        _save(plot_ops_energy(rep.profile.ops.layers, e_mac_pj=e.e_mac_pj, e_ac_pj=e.e_ac_pj,
                              convention=e.convention(), title=f"{name}: operations and energy per layer, per sample"),
              figs / FIGURES["ops"])
        if rep.token_mixing:
            _save(plot_receptive_fields(rep.token_mixing, title=f"{name}: learned token-mixing weights"),
                  figs / FIGURES["fields"])
        (figs / SUMMARY_FILE).write_text(json.dumps(rep.summary(), indent=1) + "\n")
        (tmp / REPORT_FILE).write_text(render_markdown(rep))
        # everything is built: move it into place (the old figure folder goes only after the new one is in)
        dest = run_dir / FIGURE_DIR
        if dest.exists():
            os.replace(dest, tmp / "previous")
        os.replace(figs, dest)
        os.replace(tmp / REPORT_FILE, run_dir / REPORT_FILE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return run_dir / REPORT_FILE
