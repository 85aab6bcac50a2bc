"""`spikevision models` and `spikevision profile` on the registered zoo and a tiny model."""

import re

import pytest

from spikevision.cli import main
from spikevision.commands.models import model_macs_per_step
from spikevision.models import get_model_info, list_models


def test_models_table_lists_every_registered_name(capsys):
    assert main(["models", "--no-macs"]) == 0
    out = capsys.readouterr().out
    names = [i.name for i in list_models()]
    assert names, "no model registered"
    listed = {line.split()[0] for line in out.splitlines()[2:-1]}
    assert listed == set(names)
    assert f"{len(names)} models" in out


def test_models_family_filter(capsys):
    family = list_models()[0].family
    assert main(["models", "--family", family, "--no-macs"]) == 0
    out = capsys.readouterr().out
    assert all(line.split()[1] == family for line in out.splitlines()[2:-1])
    with pytest.raises(SystemExit, match="^spikevision models: unknown family 'no_such_family'"):
        main(["models", "--family", "no_such_family"])


def test_models_table_has_macs_by_default(capsys):
    assert main(["models", "--family", "spiking_cnn"]) == 0
    out = capsys.readouterr().out
    header, _, row = out.splitlines()[:3]
    assert header.split()[-1] == "MACs/step"
    # spiking_cnn_mini at 28x28: conv 1->32 at 28x28, conv 32->64 at 14x14, readout 64*7*7 -> 10
    macs = 1 * 32 * 9 * 28 * 28 + 32 * 64 * 9 * 14 * 14 + 64 * 7 * 7 * 10
    assert row.split()[-1] == f"{macs / 1e6:.2f}M"
    assert "spikevision quickstart network" in row
    assert main(["models", "--family", "spiking_mlp"]) == 0
    mini = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("mlp_spe_mini"))
    assert "(spikevision's size)" in mini


def test_macs_per_step_of_ms_resnet20_by_hand():
    hw = 32 * 32
    stem = 3 * 16 * 9 * hw
    stage1 = 6 * 16 * 16 * 9 * hw
    stage2 = 16 * 32 * 9 * hw // 4 + 5 * 32 * 32 * 9 * hw // 4 + 16 * 32 * hw // 4  # + projection
    stage3 = 32 * 64 * 9 * hw // 16 + 5 * 64 * 64 * 9 * hw // 16 + 32 * 64 * hw // 16
    fc = 64 * 10
    assert model_macs_per_step(get_model_info("ms_resnet20")) == stem + stage1 + stage2 + stage3 + fc


