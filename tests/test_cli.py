"""The CLI as a user meets it: --version, the exit statuses, one-line errors (never a traceback), outputs
checked for writing before the work, progress on stderr, deprecated spellings.

Exit statuses (spikevision.commands): 1 the request cannot be carried out (missing or damaged file, unknown
name, weights that do not fit, unwritable output), 2 an invalid request (argparse, invalid recipe or study).
"""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import spikevision
from spikevision import commands
from spikevision.cli import main
from spikevision.deploy.weights import save_weights
from spikevision.models import create_model
from spikevision.train import checkpoint as ck
from spikevision.train.config import config_from_dict

TINY = {"T": 2, "dim": 6, "num_classes": 10}  # mlp_spe_mini, a few thousand parameters
# what a user could not act on, or must never be told for an untrusted file
FORBIDDEN = ("Traceback", "weights_only", "Re-running", "trusted source", "\x1b[")


def _tiny_run(tmp_path, idx_set, name: str = "run", kwargs: dict = TINY):
    """A run directory (checkpoint, config, one metrics line) over a tiny Fashion-MNIST with 6 test images."""
    idx_set(tmp_path / "fmnist", n_train=4, n_test=6)
    torch.manual_seed(0)
    model = create_model("mlp_spe_mini", **TINY)
    cfg = config_from_dict({"model": {"name": "mlp_spe_mini", **TINY},
                            "data": {"name": "fashion_mnist", "root": str(tmp_path / "fmnist"), "batch_size": 2}})
    run = tmp_path / name
    ck.save_checkpoint(run / ck.CHECKPOINT_DIR / ck.LAST, {
        ck.VERSION_KEY: ck.FORMAT_VERSION, ck.MODEL_KEY: model.state_dict(), ck.MODEL_NAME_KEY: "mlp_spe_mini",
        ck.MODEL_KWARGS_KEY: kwargs, ck.CONFIG_KEY: cfg.to_dict(), ck.EPOCH_KEY: 1, ck.STEP_KEY: 1})
    (run / ck.METRICS_FILE).write_text(json.dumps({"epoch": 0, "train_loss": 2.3, "test_top1": 10.0}) + "\n")
    return run


def _argv(command: str, target, tmp_path) -> list[str]:
    """The shortest invocation of each non-train command that loads ``target``."""
    extra = {"deploy": ["--out", str(tmp_path / "deployed")],
             "export": ["--format", "safetensors", "-o", str(tmp_path / "exported.safetensors")]}
    return [command, str(target), *extra.get(command, [])]


def _one_line_error(info, command: str) -> str:
    msg = str(info.value)
    assert msg.startswith(f"spikevision {command}: ") and "\n" not in msg, msg
    assert not any(bad in msg for bad in FORBIDDEN), msg
    return msg


def test_version_and_help(capsys):
    assert main(["version"]) == 0
    assert "spikevision" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"spikevision {spikevision.__version__}\n"
    out = subprocess.run([sys.executable, "-m", "spikevision", "--help"], capture_output=True, text=True, check=True)
    assert "COMMAND" in out.stdout and "exit status: 0 done; 1" in out.stdout


def test_smoke(capsys):
    assert main(["smoke", "--T", "2", "--batch-size", "2"]) == 0
    assert "all gradients finite: True" in capsys.readouterr().out


def test_output_into_a_closed_pipe_is_not_an_error():
    # `spikevision models | head -1`: the reader is gone; no BrokenPipeError traceback, exit 0
    r, w = os.pipe()
    os.close(r)  # closed before the command writes anything: every write fails with EPIPE
    # --no-macs: the listing without its shape-only forward passes (the pipe is what is tested); the
    # bound is for a hung process only, far above the few seconds this takes even on a loaded machine
    p = subprocess.run([sys.executable, "-m", "spikevision", "models", "--no-macs"], stdout=w,
                       stderr=subprocess.PIPE, timeout=600)
    os.close(w)
    err = p.stderr.decode()
    assert p.returncode == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


@pytest.mark.parametrize("command", ["eval", "profile", "report", "deploy", "export"])
def test_commands_report_a_missing_run_the_same_way(command, tmp_path):
    """One line ``spikevision <command>: ...`` and exit status 1, never a traceback."""
    with pytest.raises(SystemExit, match=f"^spikevision {command}: .*nowhere") as info:
        main(_argv(command, tmp_path / "nowhere" / "run", tmp_path))
    _one_line_error(info, command)


