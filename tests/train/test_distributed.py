"""DDP with real processes (gloo on CPU): equality with one process, and what a frozen rank does.

* Two torchrun processes with half the batch each end with the parameters *and BatchNorm statistics* of one
  process on the same global batch: the tiny model has a BatchNorm, synchronised by ``train.sync_bn`` (on by
  default). Each rank takes every second index of the epoch's permutation (batch 4 per rank), so ranks 0 and 1
  together see exactly the 8 images of the single process's batch; DDP averages the two half-batch gradients.
  Equal up to float32 summation order: ``rtol=1e-4, atol=1e-5`` after 16 SGD steps.
* Each kind of synchronised BatchNorm, 2 processes against the plain layer on the whole batch in one process:
  outputs, input and parameter gradients, running statistics (``rtol=atol=1e-5``).
* A rank frozen with SIGSTOP: the other rank stops within ``train.dist_timeout_s`` with an error naming it, and
  a SIGTERM to a rank blocked by the frozen one ends it after the grace period instead of never.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from _sync_bn_worker import bn_inputs, bn_layers, bn_step
from train_support import ENTRY, HERE, tiny_overrides
from spikevision.cli import main
from spikevision.layers import BNTT2d, SyncBatchNorm, TDBatchNorm2d, TimeFoldedSyncBatchNorm, convert_sync_batchnorm
from spikevision.train import checkpoint as ck
from spikevision.train.config import ConfigError, load_config
from spikevision.train.distributed import CollectiveTimeoutError, DistInfo, collective_timeout_error

FREEZE_ENTRY = HERE / "_freeze_entry.py"
LAUNCH_LIMIT_S = 300  # generous: two processes importing torch and training a few steps on a loaded 2-core machine


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
                OMP_NUM_THREADS="1", **extra)


def test_two_gloo_processes_match_one_process(fmnist_root, tmp_path, recipe):
    common = {"train.epochs": 2, "train.deterministic": False, "run.tensorboard": False, "model.norm": True}
    ddp_args = tiny_overrides(fmnist_root, tmp_path, "ddp", **common, **{"data.batch_size": 4,
                                                                         "data.eval_batch_size": 7})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(ENTRY),
           "train", str(recipe), *ddp_args]
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr
    assert main(["train", str(recipe), *tiny_overrides(fmnist_root, tmp_path, "single", **common)]) == 0

    ddp = ck.load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    single = ck.load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")
    assert ddp[ck.STEP_KEY] == single[ck.STEP_KEY] == 16  # 8 steps per epoch either way
    assert "norm.running_var" in single[ck.MODEL_KEY]  # the BatchNorm is there, and its statistics are compared
    for k, v in single[ck.MODEL_KEY].items():
        torch.testing.assert_close(ddp[ck.MODEL_KEY][k], v, rtol=1e-4, atol=1e-5, msg=k)
    rows = {n: [json.loads(x) for x in (tmp_path / n / "metrics.jsonl").read_text().splitlines()]
            for n in ("ddp", "single")}
    assert len(rows["ddp"]) == 2  # only rank 0 wrote
    for a, b in zip(rows["ddp"], rows["single"]):
        # metrics are all-reduced: the 40 test images split 20/20 over ranks give the full-set numbers
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["test_top1"] == pytest.approx(b["test_top1"])
        assert a["firing_rate"] == pytest.approx(b["firing_rate"], rel=1e-4)


def test_sync_batchnorm_two_processes_equal_one_process(tmp_path):
    store = tmp_path / "store"
    procs = [subprocess.Popen([sys.executable, str(HERE / "_sync_bn_worker.py"), str(r), "2", str(store),
                               str(tmp_path / f"rank{r}.pt")], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(2)]
    try:
        logs = [p.communicate(timeout=LAUNCH_LIMIT_S)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    ref = bn_step(bn_layers(), bn_inputs(), rank=0, world=1)  # the plain layers, whole batch, one process
    close = dict(rtol=1e-5, atol=1e-5)
    for i, want in enumerate(ref):
        got = [r[i] for r in ranks]
        torch.testing.assert_close(torch.cat([g["y"] for g in got], 1), want["y"], **close, msg=f"layer {i}: y")
        torch.testing.assert_close(torch.cat([g["x_grad"] for g in got], 1), want["x_grad"], **close,
                                   msg=f"layer {i}: input gradient")
        assert want["param_grads"] and set(got[0]["param_grads"]) == set(want["param_grads"])
        for n, w in want["param_grads"].items():  # each rank holds its batch share's part; DDP sums them
            torch.testing.assert_close(got[0]["param_grads"][n] + got[1]["param_grads"][n], w, **close,
                                       msg=f"layer {i}: {n} gradient")
        for g in got:
            for n, w in want["buffers"].items():
                torch.testing.assert_close(g["buffers"][n], w, **close, msg=f"layer {i}: {n}")
            torch.testing.assert_close(g["y_eval"], want["y_eval"], **close, msg=f"layer {i}: eval output")


def test_convert_sync_batchnorm_takes_over_the_tensors():
    net = torch.nn.Sequential(TDBatchNorm2d(3, weight_init=0.5), BNTT2d(3, T=2, bias=False))
    weight, running_mean, bias = net[0].weight, net[0].running_mean, net[1].bns[0].bias
    keys = list(net.state_dict())
    x = torch.randn(2, 4, 3, 5, 5)  # [T, B, C, H, W]
    ref = net.eval()(x)
    convert_sync_batchnorm(net)
    assert type(net[0]) is TimeFoldedSyncBatchNorm and type(net[1].bns[0]) is SyncBatchNorm
    assert net[0].weight is weight and net[0].running_mean is running_mean and net[1].bns[0].bias is bias
    assert not net[1].bns[0].bias.requires_grad  # BNTT without bias stays without
    assert list(net.state_dict()) == keys
    torch.testing.assert_close(net(x), ref)  # eval mode: the running statistics, as before
    with pytest.raises(ValueError, match=r"expects \[T, B, 3"):
        net[0](torch.randn(2, 4, 5, 5, 5))


# ---------------------------------------------------------------------------
# a frozen rank
# ---------------------------------------------------------------------------

def test_collective_timeout_error_names_the_setting(tmp_path):
    two = DistInfo(rank=1, world_size=2)
    gloo = RuntimeError("[gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 5000ms for recv operation")
    err = collective_timeout_error(gloo, two, 5.0, tmp_path / "last.pt")
    assert isinstance(err, CollectiveTimeoutError) and isinstance(err, OSError)  # reported in one line by `train`
    assert "rank 1" in str(err) and "train.dist_timeout_s=5 s" in str(err) and "no checkpoint was written" in str(err)
    assert collective_timeout_error(gloo, DistInfo(), 5.0, tmp_path / "last.pt") is None  # one process
    for other in ("size mismatch", "DataLoader timed out after 5 seconds"):
        assert collective_timeout_error(RuntimeError(other), two, 5.0, tmp_path / "last.pt") is None
    with pytest.raises(ConfigError, match=r"train.dist_timeout_s must be > 0"):
        load_config(None, ["train.dist_timeout_s=0"])


def _state(pid: int) -> str:
    """The process state letter from /proc (``T``: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _launch(tmp_path: Path, args: list[str], store: "dist.TCPStore", **env: str) -> list[subprocess.Popen]:
    """Two ranks of ``_freeze_entry.py``, started as torchrun starts them: both connect to a store the
    launcher (this test) hosts on a port it already holds, so no port is chosen and then lost to a race."""
    common = _env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(store.port), WORLD_SIZE="2",
                  TORCHELASTIC_USE_AGENT_STORE="True", **env)
    procs = []
    for r in range(2):
        with open(tmp_path / f"rank{r}.log", "w") as log:
            procs.append(subprocess.Popen([sys.executable, str(FREEZE_ENTRY), "train", *args],
                                          env=dict(common, RANK=str(r), LOCAL_RANK=str(r)), stdout=log,
                                          stderr=subprocess.STDOUT))
    return procs


