"""Model cards and ``spikevision export RUN --format pretrained``: the card's accuracy is the whole test set's,
the written weights load back through create_model(pretrained=...)."""

import json

import torch

import spikevision.weights as W
from spikevision.analysis.card import build_card, git_commit
from spikevision.cli import main
from spikevision.data import DataConfig, build_loader
from spikevision.models import create_model
from spikevision.train import checkpoint as ck
from spikevision.weights import CARD_KEYS


def test_card_measures_the_final_checkpoint_on_every_test_image(trained_run):
    model, card = build_card(trained_run, "tiny", recipe="configs/x.yaml", batches=1, batch_size=4)
    assert set(CARD_KEYS) <= set(card)
    assert card["protocol"] == "final epoch of a fixed schedule"  # the last checkpoint: nothing test-selected
    state = ck.load_checkpoint(trained_run / "checkpoints" / "last.pt")
    for k, v in state[ck.MODEL_KEY].items():
        assert torch.equal(v, model.state_dict()[k]), k
    # accuracy counted by hand over the 12 test images
    data = DataConfig.from_dict({**state[ck.CONFIG_KEY]["data"], "device": "cpu"})
    correct = total = 0
    with torch.no_grad():
        for x, y in build_loader(data, "test"):
            correct += int((model.eval()(x).argmax(-1) == y).sum())
            total += len(y)
    assert card["test_samples"] == total == 12
    assert card["test_top1"] == round(100 * correct / total, 2)
    assert card["epochs"] == 2 and card["T"] == 2 and card["recipe"] == "configs/x.yaml"
    assert 0 <= card["firing_rate"] <= 1 and card["energy_uj"] > 0
    assert card["model_kwargs"] == state[ck.MODEL_KWARGS_KEY] and card["config"] == state[ck.CONFIG_KEY]
    # what a Hugging Face card carries, rendered from the run's own facts (never hand-typed)
    from spikevision.analysis.card import DOC_KEYS, card_documentation

    assert {k: card[k] for k in DOC_KEYS} == card_documentation(card)
    assert card["license"] == "bsd-3-clause" and card["citation"].startswith("@") and card["class_names"]
    assert card["preprocessing"]["mean"] == [0.286] and card["preprocessing"]["std"] == [0.353]
    assert card["machine"] == "; ".join(state[ck.MACHINES_KEY]) and "cores" in card["evaluated_on"]
    assert git_commit("/") == "unknown"


