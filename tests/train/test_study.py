"""The study runner: validation, skip/resume, a study SIGKILLed mid-run and restarted ends with the same
weights as an uninterrupted one, and the page regenerates from the kept results alone."""

import json
import shutil
import signal
import statistics

import pytest
import torch
import yaml

from train_support import HERE, run_killed_at
from spikevision.cli import main
from spikevision.train import checkpoint as ck
from spikevision.train.config import ConfigError
from spikevision.train.checkpoint import LAST
from spikevision.studies import MEASURES_FILE, load_study, plan_runs, run_status, run_study


def _study(tmp_path, root, name="tiny", **extra):
    """Two arms x two seeds of the tiny model: 2 epochs of 8 steps per run, a checkpoint every 3 steps."""
    spec = {
        "title": "tiny study", "claim": "a wider hidden layer is not worse",
        "settings": {"model.name": "tiny_snn_test", "data.name": "fashion_mnist", "data.root": str(root),
                     "data.batch_size": 8, "data.eval_batch_size": 20, "optim.name": "sgd", "optim.lr": 0.1,
                     "train.epochs": 2, "train.deterministic": True, "train.device": "cpu", "train.threads": 1,
                     "train.ckpt_every_steps": 3, "run.progress": "off", "run.tensorboard": False},
        "seeds": [0, 1],
        "arms": {"h16": {"model.hidden": 16}, "h8": {"model.hidden": 8}},
        "measure": {"energy": True, "batches": 1, "batch_size": 20},
    }
    spec.update(extra)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_load_study_reports_every_problem_at_once(tmp_path, fmnist_root):
    path = _study(tmp_path, fmnist_root, seeds=[0, 0], arms={"ok": {"model.hiden": 4}, "bad/name": {},
                                                             "x": {"train.seed": 3}}, mesure={})
    with pytest.raises(ConfigError) as e:
        load_study(path)
    msg = str(e.value)
    assert "'mesure' (did you mean 'measure'?)" in msg and "seeds must be" in msg and "bad/name" in msg
    path = _study(tmp_path, fmnist_root, arms={"ok": {"model.hiden": 4}, "x": {"train.seed": 3}})
    with pytest.raises(ConfigError) as e:
        load_study(path)
    assert "model.hiden" in str(e.value) and "'hidden'" in str(e.value)  # the arm's config, nearest key
    assert "train.seed are set by the study runner" in str(e.value)
    with pytest.raises(FileNotFoundError, match="recipe"):
        load_study(_study(tmp_path, fmnist_root, recipe="nowhere.yaml"))
    spec = load_study(_study(tmp_path, fmnist_root, name="by_name", recipe="quickstart"))  # a shipped recipe
    assert spec.recipe is not None and spec.recipe.name == "quickstart.yaml" and spec.recipe.is_file()


def test_plan_pins_seed_and_folders(tmp_path, fmnist_root):
    spec = load_study(_study(tmp_path, fmnist_root))
    runs = plan_runs(spec, tmp_path / "runs", tmp_path / "res")
    assert [r.name for r in runs] == ["h16-s0", "h16-s1", "h8-s0", "h8-s1"]
    r = runs[1]
    assert (r.config.train.seed, r.config.data.seed, r.config.model.kwargs["hidden"]) == (1, 1, 16)
    assert r.run_dir == tmp_path / "runs" / "tiny" / "h16-s1" and r.results_dir == tmp_path / "res" / "tiny" / "h16-s1"
    assert run_status(r) == "new"
    with pytest.raises(ValueError, match="no arm or seed 'h4'"):
        run_study(spec, out_dir=tmp_path / "runs", results_dir=tmp_path / "res", arms=["h4"])