@pytest.fixture
def frozen_run(fmnist_root, tmp_path, recipe):
    """Start two ranks, rank 1 freezing in its 3rd step; yields ``start(timeout_s, freeze_in) -> procs``
    (``freeze_in``: ``"forward"`` or ``"backward"``, see ``_freeze_entry.py``); kills both after."""
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    procs: list[subprocess.Popen] = []

    def start(timeout_s: float, freeze_in: str = "forward") -> list[subprocess.Popen]:
        args = [str(recipe), *tiny_overrides(fmnist_root, tmp_path, "frozen", **{
            "train.epochs": 1, "run.tensorboard": False, "data.batch_size": 4,
            "train.dist_timeout_s": timeout_s})]
        procs.extend(_launch(tmp_path, args, store, FREEZE_RANK="1", FREEZE_AT="3", FREEZE_IN=freeze_in,
                             SIGNAL_GRACE_S="3"))
        return procs

    yield start
    for p in procs:
        p.kill()  # SIGKILL ends a stopped process too
        p.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process states from /proc")
def test_frozen_rank_stops_the_other_with_a_timeout_error(frozen_run, tmp_path):
    # the timeout bounds every collective, so it must not fire while the two ranks merely drift apart on a loaded
    # machine before rank 1 freezes (both start together; their steps take milliseconds)
    rank0, rank1 = frozen_run(timeout_s=15)
    rank0.wait(timeout=LAUNCH_LIMIT_S)  # without a collective timeout: blocked for gloo's 30 minutes
    out = (tmp_path / "rank0.log").read_text()
    assert _state(rank1.pid) == "T", out  # rank 1 really froze (and rank 0 did not fail for another reason)
    assert rank0.returncode == 1, out
    assert "train.dist_timeout_s=15 s" in out and "frozen" in out, out
    assert "Traceback" not in out, out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process states from /proc")
def test_sigterm_ends_a_rank_blocked_by_a_frozen_one(frozen_run, tmp_path):
    # rank 1 stops in its 3rd backward pass, after the step's loss all-reduce: rank 0 has then read its stop flag
    # for the step (the next check is after the backward) and blocks in the gradient all-reduce, whenever the
    # signal comes. (Frozen in the forward, rank 0 could still be finishing step 2, see the flag and stop cleanly.)
    rank0, rank1 = frozen_run(timeout_s=600, freeze_in="backward")  # the collective would wait 10 minutes
    deadline = time.monotonic() + LAUNCH_LIMIT_S
    while _state(rank1.pid) != "T":
        assert rank0.poll() is None and time.monotonic() < deadline, (tmp_path / "rank0.log").read_text()
        time.sleep(0.2)
    sent = time.monotonic()
    rank0.send_signal(signal.SIGTERM)
    rank0.wait(timeout=60)  # grace 3 s here (20 s by default), well before torchrun's SIGKILL at 30 s
    out = (tmp_path / "rank0.log").read_text()
    assert rank0.returncode == 128 + signal.SIGTERM, out
    assert "stopped by SIGTERM" in out and "did not finish within 3 s" in out, out
    assert time.monotonic() - sent >= 3  # it gave the step its grace first
