"""DDP: 2 gloo processes (torchrun) on CPU end with the parameters of 1 process on the same global batch.

The tiny model has no BatchNorm (``norm=False``): with BN each rank would
normalise with its own half-batch statistics, and SyncBatchNorm in torch
runs on GPUs only. Each rank takes every second index of the epoch's
permutation (batch 4 per rank), so rank 0 and 1 together see exactly the
8 images of the single process's batch; DDP averages the two half-batch
gradients, which equals the full-batch gradient up to float summation order.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ENTRY, HERE, tiny_overrides
from spikevision.cli import main
from spikevision.train import checkpoint as ck
from spikevision.train.distributed import convert_sync_bn
from spikevision.layers import TDBatchNorm2d


def test_two_gloo_processes_match_one_process(fmnist_root, tmp_path, recipe):
    common = {"train.epochs": 2, "train.deterministic": False, "run.tensorboard": False}
    ddp_args = tiny_overrides(fmnist_root, tmp_path, "ddp", **common, **{"data.batch_size": 4,
                                                                         "data.eval_batch_size": 7})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(ENTRY),
           "train", str(recipe), *ddp_args]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr
    assert main(["train", str(recipe), *tiny_overrides(fmnist_root, tmp_path, "single", **common)]) == 0

    ddp = ck.load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    single = ck.load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")
    assert ddp[ck.STEP_KEY] == single[ck.STEP_KEY] == 16  # 8 steps per epoch either way
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


def test_convert_sync_bn_keeps_subclass_forward_and_state():
    bn = TDBatchNorm2d(3, weight_init=0.5)
    x = torch.randn(2, 4, 3, 5, 5)  # [T, B, C, H, W]: the subclass folds T before normalising
    ref = bn(x)
    keys = list(bn.state_dict())
    convert_sync_bn(bn)
    assert isinstance(bn, torch.nn.SyncBatchNorm) and isinstance(bn, TDBatchNorm2d)
    assert list(bn.state_dict()) == keys
    torch.testing.assert_close(bn(x), ref)  # one process: SyncBatchNorm falls back to plain BN
