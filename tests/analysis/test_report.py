"""``spikevision report`` on a run trained here by the engine; receptive fields against the raw weights."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spikevision.analysis import FiringRateMonitor, SynOpsCounter, profile_model
from spikevision.analysis.receptive_fields import default_tokens, receptive_field, token_mixing_weights
from spikevision.analysis.report import measure, summarize_metrics
from spikevision.cli import main
from spikevision.models import create_model

TINY = {"T": 2, "dim": 6}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _direct_measurement(run: Path, batches: int, batch_size: int):
    """Model from last.pt by hand, first test batches by hand, FiringRateMonitor and SynOpsCounter directly."""
    import itertools

    from spikevision.data import DataConfig, build_loader
    from spikevision.train import checkpoint as ck

    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)  # no holdout: no best.pt
    model = create_model(state[ck.MODEL_NAME_KEY], **state[ck.MODEL_KWARGS_KEY]).eval()
    model.load_state_dict(state[ck.MODEL_KEY])
    cfg = dict(state[ck.CONFIG_KEY]["data"], eval_batch_size=batch_size, device="cpu", num_workers=0)
    xs = [x for x, _ in itertools.islice(build_loader(DataConfig.from_dict(cfg), "test"), batches)]
    with torch.no_grad(), FiringRateMonitor(model) as mon, SynOpsCounter(model) as ops:
        for x in xs:
            model(x)
    samples = sum(len(x) for x in xs)
    return model, mon, ops.result(samples), samples


def test_report_matches_metrics_and_direct_measurement(trained_run, capsys):
    run = trained_run
    assert main(["report", str(run), "--batches", "2", "--batch-size", "4"]) == 0
    assert "report.md" in capsys.readouterr().out
    md = (run / "report.md").read_text()
    summary = json.loads((run / "report" / "summary.json").read_text())

    # accuracy: a plain pass over metrics.jsonl
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    final = records[-1]
    best = records[0]
    for r in records:
        if r["test_top1"] > best["test_top1"]:
            best = r
    assert f"| final test top-1 | {final['test_top1']:.2f} % (epoch {final['epoch']}) |" in md
    assert f"| max test top-1 over epochs (chosen on the test set: optimistic) | {best['test_top1']:.2f} % (epoch {best['epoch']}) |" in md
    assert summary["final_top1"] == final["test_top1"] and summary["best_top1"] == best["test_top1"]
    assert f"{records[-1]['train_loss']:.4f}" in md
    assert f"| firing rate logged at the last evaluation | {final['firing_rate']:.4f} |" in md

    # firing rates, operations, energy: measured directly on the same batches
    model, mon, ops, samples = _direct_measurement(run, batches=2, batch_size=4)
    assert summary["samples"] == samples == 8
    direct = {n: r.rate for n, r in mon.rates().items()}
    assert summary["firing_rates"] == pytest.approx(direct, abs=1e-12)
    assert summary["mean_firing_rate"] == pytest.approx(mon.mean_rate(), abs=1e-12)
    assert mon.mean_rate() > 0  # the comparison is not between two zeros
    assert f"| mean firing rate | {mon.mean_rate():.4f} spikes/neuron/step" in md
    energy = 4.6 * ops.totals["macs"] + 0.9 * ops.totals["acs"]
    assert summary["energy_pj_per_sample"] == pytest.approx(energy, rel=1e-12)
    assert "E = 4.6 pJ x MACs + 0.9 pJ x ACs (45 nm, Horowitz ISSCC 2014" in md
    params = sum(p.numel() for p in model.parameters())
    assert f"({params:,})" in md and summary["params"] == params
    assert "`mlp_spe_mini` (T=2, dim=6, num_classes=10)" in md
    assert "`checkpoints/last.pt`" in md and "first 2 test batches of fashion_mnist: 8 samples, batch 4" in md

    # every linked figure exists and is a valid PNG with pixels
    import matplotlib.image

    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(Path(p).name for p in links) == sorted(
        ["training_curves.png", "firing_rates.png", "ops_energy.png", "receptive_fields.png"])
    for link in links:
        path = run / link
        assert path.read_bytes()[:8] == PNG_MAGIC, link
        img = matplotlib.image.imread(path)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0, link
    assert not list(run.glob(".report-tmp-*"))


def _copy_run(run: Path, dest: Path, *, drop: str | None = None) -> Path:
    out = dest / "run"
    shutil.copytree(run, out, ignore=shutil.ignore_patterns("report", "report.md"))
    if drop is not None:
        target = out / drop
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return out


def _untouched(run: Path, before: set[str]) -> None:
    assert {p.name for p in run.iterdir()} == before, "the failed report wrote something"


def test_errors_are_clear_and_write_nothing(trained_run, tmp_path):
    with pytest.raises(SystemExit, match="run directory .*no_such_run not found"):
        main(["report", str(tmp_path / "no_such_run")])

    no_metrics = _copy_run(trained_run, tmp_path / "a", drop="metrics.jsonl")
    before = {p.name for p in no_metrics.iterdir()}
    with pytest.raises(SystemExit, match="metrics.jsonl not found"):
        main(["report", str(no_metrics)])
    _untouched(no_metrics, before)

    no_ckpt = _copy_run(trained_run, tmp_path / "b", drop="checkpoints")
    before = {p.name for p in no_ckpt.iterdir()}
    with pytest.raises(SystemExit, match="no best.pt or last.pt"):
        main(["report", str(no_ckpt)])
    _untouched(no_ckpt, before)

    broken = _copy_run(trained_run, tmp_path / "c")
    with open(broken / "metrics.jsonl", "a") as f:
        f.write("{not json\n")
    before = {p.name for p in broken.iterdir()}
    with pytest.raises(SystemExit, match="line 3 is not valid JSON"):
        main(["report", str(broken)])
    _untouched(broken, before)

    with pytest.raises(SystemExit, match="cannot load the run's test data: .*nowhere"):
        main(["report", str(_copy_run(trained_run, tmp_path / "d")), "--data-root", str(tmp_path / "nowhere")])


def test_failure_while_writing_keeps_the_old_report(trained_run, tmp_path, monkeypatch):
    import spikevision.analysis.plots as plots

    run = _copy_run(trained_run, tmp_path)
    assert main(["report", str(run), "--batches", "1", "--batch-size", "3"]) == 0
    old_md = (run / "report.md").read_text()
    old_figs = {p.name: p.read_bytes() for p in (run / "report").iterdir()}

    def boom(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(plots, "plot_receptive_fields", boom)
    with pytest.raises(RuntimeError, match="plotting failed"):
        main(["report", str(run), "--batches", "2", "--batch-size", "4"])
    assert (run / "report.md").read_text() == old_md
    assert {p.name: p.read_bytes() for p in (run / "report").iterdir()} == old_figs
    assert not list(run.glob(".report-tmp-*"))


def test_summarize_metrics_final_vs_best_and_unevaluated_epochs():
    records = [{"epoch": 0, "train_loss": 2.0, "test_top1": 30.0},
               {"epoch": 1, "train_loss": 1.5, "test_top1": 55.0, "firing_rate": 0.2},
               {"epoch": 2, "train_loss": 1.2, "test_top1": 50.0, "firing_rate": 0.1},
               {"epoch": 3, "train_loss": 1.1}]  # eval_every > 1: no test keys
    s = summarize_metrics(records)
    assert (s.final_top1, s.final_epoch, s.best_top1, s.best_epoch) == (50.0, 2, 55.0, 1)
    assert s.final_train_loss == 1.1 and s.logged_firing_rate == 0.1 and s.epochs == 4 and s.last_epoch == 3
    none = summarize_metrics([{"epoch": 0, "train_loss": 2.0}])
    assert none.final_top1 is None and none.best_top1 is None
    from spikevision.analysis.plots import plot_training_curves

    assert len(plot_training_curves(records).axes) == 3


def test_measure_over_batches_equals_one_profile_of_their_concatenation():
    torch.manual_seed(0)
    model = create_model("mlp_spe_mini", **TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)  # more spikes than at initialisation
    xs = [torch.rand(3, 1, 28, 28), torch.rand(2, 1, 28, 28)]
    prof = measure(model, [(xs[0], None), xs[1]])
    ref = profile_model(model, torch.cat(xs))
    assert prof.samples == ref.samples == 5
    assert prof.ops.totals == pytest.approx(ref.ops.totals, rel=1e-9)
    assert {n: r.rate for n, r in prof.rates.items()} == pytest.approx({n: r.rate for n, r in ref.rates.items()})
    assert prof.mean_rate > 0
    with pytest.raises(ValueError, match="at least one batch"):
        measure(model, [])


def test_receptive_fields_are_the_weights_on_the_token_grid():
    torch.manual_seed(0)
    model = create_model("mlp_spe_mini", **TINY).eval()
    mixes = token_mixing_weights(model)
    tokens = [m for n, m in model.named_modules() if type(m).__name__ == "TokenMixing"]
    assert [m.name for m in mixes] == ["stages.0.blocks.0.token", "stages.1.blocks.0.token"]
    assert [m.grid for m in mixes] == [(14, 14), (7, 7)]
    for mix, tm in zip(mixes, tokens):
        wh = tm.proj_h.module.weight.detach()[:, :, 0, 0].double().numpy()
        ww = tm.proj_w.module.weight.detach()[:, :, 0, 0].double().numpy()
        assert np.array_equal(mix.weight_h, wh) and np.array_equal(mix.weight_w, ww)
        H, W = mix.grid
        for i, k in default_tokens(H, W) + [(1, W - 2)]:
            fh, fw = receptive_field(mix, i, k)
            for j in range(H):  # plain loop over the grid
                for col in range(W):
                    assert fh[j, col] == (wh[i, j] if col == k else 0.0)
                    assert fw[j, col] == (ww[k, col] if j == i else 0.0)
        with pytest.raises(ValueError, match="outside the"):
            receptive_field(mix, H, 0)
    assert token_mixing_weights(nn.Sequential(nn.Linear(2, 2))) == []


def test_folded_receptive_field_is_what_the_branch_bn_sees():
    """fold_bn: W_folded @ x equals BN(conv(x)) - BN(conv(0)) of the real modules in eval mode."""
    torch.manual_seed(0)
    model = create_model("mlp_spe_mini", **TINY).eval()
    tm = model.stages[0].blocks[0].token
    with torch.no_grad():
        tm.norm_h.running_var.uniform_(0.5, 2.0)
        tm.norm_h.running_mean.normal_()
        tm.norm_h.weight.uniform_(0.5, 1.5)
    mix = token_mixing_weights(model, fold_bn=True)[0]
    assert mix.bn_folded
    x = (torch.rand(1, 1, 14, 6, 14) < 0.5).float()  # [T, B, H (rows as channels), C, W]
    with torch.no_grad():
        ref = tm.norm_h(tm.proj_h(x)) - tm.norm_h(tm.proj_h(torch.zeros_like(x)))
    got = np.einsum("ij,tbjcw->tbicw", mix.weight_h, x.double().numpy())
    assert np.allclose(got, ref.double().numpy(), atol=1e-5)


def test_hand_written_run_of_another_family(tmp_path, fashion_mnist_files):
    """A run directory in the engine's format written by hand (ms_resnet20): no token mixing, last.pt, mid-epoch."""
    from spikevision.train import checkpoint as ck
    from spikevision.train.config import config_from_dict

    data = fashion_mnist_files(tmp_path / "fmnist")
    kwargs = {"T": 2, "in_chans": 1, "num_classes": 10}
    torch.manual_seed(0)
    model = create_model("ms_resnet20", **kwargs)
    cfg = config_from_dict({"model": {"name": "ms_resnet20", **kwargs},
                            "data": {"name": "fashion_mnist", "root": str(data), "batch_size": 4}})
    run = tmp_path / "run"
    ck.save_checkpoint(run / "checkpoints" / "last.pt", {
        ck.VERSION_KEY: ck.FORMAT_VERSION, ck.MODEL_KEY: model.state_dict(), ck.MODEL_NAME_KEY: "ms_resnet20",
        ck.MODEL_KWARGS_KEY: kwargs, ck.CONFIG_KEY: cfg.to_dict(), ck.EPOCH_KEY: 2, ck.STEP_KEY: 9,
        ck.EPOCH_STEP_KEY: 1})
    records = [{"epoch": 0, "step": 4, "lr": 0.1, "train_loss": 2.5, "train_top1": 10.0, "test_top1": 25.0},
               {"epoch": 1, "step": 8, "lr": 0.05, "train_loss": 2.1, "train_top1": 20.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["report", str(run), "--batches", "1", "--batch-size", "2", "--checkpoint", "last"]) == 0
    md = (run / "report.md").read_text()
    assert "| final test top-1 | 25.00 % (epoch 0) |" in md and "| max test top-1 over epochs (chosen on the test set: optimistic) | 25.00 % (epoch 0) |" in md
    assert "`checkpoints/last.pt` (saved after 2 epochs + 1 batch, step 9)" in md
    assert "receptive_fields.png" not in md and not (run / "report" / "receptive_fields.png").exists()
    assert "stem.module.0" in md  # the per-layer table
    for name in ("training_curves.png", "firing_rates.png", "ops_energy.png"):
        assert (run / "report" / name).read_bytes()[:8] == PNG_MAGIC