def test_profile_tiny_model(capsys):
    assert main(["profile", "ms_resnet20", "--T", "2", "--batch-size", "1", "--input-size", "3", "8", "8"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^stem\.module\.0\s+Conv2d\s+real\s+1\.000", out, re.M)
    assert re.search(r"^stages\.0\.0\.conv1\.module\s+Conv2d\s+binary", out, re.M)
    assert "convention: E = 4.6 pJ x MACs + 0.9 pJ x ACs" in out
    assert "final_neuron" in out  # spiking-layer rows
    # per-sample dense MACs at 8x8 by hand: every conv runs T = 2 times, the classifier once (on the T-mean)
    hw = 8 * 8
    per_step = (3 * 16 * 9 * hw + 6 * 16 * 16 * 9 * hw
                + (16 * 32 * 9 + 5 * 32 * 32 * 9 + 16 * 32) * hw // 4
                + (32 * 64 * 9 + 5 * 64 * 64 * 9 + 32 * 64) * hw // 16)
    total = 2 * per_step + 64 * 10
    assert f"dense MACs {total / 1e6:.3f}M" in out

def test_profile_event_model_gets_event_frames(capsys):
    """The registry says what a model takes: the DVS MS-ResNet gets [T, B, 2, H, W] spike frames, not images."""
    assert main(["profile", "ms_resnet20_dvs", "--T", "2", "--batch-size", "1", "--input-size", "2", "16", "16",
                 "--no-neurons"]) == 0
    out = capsys.readouterr().out
    assert "input [2, 1, 2, 16, 16] (random Bernoulli(0.1) event frames" in out
    assert re.search(r"^stem\.module\.0\s+Conv2d\s+binary", out, re.M)


def test_macs_per_step_of_event_models_use_frames():
    info = get_model_info("ms_resnet20_dvs")
    assert info.modality == "events"
    assert model_macs_per_step(info) == model_macs_per_step(get_model_info("spiking_resnet20_dvs"))


def test_profile_errors(tmp_path):
    with pytest.raises(SystemExit, match="^spikevision profile: unknown model 'no_such_net'"):
        main(["profile", "no_such_net"])
    with pytest.raises(SystemExit, match="^spikevision profile: .*no best.pt or last.pt"):
        main(["profile", str(tmp_path)])
    with pytest.raises(SystemExit, match="^spikevision profile: --test-batch needs a run directory"):
        main(["profile", "mlp_spe_mini", "--test-batch"])
    # model arguments the builder cannot take, an input the model cannot run on: one line each
    with pytest.raises(SystemExit, match="^spikevision profile: .*num_classes.*-3"):
        main(["profile", "mlp_spe_mini", "--T", "2", "--num-classes", "-3"])
    with pytest.raises(SystemExit, match=r"^spikevision profile: mlp_spe_mini cannot run on input \[1, 1, 8, 8\]"):
        main(["profile", "mlp_spe_mini", "--T", "1", "--batch-size", "1", "--input-size", "1", "8", "8"])
    import torch

    torch.save({"w": torch.zeros(1)}, tmp_path / "bare.pt")  # a bare state dict, not a checkpoint
    with pytest.raises(SystemExit, match="^spikevision profile: .*not a spikevision checkpoint"):
        main(["profile", str(tmp_path / "bare.pt")])


def test_profile_run_directory_with_its_data(tmp_path, capsys, caplog):
    import numpy as np
    import torch

    from spikevision.analysis import profile_model
    from spikevision.data import DataConfig, build_loader
    from spikevision.data.idx import write_idx
    from spikevision.models import create_model
    from spikevision.train import checkpoint as ck

    # a tiny MNIST in the real IDX format
    rng = np.random.default_rng(0)
    data_root = tmp_path / "mnist"
    data_root.mkdir()
    for prefix, n in (("train", 4), ("t10k", 3)):
        write_idx(data_root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(data_root / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8))
    torch.manual_seed(0)
    kwargs = {"num_classes": 10, "T": 2}
    model = create_model("mlp_spe_mini", **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # "trained" weights that differ from a fresh build
    data_cfg = {"name": "mnist", "root": str(data_root)}
    state = {ck.VERSION_KEY: ck.FORMAT_VERSION, ck.MODEL_KEY: model.state_dict(), ck.MODEL_NAME_KEY: "mlp_spe_mini",
             ck.MODEL_KWARGS_KEY: kwargs, ck.CONFIG_KEY: {"data": data_cfg}, ck.EPOCH_KEY: 1, ck.STEP_KEY: 7}
    run = tmp_path / "run"
    ck.save_checkpoint(run / "checkpoints" / "last.pt", state)

    caplog.set_level("INFO")
    assert main(["profile", str(run), "--test-batch", "--batch-size", "3", "--no-neurons"]) == 0
    out = capsys.readouterr().out
    assert "trained 7 steps" in out and "first test batch of mnist" in out and "input [3, 1, 28, 28]" in out
    assert "profile: one forward pass of mlp_spe_mini" in caplog.text  # progress: each stage on stderr
    # the old spelling --data works for one release, with a warning
    assert main(["profile", str(run), "--data", "--batch-size", "3", "--no-neurons"]) == 0
    old = capsys.readouterr()
    assert "first test batch of mnist" in old.out
    assert "--data is deprecated and will be removed in the next release; use --test-batch" in old.err
    # the same numbers as profiling the checkpointed model on that batch directly
    x, _ = next(iter(build_loader(DataConfig.from_dict({**data_cfg, "eval_batch_size": 3, "device": "cpu"}),
                                  "test")))
    ref = profile_model(model, x)
    assert f"ACs {ref.ops.totals['acs'] / 1e3:.3f}k" in out or f"ACs {ref.ops.totals['acs'] / 1e6:.3f}M" in out
    # a checkpoint file works too
    assert main(["profile", str(run / "checkpoints" / "last.pt"), "--no-neurons"]) == 0
    assert "random N(0,1) images" in capsys.readouterr().out


def test_profile_refuses_a_model_that_cannot_fit_before_building_it():
    with pytest.raises(SystemExit, match=r"^spikevision profile: mlp_spe_mini at T=100000000 needs about .* GiB"):
        main(["profile", "mlp_spe_mini", "--T", "100000000"])


def test_models_weights_prints_one_row_per_shipped_card(capsys):
    from spikevision.weights import available_weights, read_card

    assert main(["models", "--weights"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| model | family | trained on | test top-1 |")
    shipped = [(n, t) for n, tags in available_weights().items() for t in tags]
    assert len(lines) == 2 + len(shipped)
    for (name, tag), row in zip(shipped, lines[2:]):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0].startswith(f"`{name}`") and cells[2] == tag
        assert cells[3] == f"{read_card(name, tag)['test_top1']:.2f}%"


@pytest.mark.parametrize("card,expected", [
    ({"checkpoint": "last"}, "final epoch of a fixed schedule"),
    ({"checkpoint": "best", "config": {"data": {"holdout": 0.1}}},
     "best epoch on a validation split (10% of the training set held out)"),
    ({"checkpoint": "best", "config": {"data": {"holdout": 0.0}}}, "best epoch on the test set (test-selected)"),
    ({"checkpoint": "last", "protocol": "final epoch of the best of 3 seeds"}, "final epoch of the best of 3 seeds"),
])
def test_card_protocol_says_how_the_accuracy_was_selected(card, expected):
    from spikevision.analysis.card import card_protocol

    assert card_protocol(card) == expected
