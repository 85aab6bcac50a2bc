"""The engine end to end on the tiny model and tiny IDX files: run directory, eval, NaN stop,
SIGKILL mid-epoch then --resume equal bit for bit to an uninterrupted run, SIGTERM saves."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from conftest import ENTRY, HERE, tiny_overrides
from spikevision.cli import main
from spikevision.train import checkpoint as ck
from spikevision.train.checkpoint import LAST
from spikevision.train.config import load_config
from spikevision.train.engine import NonFiniteLossError, fit, setup

PY = sys.executable


def _child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return env


def test_short_run_writes_run_directory_and_eval_reads_it(fmnist_root, tmp_path, recipe, capsys, caplog):
    out = tmp_path / "runs"
    assert main(["train", str(recipe), *tiny_overrides(fmnist_root, out)]) == 0
    run = out / "tiny"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"] == {"name": "tiny_snn_test"}
    assert saved["train"]["epochs"] == 3 and saved["data"]["root"] == str(fmnist_root)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1, 2] and [r["step"] for r in lines] == [8, 16, 24]
    for key in ("train_loss", "train_top1", "train_top5", "lr", "throughput", "epoch_time_s", "test_top1",
                "test_top5", "firing_rate"):
        assert all(key in r for r in lines), key
    assert 0.0 < lines[-1]["firing_rate"] < 1.0
    assert lines[-1]["test_top1"] > 50  # the banded pattern is easy; 10% is chance
    assert list(run.glob("events.out.tfevents.*"))
    state = torch.load(run / "checkpoints" / LAST, weights_only=True)  # loadable without unpickling classes
    assert state[ck.MODEL_NAME_KEY] == "tiny_snn_test" and state[ck.MODEL_KWARGS_KEY] == {"num_classes": 10}
    assert state[ck.EPOCH_KEY] == 3 and state[ck.STEP_KEY] == 24 and state[ck.EPOCH_STEP_KEY] == 0
    assert state[ck.CONFIG_KEY] == saved
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best[ck.BEST_KEY] == max(r["test_top1"] for r in lines)

    capsys.readouterr()
    assert main(["eval", str(run), "--checkpoint", "last"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((run / "eval.json").read_text())
    assert result["test_top1"] == pytest.approx(lines[-1]["test_top1"])  # same weights, same test set
    assert result["firing_rate"] == pytest.approx(lines[-1]["firing_rate"])
    assert result["parameters"] == 28 * 28 * 16 + 16 + 16 * 10 + 10
    assert f"{lines[-1]['test_top1']:.2f}%" in printed

    # a second start over the same run is refused; --resume of a finished run does nothing
    assert main(["train", str(recipe), *tiny_overrides(fmnist_root, out)]) == 1
    assert main(["train", str(recipe), *tiny_overrides(fmnist_root, out), "--resume"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    # resuming with another architecture is refused, naming both
    assert main(["train", str(recipe), *tiny_overrides(fmnist_root, out, **{"model.hidden": 8}), "--resume"]) == 1
    assert "the checkpoint holds tiny_snn_test" in caplog.text and "'hidden': 8" in caplog.text


def test_tet_and_amp_run(fmnist_root, tmp_path, recipe):
    args = tiny_overrides(fmnist_root, tmp_path, "tet", **{"train.loss": "tet", "train.amp": True,
                                                            "train.clip_grad": 1.0, "run.tensorboard": False})
    assert main(["train", str(recipe), *args]) == 0
    recs = [json.loads(x) for x in (tmp_path / "tet" / "metrics.jsonl").read_text().splitlines()]
    # it learns: the loss falls and the class-coded bands are found far above chance (10%)
    assert recs[-1]["train_loss"] < recs[0]["train_loss"] and recs[-1]["test_top1"] >= 50, recs


def test_nan_loss_stops_and_keeps_last_good_checkpoint(fmnist_root, tmp_path, recipe):
    cfg = load_config(recipe, tiny_overrides(fmnist_root, tmp_path, "nan", **{"train.ckpt_every_steps": 2,
                                                                              "run.tensorboard": False}))
    tr = setup(cfg)
    real_loss, calls = tr.loss_fn, []

    def loss_fn(logits, target):  # the 7th step's loss is NaN
        calls.append(1)
        value = real_loss(logits, target)
        return value * float("nan") if len(calls) == 7 else value

    tr.loss_fn = loss_fn
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 0, step 6.*last good checkpoint"):
        fit(tr)
    state = ck.load_checkpoint(tmp_path / "nan" / "checkpoints" / LAST)
    assert state[ck.STEP_KEY] == 6 and state[ck.EPOCH_STEP_KEY] == 6
    assert all(torch.isfinite(v).all() for v in state[ck.MODEL_KEY].values())
    # the NaN step never touched the weights in memory either
    assert all(torch.equal(v, tr.model.state_dict()[k]) for k, v in state[ck.MODEL_KEY].items())


_KILLER = """
import os, signal, sys, torch
sys.argv = [sys.argv[0]] + sys.argv[2:]
import tiny_model
from spikevision.cli import main
torch.set_num_threads(1)
kill_at, step = int(os.environ["KILL_AT_STEP"]), torch.optim.SGD.step
def killing_step(self, *a, **k):
    killing_step.calls += 1
    if killing_step.calls == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # no handler can run: as if the machine died
    return step(self, *a, **k)