def test_export_pretrained_ships_weights_that_load_by_name(trained_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "weights"
    out.mkdir()
    assert main(["export", str(trained_run), "--format", "pretrained", "--tag", "tiny_fmnist", "-o", str(out)]) == 0
    assert "test top-1" in capsys.readouterr().out
    card = json.loads((out / "mlp_spe_mini.tiny_fmnist.json").read_text())
    monkeypatch.setattr(W, "WEIGHTS_DIR", out)
    model = create_model("mlp_spe_mini", pretrained="tiny_fmnist")
    state = ck.load_checkpoint(trained_run / "checkpoints" / "last.pt")
    for k, v in state[ck.MODEL_KEY].items():
        assert torch.equal(v, model.state_dict()[k]), k
    assert card["tag"] == "tiny_fmnist"
    assert main(["export", str(trained_run), "--format", "pretrained", "-o", str(out)]) == 2  # no --tag
    assert main(["export", str(out), "--format", "pretrained", "--tag", "x", "-o", str(out)]) == 1  # not a run


def test_float16_export_measures_the_weights_it_ships(trained_run, tmp_path, monkeypatch):
    out = tmp_path / "weights"
    out.mkdir()
    assert main(["export", str(trained_run), "--format", "pretrained", "--tag", "half", "--dtype", "float16",
                 "-o", str(out)]) == 0
    card = json.loads((out / "mlp_spe_mini.half.json").read_text())
    assert card["weights_dtype"] == "float16"
    monkeypatch.setattr(W, "WEIGHTS_DIR", out)
    model = create_model("mlp_spe_mini", pretrained="half").eval()
    state = ck.load_checkpoint(trained_run / "checkpoints" / "last.pt")
    for k, v in state[ck.MODEL_KEY].items():
        want = v.half().float() if v.is_floating_point() else v
        assert torch.equal(model.state_dict()[k], want), k
    # the card's accuracy is that of the rounded weights, counted by hand
    data = DataConfig.from_dict({**state[ck.CONFIG_KEY]["data"], "device": "cpu"})
    with torch.no_grad():
        correct = sum(int((model(x).argmax(-1) == y).sum()) for x, y in build_loader(data, "test"))
    assert card["test_top1"] == round(100 * correct / card["test_samples"], 2)
    assert main(["export", str(trained_run), "--format", "nir", "--dtype", "float16",
                 "-o", str(tmp_path / "m.nir")]) == 2


def _seed_run(trained_run, folder, seed: int, top1: float, **changes):
    """A copy of ``trained_run`` as if trained with ``seed`` (and the config ``changes``), ending at ``top1``."""
    import shutil

    import yaml

    run = folder / f"seed{seed}"
    shutil.copytree(trained_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["seed"], config["run"]["name"], config["train"]["threads"] = seed, f"seed{seed}", 2
    for key, value in changes.items():
        section, name = key.split(".")
        if value is None:  # as a config of an older version, without the entry: its default applies
            del config[section][name]
        else:
            config[section][name] = value
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    records[-1]["test_top1"] = top1
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_seed_runs_give_the_card_each_seed_and_their_mean_and_std(trained_run, tmp_path, monkeypatch):
    import statistics

    from spikevision.analysis.card import weights_table

    s1 = _seed_run(trained_run, tmp_path, 1, 91.25)
    s2 = _seed_run(trained_run, tmp_path, 2, 92.5, **{"train.tet_lambda": None})  # the default, not written
    out = tmp_path / "weights"
    out.mkdir()
    assert main(["export", str(trained_run), "--format", "pretrained", "--tag", "seeds", "-o", str(out),
                 "--seed-runs", str(s1), str(s2)]) == 0
    card = json.loads((out / "mlp_spe_mini.seeds.json").read_text())
    own = card["logged_test_top1"]
    values = [own, 91.25, 92.5]
    assert card["seeds"]["test_top1"] == {"0": round(own, 2), "1": 91.25, "2": 92.5} and card["seeds"]["runs"] == 3
    assert card["seeds"]["mean"] == round(statistics.mean(values), 2)
    assert card["seeds"]["std"] == round(statistics.stdev(values), 2)
    monkeypatch.setattr(W, "WEIGHTS_DIR", out)
    assert f"(3 seeds: {statistics.mean(values):.2f} +- {statistics.stdev(values):.2f})" in weights_table("seeds")


def test_seed_runs_that_are_not_the_recipe_or_unfinished_are_refused(trained_run, tmp_path, caplog):
    out = tmp_path / "weights"
    out.mkdir()
    other_lr = _seed_run(trained_run, tmp_path, 1, 90.0, **{"optim.lr": 0.1})
    same_seed = _seed_run(trained_run, tmp_path, 0, 90.0)
    unfinished = _seed_run(trained_run, tmp_path, 3, 90.0, **{"train.epochs": 5})
    base = ["export", str(trained_run), "--format", "pretrained", "--tag", "bad", "-o", str(out), "--seed-runs"]
    for run, message in ((other_lr, "differs in optim.lr"), (same_seed, "seed 0, already counted"),
                         (unfinished, "last logged epoch is 2 of 5")):
        caplog.clear()
        assert main(base + [str(run)]) == 1
        assert message in caplog.text
    assert main(base + [str(tmp_path / "nowhere")]) == 1
    assert not list(out.iterdir())  # nothing written
    assert main(["export", str(trained_run), "--format", "nir", "-o", str(tmp_path / "m.nir"),
                 "--seed-runs", str(other_lr)]) == 2