def test_killed_study_resumes_to_the_same_weights(tmp_path, fmnist_root):
    path = _study(tmp_path, fmnist_root)
    dirs = ["--out-dir", str(tmp_path / "killed"), "--results-dir", str(tmp_path / "killed_res")]
    # 16 steps per run: step 22 is the second run's (h16-s1) epoch 0, batch 6; its checkpoint is at step 3 of run 2
    p = run_killed_at(22, ["study", str(path), *dirs], timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr
    spec = load_study(path)
    runs = plan_runs(spec, tmp_path / "killed", tmp_path / "killed_res")
    assert [run_status(r) for r in runs] == ["done", "partial", "new", "new"]
    assert ck.load_checkpoint(runs[1].run_dir / "checkpoints" / LAST)[ck.STEP_KEY] == 3
    p = run_killed_at(0, ["study", str(path), *dirs], timeout=300)
    assert p.returncode == 0, p.stderr
    assert "h16-s0: done, skipped" in p.stderr and "h16-s1: resuming" in p.stderr

    straight = run_study(spec, out_dir=tmp_path / "straight", results_dir=tmp_path / "straight_res")
    assert len(straight) == 4
    for a, b in zip(straight, runs):
        sa, sb = (ck.load_checkpoint(r.run_dir / "checkpoints" / LAST) for r in (a, b))
        assert sa[ck.STEP_KEY] == sb[ck.STEP_KEY] == 16
        for k, v in sa[ck.MODEL_KEY].items():
            assert torch.equal(v, sb[ck.MODEL_KEY][k]), (a.name, k)
        drop = ("epoch_time_s", "throughput", "train_time_s")
        rows = [[{k: v for k, v in json.loads(x).items() if k not in drop}
                 for x in (r.results_dir / "metrics.jsonl").read_text().splitlines()] for r in (a, b)]
        assert rows[0] == rows[1]


def test_page_from_kept_results_only(tmp_path, fmnist_root, capsys):
    path = _study(tmp_path, fmnist_root, settings={**yaml.safe_load(_study(tmp_path, fmnist_root).read_text())
                                                    ["settings"], "train.epochs": 1})
    dirs = ["--out-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "res")]
    from spikevision.commands.study import run as study_run
    from spikevision.cli import build_parser

    assert study_run(build_parser().parse_args(["study", str(path), *dirs, "--seeds", "1"])) == 0
    page = (tmp_path / "res" / "tiny.md").read_text()
    assert "seeds still to run" in page  # only seed 1 so far
    assert study_run(build_parser().parse_args(["study", str(path), *dirs])) == 0
    shutil.rmtree(tmp_path / "runs")  # no checkpoint left: the page comes from the kept files
    (tmp_path / "res" / "tiny.md").unlink()
    assert main(["study", str(path), *dirs, "--report-only"]) == 0
    page = (tmp_path / "res" / "tiny.md").read_text()
    assert (tmp_path / "res" / "tiny.png").stat().st_size > 1000
    from PIL import Image

    with Image.open(tmp_path / "res" / "tiny.png") as im:  # two panels: curves, accuracy against energy
        assert im.size[0] > 1.5 * im.size[1]
    for arm in ("h16", "h8"):
        finals, energies = [], []
        for seed in (0, 1):
            folder = tmp_path / "res" / "tiny" / f"{arm}-s{seed}"
            finals.append(json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])["test_top1"])
            energies.append(json.loads((folder / MEASURES_FILE).read_text())["energy_uj"])
        row = next(line for line in page.splitlines() if line.startswith(f"| `{arm}`"))
        cells = [c.strip() for c in row.split("|")]
        assert cells[3] == "2"
        assert cells[4] == f"{statistics.fmean(finals):.2f} ± {statistics.stdev(finals):.2f}"
        assert cells[7] == f"{statistics.fmean(energies):.3g} ± {statistics.stdev(energies):.3g}"
    assert "Ranking by mean final top-1" in page and "--report-only" in page


