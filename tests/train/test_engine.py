"""The engine end to end on the tiny model and tiny IDX files: run directory, eval, NaN stop,
SIGKILL mid-epoch then --resume equal bit for bit to an uninterrupted run, SIGTERM saves; --resume with
changed optimiser settings, one process per run directory, progress lines in a log, a full disk."""

import io
import json
import logging
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from train_support import ENTRY, child_env, run_killed_at, tiny_overrides
from spikevision.cli import main
from spikevision.train import checkpoint as ck
from spikevision.train.checkpoint import LAST
from spikevision.train.config import load_config
from spikevision.train.engine import NonFiniteLossError, fit, progress_lines, setup, train
from spikevision.train.optim import lr_factor

PY = sys.executable


def test_holdout_trains_on_the_rest_and_chooses_best_pt_on_it_never_on_the_test_set(fmnist_root, tmp_path, recipe):
    out = tmp_path / "runs"
    assert main(["train", str(recipe), *tiny_overrides(fmnist_root, out, **{"data.holdout": 0.25})]) == 0
    run = out / "tiny"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [6, 12, 18]  # 64 training images, 16 held out: 6 batches of 8
    for r in lines:
        assert {"holdout_loss", "holdout_top1", "holdout_top5", "test_top1"} <= set(r)
        assert r["holdout_top1"] * 16 / 100 == pytest.approx(round(r["holdout_top1"] * 16 / 100))  # 16 images
    chosen = max(range(len(lines)), key=lambda i: (lines[i]["holdout_top1"], -i))  # the first best epoch
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best[ck.BEST_KEY] == lines[chosen]["holdout_top1"] and best[ck.EPOCH_KEY] == chosen + 1


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
    assert not (run / "checkpoints" / "best.pt").exists()  # no holdout: no checkpoint is chosen on the test set

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


@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled, but CUDA is not available")  # cuda asked
@pytest.mark.parametrize("has_bf16", [False, True])
def test_amp_auto_uses_bf16_only_on_a_cpu_that_has_it(recipe, monkeypatch, caplog, has_bf16):
    from spikevision.train import engine

    monkeypatch.setattr(engine, "cpu_has_bf16", lambda: has_bf16)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    auto = load_config(recipe, ["train.amp=auto"])
    assert engine.build_amp(auto, cpu)[0] == (torch.bfloat16 if has_bf16 else None)
    assert engine.build_amp(auto, cuda)[0] == torch.float16
    caplog.set_level(logging.WARNING, logger="spikevision.train")
    assert engine.build_amp(load_config(recipe, ["train.amp=true"]), cpu)[0] == torch.bfloat16  # asked: honoured
    assert ("no bf16 instructions" in caplog.text) is not has_bf16
    assert engine.build_amp(load_config(recipe, ["train.amp=false"]), cpu)[0] is None


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