def _truncated(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _random_bytes(path):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _pickled_object(path):
    import argparse

    torch.save({"model": argparse.Namespace(x=1)}, path)  # a class weights_only refuses to unpickle


@pytest.mark.parametrize("damage", [_truncated, _random_bytes, _pickled_object])
def test_a_damaged_checkpoint_is_one_line_in_every_command(damage, tmp_path, idx_set):
    run = _tiny_run(tmp_path, idx_set)
    damage(run / ck.CHECKPOINT_DIR / ck.LAST)
    for command in ("eval", "profile", "report", "deploy", "export"):
        with pytest.raises(SystemExit) as info:
            main(_argv(command, run, tmp_path))
        assert "cannot be loaded as a checkpoint" in _one_line_error(info, command)
    assert not (tmp_path / "deployed").exists() and not (tmp_path / "exported.safetensors").exists()


def test_model_kwargs_that_do_not_fit_the_weights_are_one_line(tmp_path, idx_set):
    # a checkpoint whose stored kwargs (dim 12) do not fit its weights (dim 6)
    run = _tiny_run(tmp_path, idx_set, kwargs={**TINY, "dim": 12})
    for command in ("eval", "profile", "report", "deploy", "export"):
        with pytest.raises(SystemExit) as info:
            main(_argv(command, run, tmp_path))
        assert "cannot rebuild mlp_spe_mini" in _one_line_error(info, command)
    # a model name with --model-kwargs and --weights, for deploy and export
    weights = save_weights(create_model("mlp_spe_mini", **TINY), tmp_path / "w.safetensors",
                           model_name="mlp_spe_mini", model_kwargs=TINY)
    for command in ("deploy", "export"):
        base = _argv(command, "mlp_spe_mini", tmp_path) + ["--weights", str(weights)]
        for kwargs, expected in (({**TINY, "dim": 12}, "cannot rebuild mlp_spe_mini"),
                                 ({"no_such_arg": 1}, "unknown key --model-kwargs.no_such_arg for mlp_spe_mini")):
            with pytest.raises(SystemExit) as info:
                main(base + ["--model-kwargs", json.dumps(kwargs)])
            assert expected in _one_line_error(info, command)
        _random_bytes(tmp_path / "w.pt")
        with pytest.raises(SystemExit) as info:
            main(_argv(command, "mlp_spe_mini", tmp_path) + ["--weights", str(tmp_path / "w.pt")])
        assert "cannot be read as weights" in _one_line_error(info, command)
    # a safetensors file whose metadata kwargs do not fit its tensors
    bad = save_weights(create_model("mlp_spe_mini", **TINY), tmp_path / "bad.safetensors",
                       model_name="mlp_spe_mini", model_kwargs={**TINY, "dim": 12})
    for command in ("deploy", "export"):
        with pytest.raises(SystemExit) as info:
            main(_argv(command, bad, tmp_path))
        assert "cannot rebuild mlp_spe_mini" in _one_line_error(info, command)


@pytest.mark.parametrize("command", ["profile", "deploy", "export"])
def test_an_unknown_model_name_is_one_line(command, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(_argv(command, "ms_resnet_21", tmp_path))
    msg = _one_line_error(info, command)
    assert "unknown model 'ms_resnet_21'; did you mean" in msg and "ms_resnet20" in msg


@pytest.mark.parametrize("argv, message", [
    (["deploy", "mlp_spe_mini", "--model-kwargs", "{T: 2}"], "argument --model-kwargs: not valid JSON"),
    (["export", "mlp_spe_mini", "--format", "nir", "-o", "x.nir", "--model-kwargs", "[2]"],
     "argument --model-kwargs: expected a JSON object"),
    (["deploy", "mlp_spe_mini", "--limit", "0"], "argument --limit: must be >= 1, got 0"),
    (["profile", "mlp_spe_mini", "--batch-size", "0"], "argument --batch-size: must be >= 1"),
    (["eval", "runs/x", "--batch-size", "two"], "argument --batch-size: expected an integer"),
    (["export", "mlp_spe_mini", "--format", "c", "-o", "c", "--weight-bits", "four"], "argument --weight-bits"),
])
def test_usage_errors_exit_2_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and f"spikevision {argv[0]}: error: {message}" in err, err


def test_exit_statuses_of_commands_that_return_them(tmp_path, caplog, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("model:\n  name: mlp_spe_mini\ntrian:\n  epochs: 1\n")
    assert main(["train", "bad.yaml"]) == 2  # invalid recipe
    assert "spikevision train: invalid configuration" in caplog.text and "'train'" in caplog.text
    assert main(["train", "no_such_recipe.yaml"]) == 1  # missing file
    assert main(["train", "quickstart", "no_such_section.x=1"]) == 2  # invalid override
    (tmp_path / "study.yaml").write_text("title: t\narms: 3\n")
    assert main(["study", "study.yaml"]) == 2  # invalid study
    assert main(["study", "no_such_study"]) == 1  # missing file
    assert main(["export", "mlp_spe_mini", "--model-kwargs", json.dumps(TINY), "--format", "c", "-o", "c",
                 "--name", "1st"]) == 2  # option value
    assert "spikevision export: --name: name must be a C identifier" in caplog.text
    assert not (tmp_path / "c").exists()
    assert main(["deploy", "mlp_spe_mini", "--model-kwargs", json.dumps(TINY), "--weight-bits", "40"]) == 2
    assert "spikevision deploy: weight_bits must lie in [2, 24], got 40" in caplog.text


def test_the_process_exit_status_and_stderr(tmp_path):
    """The real process: one line on stderr, status 1 for a damaged file, 2 for a malformed option."""
    _random_bytes(tmp_path / "random.pt")
    cli = [sys.executable, "-m", "spikevision"]
    p = subprocess.run(cli + ["deploy", str(tmp_path / "random.pt")], capture_output=True, text=True, timeout=600)
    assert p.returncode == 1 and p.stderr.startswith("spikevision deploy: "), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not any(bad in p.stderr for bad in FORBIDDEN), p.stderr
    p = subprocess.run(cli + ["export", "mlp_spe_mini", "--format", "nir", "-o", str(tmp_path / "m.nir"),
                              "--model-kwargs", "{bad"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 2 and "argument --model-kwargs: not valid JSON" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "m.nir").exists()


def test_unwritable_outputs_fail_before_the_work(tmp_path, idx_set, capsys):
    run = _tiny_run(tmp_path, idx_set)
    (run / "eval.json").mkdir()  # eval.json cannot be written, even by root
    with pytest.raises(SystemExit) as info:
        main(["eval", str(run)])
    assert "eval.json (it is a folder)" in _one_line_error(info, "eval")
    assert capsys.readouterr().out == ""  # stopped before evaluating: no results printed, then lost
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as info:
        main(["deploy", str(run), "--out", str(blocker / "deploy")])
    assert f"cannot write {blocker / 'deploy' / 'audit.json'}" in _one_line_error(info, "deploy")
    with pytest.raises(SystemExit) as info:
        main(["export", str(run), "--format", "safetensors", "-o", str(blocker / "w.safetensors")])
    assert "is a file, not a folder" in _one_line_error(info, "export")
    assert capsys.readouterr().out == "" and blocker.read_text() == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_run_directory(tmp_path, idx_set, capsys):
    run = _tiny_run(tmp_path, idx_set)
    run.chmod(0o555)
    try:
        for command in ("eval", "report", "deploy"):
            with pytest.raises(SystemExit) as info:
                main([command, str(run)])
            assert "cannot write" in _one_line_error(info, command)
        assert capsys.readouterr().out == ""
    finally:
        run.chmod(0o755)


def test_progress_lines_of_eval_and_deploy(tmp_path, idx_set, caplog, capsys, monkeypatch):
    """Without a terminal, long loops write plain progress lines (here after every batch)."""
    monkeypatch.setattr(commands, "PROGRESS_EVERY_S", 0.0)
    caplog.set_level(logging.INFO)
    run = _tiny_run(tmp_path, idx_set)
    assert main(["eval", str(run), "--batch-size", "2"]) == 0
    assert "eval: 1/3 batches (33%)" in caplog.text and "eval: 2/3 batches (67%)" in caplog.text
    assert json.loads((run / "eval.json").read_text())["samples"] == 6
    caplog.clear()
    assert main(["deploy", str(run), "--batch-size", "2", "--audit-batch", "2", "--runtime", "python"]) == 0
    assert "deploy: agreement (python): 1/3 batches" in caplog.text
    assert "agreement on 6 fashion_mnist test images" in capsys.readouterr().out


def test_deploy_dataset_option_and_its_old_spelling(tmp_path, idx_set, capsys):
    idx_set(tmp_path / "fmnist", n_train=4, n_test=6)
    base = ["deploy", "mlp_spe_mini", "--model-kwargs", json.dumps(TINY), "--data-root", str(tmp_path / "fmnist"),
            "--batch-size", "3", "--audit-batch", "2"]
    assert main(base + ["--dataset", "fashion_mnist", "--out", str(tmp_path / "new")]) == 0
    assert "deprecated" not in capsys.readouterr().err
    assert main(base + ["--data", "fashion_mnist", "--out", str(tmp_path / "old")]) == 0
    assert "--data is deprecated and will be removed in the next release; use --dataset" in capsys.readouterr().err
    for out in ("new", "old"):
        agreement = json.loads((tmp_path / out / "agreement.json").read_text())
        assert agreement["data"] == "fashion_mnist" and agreement["samples"] == 6