SHIPPED_STUDIES = sorted((HERE.parents[1] / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_STUDIES, ids=lambda p: p.stem)
def test_shipped_studies_are_valid(path):
    """Every study in studies/ loads (recipe, settings and each arm's config validated) and plans
    at least two arms x two seeds."""
    spec = load_study(path)
    assert spec.claim and spec.title
    runs = plan_runs(spec)
    assert len(spec.arms) >= 2 and len(spec.seeds) >= 2 and len(runs) == len(spec.arms) * len(spec.seeds)


def test_there_are_shipped_studies():
    assert {"depth", "encoding", "spe", "residual", "timesteps"} <= {p.stem for p in SHIPPED_STUDIES}


@pytest.mark.parametrize("epochs", [1, 3])
def test_figure_curves_or_bars(tmp_path, epochs):
    """Several evaluations per run draw curves over epochs; one per run (a one-epoch budget) draws one bar per
    arm, starting at 0, with a tick label per arm."""
    import matplotlib

    matplotlib.use("Agg")
    from types import SimpleNamespace

    from spikevision.studies import ArmResult, page

    results = []
    for i, arm in enumerate(("a", "b")):
        curves = [[(e, 80.0 + i + e + s) for e in range(epochs)] for s in (0, 1)]
        results.append(ArmResult(arm, seeds=[0, 1], final=[c[-1][1] for c in curves], best=[c[-1][1] for c in curves],
                                 curves=curves, time_s=[1.0, 1.0], measures=[{"energy_uj": 1.0 + i}] * 2))
    captured = {}
    real_close = matplotlib.pyplot.close

    def keep(fig):
        captured["fig"] = fig
        real_close(fig)

    matplotlib.pyplot.close = keep
    try:
        assert page._plot(SimpleNamespace(title="t", name="t"), results, tmp_path / "f.png")
    finally:
        matplotlib.pyplot.close = real_close
    ax = captured["fig"].axes[0]
    assert (tmp_path / "f.png").stat().st_size > 1000
    if epochs == 1:
        assert len(ax.patches) == 2 and ax.get_ylim()[0] == 0.0
        assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    else:
        assert not ax.patches and len(ax.lines) == 2 and ax.get_xlabel() == "epoch"
        assert list(ax.lines[0].get_xdata()) == [1, 2, 3]


@pytest.mark.parametrize("path", SHIPPED_STUDIES, ids=lambda p: p.stem)
def test_shipped_study_pages_match_their_kept_results(path):
    """Each page in docs/studies/ is what ``--report-only`` writes from the kept results and the study's YAML
    (a claim, verdict or result edited on one side only fails here), and a finished study has its verdict."""
    from spikevision.studies import collect_results, render_study

    spec = load_study(path)
    docs = HERE.parents[1] / "docs" / "studies"
    results = collect_results(spec, docs)
    figure = f"{spec.name}.png" if (docs / f"{spec.name}.png").exists() else None
    page = (docs / f"{spec.name}.md").read_text()
    assert render_study(spec, results, figure) == page
    assert "**Incomplete**" in page or spec.verdict, f"{path.name}: every run is done but the study has no verdict"


def test_the_old_study_paths_still_work_with_a_warning(tmp_path):
    import spikevision.analysis.study_report as old_page
    import spikevision.studies as studies
    import spikevision.train.study as old_runner

    with pytest.warns(DeprecationWarning, match="moved to spikevision.studies.load_study"):
        assert old_runner.load_study is load_study
    with pytest.warns(DeprecationWarning, match="moved to spikevision.studies.render_study"):
        assert old_page.render_study is studies.render_study
    with pytest.raises(AttributeError):
        old_runner.no_such_name
    with pytest.warns(DeprecationWarning) as record, pytest.raises(ValueError, match="'h4'"):
        old_runner.run_study(studies.StudySpec("s", tmp_path / "s.yaml", arms={"h8": {}}), measure=print,
                             arms=["h4"])
    messages = [str(w.message) for w in record]
    assert any("moved to spikevision.studies.run_study" in m for m in messages), messages
    assert any("measure=...) is ignored" in m for m in messages), messages
