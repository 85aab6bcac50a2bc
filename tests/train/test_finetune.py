"""``model.pretrained``: training that starts from shipped weights (fine-tuning), on tiny IDX data."""

import pytest
import torch

from train_support import tiny_overrides
from spikevision.cli import main
from spikevision.models import create_model
from spikevision.train import checkpoint as ck
from spikevision.train.checkpoint import LAST
from spikevision.train.config import ConfigError, load_config
from spikevision.train.engine import setup
from spikevision.weights import read_card

NAME, TAG = "mlp_spe_mini", "fashion_mnist"  # the smallest shipped model


def _overrides(root, tmp_path, run, **extra):
    return tiny_overrides(root, tmp_path, run, **{"model.name": NAME, "model.pretrained": TAG,
                                                  "run.tensorboard": False, **extra})


def test_training_starts_from_the_shipped_weights(fmnist_root, tmp_path, recipe):
    cfg = load_config(recipe, _overrides(fmnist_root, tmp_path, "ft", **{"train.epochs": 1}))
    tr = setup(cfg)
    try:
        shipped = create_model(NAME, pretrained=TAG).state_dict()
        for k, v in tr.model.state_dict().items():
            assert torch.equal(v, shipped[k]), k
        assert tr.model_kwargs == read_card(NAME, TAG)["model_kwargs"]  # what eval and export rebuild from
    finally:
        tr.lock.release()
    assert main(["train", str(recipe), *_overrides(fmnist_root, tmp_path, "ft2", **{"train.epochs": 1})]) == 0
    state = ck.load_checkpoint(tmp_path / "ft2" / "checkpoints" / LAST)
    assert state[ck.MODEL_KWARGS_KEY]["dim"] == read_card(NAME, TAG)["model_kwargs"]["dim"]
    assert state[ck.CONFIG_KEY]["model"]["pretrained"] == TAG
    assert main(["eval", str(tmp_path / "ft2")]) == 0


def test_a_fresh_model_is_not_the_shipped_one(fmnist_root, tmp_path, recipe):
    cfg = load_config(recipe, _overrides(fmnist_root, tmp_path, "fresh", **{"model.pretrained": "null"}))
    tr = setup(cfg)
    try:
        shipped = create_model(NAME, pretrained=TAG).state_dict()
        assert not all(torch.equal(v, shipped[k]) for k, v in tr.model.state_dict().items())
    finally:
        tr.lock.release()


@pytest.mark.parametrize("extra, message", [
    ({"model.pretrained": "cifar10"}, "has no pretrained='cifar10' weights; shipped for mlp_spe_mini: fashion_mnist"),
    ({"model.dim": 64}, "model.dim=64 contradicts model.pretrained='fashion_mnist' (trained with 48)"),
    ({"model.pretrained": 7}, "model.pretrained must be the tag of shipped weights"),
    ({"data.name": "cifar100"}, "classifies 10 classes, data set 'cifar100' has 100"),
])
def test_pretrained_that_cannot_be_used_is_a_config_error(fmnist_root, tmp_path, recipe, extra, message):
    with pytest.raises(ConfigError) as e:
        load_config(recipe, _overrides(fmnist_root, tmp_path, "bad", **extra))
    assert message in str(e.value)


def test_weights_tied_to_their_T_fail_before_training_with_a_clear_error(fmnist_root, tmp_path, recipe, caplog):
    trained_T = read_card("sresnet20", TAG)["model_kwargs"]["T"]  # S-ResNet: per-step batch norm (BNTT)
    args = tiny_overrides(fmnist_root, tmp_path, "bntt", **{"model.name": "sresnet20", "model.pretrained": TAG,
                                                           "model.T": trained_T + 2, "run.tensorboard": False})
    assert main(["train", str(recipe), *args]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0] and f"fit only T={trained_T}," in errors[0], errors
    assert not (tmp_path / "bntt").exists()  # nothing left behind
