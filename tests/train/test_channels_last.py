"""train.channels_last: the engine trains the model in channels-last format, with the same results."""

from __future__ import annotations

import json

import pytest
import torch


@pytest.mark.parametrize("channels_last", [True, False])
def test_engine_converts_the_model_only_when_asked(fmnist_root, tmp_path, recipe, channels_last):
    import spikevision.train.engine as engine
    from spikevision.train.config import load_config
    from train_support import tiny_overrides

    over = tiny_overrides(fmnist_root, tmp_path, name=f"cl{int(channels_last)}", **{
        "model.name": "spiking_cnn_mini", "train.epochs": 1, "train.channels_last": channels_last})
    tr = engine.setup(load_config(recipe, over))
    tr.lock.release()
    conv = tr.model.stages[1].conv.module.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert conv.is_contiguous() != channels_last


def test_a_channels_last_run_matches_the_nchw_run(fmnist_root, tmp_path, recipe):
    from spikevision.train.config import load_config
    from spikevision.train.engine import train
    from train_support import tiny_overrides

    losses = {}
    for channels_last in (False, True):
        name = f"run{int(channels_last)}"
        over = tiny_overrides(fmnist_root, tmp_path, name=name, **{
            "model.name": "spiking_cnn_mini", "train.epochs": 2, "train.channels_last": channels_last})
        train(load_config(recipe, over))
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses[channels_last] = [r["train_loss"] for r in rows]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