def test_sigkill_mid_epoch_then_resume_is_bit_identical(fmnist_root, tmp_path, recipe):
    # 8 steps per epoch, checkpoint every 3 steps; killed before step 14 -> resumes from step 12 = epoch 1, batch 4
    extra = {"train.ckpt_every_steps": 3, "run.tensorboard": False}
    args = ["train", str(recipe), *tiny_overrides(fmnist_root, tmp_path, "killed", **extra)]
    p = run_killed_at(14, args)
    assert p.returncode == -signal.SIGKILL, p.stderr
    ckpt = tmp_path / "killed" / "checkpoints" / LAST
    state = ck.load_checkpoint(ckpt)
    assert (state[ck.EPOCH_KEY], state[ck.EPOCH_STEP_KEY], state[ck.STEP_KEY]) == (1, 4, 12)
    p = subprocess.run([PY, str(ENTRY), *args, "--resume"], env=child_env(), capture_output=True, text=True,
                       timeout=600)
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
    proc = subprocess.Popen([PY, str(ENTRY), *args], env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "term" / "metrics.jsonl"
    deadline = time.time() + 600  # bounds against a hang only: a loaded machine is slow, not wrong
    while (not (metrics.exists() and metrics.read_text().count("\n") >= 1) and proc.poll() is None
           and time.time() < deadline):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM" in err and "--resume" in err
    state = ck.load_checkpoint(tmp_path / "term" / "checkpoints" / LAST)
    assert 8 <= state[ck.STEP_KEY] < 400 * 8


def test_resume_applies_changed_optimiser_and_schedule(fmnist_root, tmp_path, recipe, caplog):
    base = {"train.epochs": 1, "run.tensorboard": False}
    assert main(["train", str(recipe), *tiny_overrides(fmnist_root, tmp_path, "retune", **base)]) == 0
    changed = {**base, "train.epochs": 2, "optim.lr": 0.01, "optim.momentum": 0.5, "optim.weight_decay": 1e-3,
               "sched.min_lr": 1e-3}
    cfg = load_config(recipe, tiny_overrides(fmnist_root, tmp_path, "retune", **changed))
    caplog.set_level(logging.INFO, logger="spikevision.train")
    tr = setup(cfg, resume=True)
    assert ("--resume: optim.lr 0.1 -> 0.01, optim.momentum 0.9 -> 0.5, optim.weight_decay 0.0 -> 0.001, "
            "sched.min_lr 0.0 -> 0.001, train.epochs 1 -> 2; applied from step 8 on") in caplog.text
    decay, no_decay = tr.optimizer.param_groups
    assert (decay["momentum"], decay["weight_decay"], no_decay["momentum"], no_decay["weight_decay"]) == (
        0.5, 1e-3, 0.5, 0.0)
    assert tr.scheduler.base_lrs == [0.01, 0.01] and tr.optimizer.state  # the momentum buffers were loaded
    used = []  # the rate each optimiser step actually uses
    tr.optimizer.register_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
    fit(tr)
    tr.lock.release()
    expected = [0.01 * lr_factor(step, cfg.sched, 0.01, 8, 2) for step in range(8, 16)]
    assert used == expected and expected[0] != expected[-1]
    assert json.loads((tmp_path / "retune" / "metrics.jsonl").read_text().splitlines()[-1])["lr"] == pytest.approx(
        0.01 * lr_factor(16, cfg.sched, 0.01, 8, 2))


def test_resume_with_another_batch_size_keeps_the_schedule_position(fmnist_root, tmp_path, recipe, caplog):
    base = {"train.epochs": 1, "run.tensorboard": False}  # 64 images: 8 steps of 8 per epoch
    assert main(["train", str(recipe), *tiny_overrides(fmnist_root, tmp_path, "rebatch", **base)]) == 0
    cfg = load_config(recipe, tiny_overrides(fmnist_root, tmp_path, "rebatch", **{**base, "train.epochs": 2,
                                                                                   "data.batch_size": 16}))
    caplog.set_level(logging.INFO, logger="spikevision.train")
    tr = setup(cfg, resume=True)
    assert "8 -> 4 steps per epoch (global batch 8 -> 16)" in caplog.text
    assert (tr.state.epoch, tr.state.step, tr.state.epoch_step, tr.scheduler.last_epoch) == (1, 4, 0, 4)
    assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * lr_factor(4, cfg.sched, 0.1, 4, 2))
    fit(tr)
    tr.lock.release()
    steps = [json.loads(x)["step"] for x in (tmp_path / "rebatch" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [8, 8]  # epoch 1 took 4 steps of 16

    # stopped mid-epoch (batch 4 of 8 of epoch 1): the samples already seen are skipped, rounded down
    last = tmp_path / "rebatch" / "checkpoints" / LAST
    state = ck.load_checkpoint(last)
    state.update({ck.EPOCH_KEY: 1, ck.EPOCH_STEP_KEY: 3, ck.STEP_KEY: 7,
                  ck.LAYOUT_KEY: {"batches": 4, "global_batch": 16}})
    ck.save_checkpoint(last, state)
    cfg = load_config(recipe, tiny_overrides(fmnist_root, tmp_path, "rebatch", **{**base, "train.epochs": 2,
                                                                                   "data.batch_size": 12}))
    tr = setup(cfg, resume=True)  # 3 batches of 16 = 48 samples = 4 batches of 12; 64 // 12 = 5 per epoch
    assert (tr.state.epoch, tr.state.step, tr.state.epoch_step, tr.scheduler.last_epoch) == (1, 9, 4, 9)
    tr.lock.release()


def test_resume_after_a_stop_between_metrics_line_and_checkpoint_keeps_one_line_per_epoch(
        fmnist_root, tmp_path, recipe):
    base = {"train.epochs": 1, "run.tensorboard": False}
    assert main(["train", str(recipe), *tiny_overrides(fmnist_root, tmp_path, "dup", **base)]) == 0
    run = tmp_path / "dup"
    after_epoch_0 = (run / "checkpoints" / LAST).read_bytes()
    longer = tiny_overrides(fmnist_root, tmp_path, "dup", **{**base, "train.epochs": 2})
    assert main(["train", str(recipe), *longer, "--resume"]) == 0
    once = (run / "metrics.jsonl").read_text().splitlines()
    # as if stopped after epoch 1's line was written but before its checkpoint, mid-write of another line
    (run / "checkpoints" / LAST).write_bytes(after_epoch_0)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 1, "st')
    assert main(["train", str(recipe), *longer, "--resume"]) == 0
    again = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in again] == [0, 1]
    drop = ("epoch_time_s", "throughput", "train_time_s")
    strip = lambda line: {k: v for k, v in json.loads(line).items() if k not in drop}  # noqa: E731
    assert [strip(x) for x in again] == [strip(x) for x in once]  # the redone epoch is the same epoch


def test_checkpoint_records_every_machine_the_run_trained_on(fmnist_root, tmp_path, recipe, monkeypatch):
    from spikevision.train import run_log

    base = {"train.epochs": 1, "run.tensorboard": False}
    assert main(["train", str(recipe), *tiny_overrides(fmnist_root, tmp_path, "where", **base)]) == 0
    last = tmp_path / "where" / "checkpoints" / LAST
    here = run_log.machine_description()
    assert "cores" in here and ck.load_checkpoint(last)[ck.MACHINES_KEY] == [here]
    longer = tiny_overrides(fmnist_root, tmp_path, "where", **{**base, "train.epochs": 2})
    assert main(["train", str(recipe), *longer, "--resume"]) == 0  # the same machine: one entry
    assert ck.load_checkpoint(last)[ck.MACHINES_KEY] == [here]
    monkeypatch.setattr(run_log, "machine_description", lambda: "other box")
    assert main(["train", str(recipe), *tiny_overrides(fmnist_root, tmp_path, "where", **{**base, "train.epochs": 3}),
                 "--resume"]) == 0
    assert ck.load_checkpoint(last)[ck.MACHINES_KEY] == [here, "other box"]
    # a checkpoint written before machines were recorded: its earlier training is said to be unknown
    state = ck.load_checkpoint(last)
    del state[ck.MACHINES_KEY]
    ck.save_checkpoint(last, state)
    tr = setup(load_config(recipe, longer), resume=True)
    tr.lock.release()
    assert tr.state.machines == [run_log.UNRECORDED_MACHINE, "other box"]
    assert run_log.machine_history(["a", "b"], True, "a") == ["a", "b", "a"]  # back on a: listed again
    assert run_log.machine_history(None, False, "a") == ["a"]


def test_resume_refuses_optimiser_changes_that_cannot_carry_its_state(fmnist_root, tmp_path, recipe):
    base = {"train.epochs": 1, "run.tensorboard": False}
    assert main(["train", str(recipe), *tiny_overrides(fmnist_root, tmp_path, "fixed", **base)]) == 0
    for change, message in ((("optim.name", "adamw"),), r"optim.name='sgd' \(now 'adamw'\)"), \
                           ((("optim.no_decay_1d", False),), r"optim.no_decay_1d=True \(now False\)"):
        cfg = load_config(recipe, tiny_overrides(fmnist_root, tmp_path, "fixed", **base, **dict(change)))
        with pytest.raises(ValueError, match=rf"--resume cannot change {message}.*run.name="):
            setup(cfg, resume=True)


_HOLDER = """
import sys, torch
sys.argv = [sys.argv[0]] + sys.argv[2:]
import tiny_model
from spikevision.cli import main
torch.set_num_threads(1)
step, calls = torch.optim.SGD.step, []
def paused_step(self, *a, **k):  # before steps 1 and 2: say so on stdout, go on after a line on stdin
    calls.append(1)
    if len(calls) <= 2:
        print(f"paused before step {len(calls)}", flush=True)
        sys.stdin.readline()
    return step(self, *a, **k)
torch.optim.SGD.step = paused_step
sys.exit(main(sys.argv[1:]))
"""


def _expect_line(proc, line):
    got = proc.stdout.readline()  # blocks until the holder reaches the pause (or dies: "")
    if got != line:
        proc.kill()
        pytest.fail(f"expected {line!r} from the holder, got {got!r}; its stderr:\n{proc.communicate()[1]}")


def _snapshot(folder):
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def _refused(args, run, holder):
    """A second process on ``run``: exit status 1, one line naming the directory and the holder, nothing written."""
    before = _snapshot(run)
    p = subprocess.run([PY, str(ENTRY), *args], env=child_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 1, p.stderr
    busy = [x for x in p.stderr.splitlines() if "in use" in x]
    assert len(busy) == 1 and "Traceback" not in p.stderr, p.stderr
    assert f"run directory {run} is in use by another spikevision run (process {holder.pid})" in busy[0]
    assert _snapshot(run) == before  # nothing written, nothing touched


def test_one_process_per_run_directory(fmnist_root, tmp_path, recipe):
    """Process 1 trains and pauses; a second start and a concurrent --resume fail at once, writing nothing;
    once process 1 is SIGKILLed its lock is gone and the run resumes."""
    extra = {"train.epochs": 1, "train.ckpt_every_steps": 1, "run.tensorboard": False}
    args = ["train", str(recipe), *tiny_overrides(fmnist_root, tmp_path, "busy", **extra)]
    run = tmp_path / "busy"
    holder = subprocess.Popen([PY, "-c", _HOLDER, "x", *args], env=child_env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _expect_line(holder, "paused before step 1\n")  # set up, no checkpoint yet
        _refused(args, run, holder)  # the same run.name started again
        holder.stdin.write("\n")
        holder.stdin.flush()
        _expect_line(holder, "paused before step 2\n")  # step 1 done and checkpointed
        assert ck.load_checkpoint(run / "checkpoints" / LAST)[ck.STEP_KEY] == 1
        _refused([*args, "--resume"], run, holder)  # a concurrent --resume
        holder.kill()  # SIGKILL while it holds the lock: no handler runs, the kernel drops the lock
        holder.communicate()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.communicate()
    assert main([*args, "--resume"]) == 0
    assert ck.load_checkpoint(run / "checkpoints" / LAST)[ck.STEP_KEY] == 8


def test_progress_lines_follow_the_clock(caplog):
    caplog.set_level(logging.INFO, logger="spikevision.train")
    ticks = iter(range(0, 1000, 10))  # every call of the clock is 10 s later
    clock = lambda: float(next(ticks))  # noqa: E731
    assert list(progress_lines(range(8), 8, "epoch 0", 30.0, clock, status=lambda: "loss 1.0000")) == list(range(8))
    assert [r.getMessage() for r in caplog.records] == [
        "epoch 0: 3/8 batches (38%), 0.10 batches/s, about 50s left, loss 1.0000",
        "epoch 0: 6/8 batches (75%), 0.10 batches/s, about 20s left, loss 1.0000"]
    caplog.clear()
    ticks = iter(range(0, 1000, 40))  # a resumed epoch: 5 of 12 batches done before
    assert len(list(progress_lines(range(7), 12, "epoch 2", 60.0, clock, done=5))) == 7
    assert [r.getMessage() for r in caplog.records] == [
        "epoch 2: 7/12 batches (58%), 0.03 batches/s, about 3m20s left",
        "epoch 2: 9/12 batches (75%), 0.03 batches/s, about 2m00s left",
        "epoch 2: 11/12 batches (92%), 0.03 batches/s, about 40s left"]


@pytest.mark.parametrize("progress,lines", [("auto", 2), ("off", 0)])
def test_training_into_a_log_file_prints_progress_lines(fmnist_root, tmp_path, recipe, caplog, monkeypatch,
                                                        progress, lines):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    cfg = load_config(recipe, tiny_overrides(fmnist_root, tmp_path, f"progress-{progress}", **{
        "train.epochs": 1, "run.tensorboard": False, "run.progress": progress, "run.progress_every_s": 30,
        "data.eval_batch_size": 8}))
    tr = setup(cfg)
    ticks = iter(range(0, 10_000, 10))
    tr.clock = lambda: float(next(ticks))
    caplog.set_level(logging.INFO, logger="spikevision.train")
    fit(tr)
    tr.lock.release()
    found = [r.getMessage() for r in caplog.records if "batches/s" in r.getMessage()]
    train = [x for x in found if x.startswith("epoch 0: ")]
    assert len(train) == lines and all(re.fullmatch(r"epoch 0: [36]/8 batches \(\d+%\), 0\.10 batches/s, about "
                                                    r"\d+s left, loss \d\.\d{4}", x) for x in train), found
    tests = [x for x in found if x.startswith("epoch 0 test: ")]  # the evaluation after the epoch: 5 batches of 8
    assert len(tests) == lines // 2 and all(re.fullmatch(r"epoch 0 test: 3/5 batches \(60%\), 0\.10 batches/s, "
                                                         r"about 20s left", x) for x in tests), found
    assert len(found) == len(train) + len(tests)


def test_full_disk_during_training_keeps_the_last_good_checkpoint(fmnist_root, tmp_path, recipe, monkeypatch):
    cfg = load_config(recipe, tiny_overrides(fmnist_root, tmp_path, "full", **{"train.epochs": 2,
                                                                              "run.tensorboard": False,
                                                                              "data.holdout": 0.25}))
    real_save, calls = torch.save, []

    def save(obj, f, *a, **k):  # epoch 0's last.pt and best.pt are written; then the disk is full
        calls.append(1)
        if len(calls) <= 2:
            return real_save(obj, f, *a, **k)
        f.write(b"PK\x03\x04")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4480 vs 4374")

    monkeypatch.setattr(torch, "save", save)
    last = tmp_path / "full" / "checkpoints" / LAST
    with pytest.raises(ck.CheckpointWriteError) as e:
        train(cfg)
    assert str(e.value) == (f"no space left on device writing {last}; last good checkpoint {last} kept; free some "
                            "space, then continue with --resume")
    assert ck.load_checkpoint(last)[ck.EPOCH_KEY] == 1
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.pt", "last.pt"]  # no temporary file left
    monkeypatch.setattr(torch, "save", real_save)  # space freed: the run continues (its lock was released)
    assert train(cfg, resume=True)["epoch"] == 1
    assert ck.load_checkpoint(last)[ck.EPOCH_KEY] == 2