killing_step.calls = 0
torch.optim.SGD.step = killing_step
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_mid_epoch_then_resume_is_bit_identical(fmnist_root, tmp_path, recipe):
    # 8 steps per epoch, checkpoint every 3 steps; killed before step 14 -> resumes from step 12 = epoch 1, batch 4
    extra = {"train.ckpt_every_steps": 3, "run.tensorboard": False}
    args = ["train", str(recipe), *tiny_overrides(fmnist_root, tmp_path, "killed", **extra)]
    env = _child_env() | {"KILL_AT_STEP": "14"}
    p = subprocess.run([PY, "-c", _KILLER, "x", *args], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    ckpt = tmp_path / "killed" / "checkpoints" / LAST
    state = ck.load_checkpoint(ckpt)
    assert (state[ck.EPOCH_KEY], state[ck.EPOCH_STEP_KEY], state[ck.STEP_KEY]) == (1, 4, 12)
    p = subprocess.run([PY, str(ENTRY), *args, "--resume"], env=_child_env(), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr

    assert main(["train", str(recipe), *tiny_overrides(fmnist_root, tmp_path, "straight", **extra)]) == 0
    resumed = ck.load_checkpoint(ckpt)
    straight = ck.load_checkpoint(tmp_path / "straight" / "checkpoints" / LAST)
    assert resumed[ck.STEP_KEY] == straight[ck.STEP_KEY] == 24
    for k, v in straight[ck.MODEL_KEY].items():
        assert torch.equal(v, resumed[ck.MODEL_KEY][k]), k
    for a, b in zip(straight[ck.OPTIMIZER_KEY]["state"].values(), resumed[ck.OPTIMIZER_KEY]["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    drop = ("epoch_time_s", "throughput", "train_time_s")
    rows = [[{k: v for k, v in json.loads(x).items() if k not in drop}
             for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()] for name in ("straight", "killed")]
    assert rows[0] == rows[1]  # the interrupted epoch's metrics too (its partial sums were checkpointed)


def test_sigterm_saves_checkpoint_and_exits(fmnist_root, tmp_path, recipe):
    args = ["train", str(recipe), *tiny_overrides(fmnist_root, tmp_path, "term", **{"train.epochs": 400,
                                                                                  "run.tensorboard": False})]
    proc = subprocess.Popen([PY, str(ENTRY), *args], env=_child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "term" / "metrics.jsonl"
    deadline = time.time() + 90
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM" in err and "--resume" in err
    state = ck.load_checkpoint(tmp_path / "term" / "checkpoints" / LAST)
    assert 8 <= state[ck.STEP_KEY] < 400 * 8
