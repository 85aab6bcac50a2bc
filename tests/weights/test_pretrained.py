"""Shipped weights: every card reproduced on the real Fashion-MNIST test set; create_model(pretrained=...)
loads offline, refuses contradicting kwargs and names what exists."""

import json
from pathlib import Path

import pytest
import torch

import spikevision.weights as W
from spikevision.deploy.weights import save_weights
from spikevision.models import create_model, get_model_info, list_models
from spikevision.weights import CARD_KEYS, PretrainedNotFoundError, available_weights, read_card

FMNIST = Path("/usr/share/datasets/fashion-mnist")
SHIPPED = [(name, tag) for name, tags in available_weights().items() for tag in tags]
MAX_TOTAL_BYTES = 12_500_000  # all shipped weights together (issue budget: about 12 MB)


def test_shipped_files_are_complete_and_small():
    files = list(W.WEIGHTS_DIR.glob("*.safetensors"))
    assert sum(f.stat().st_size for f in files) <= MAX_TOTAL_BYTES
    for f in files:  # no weights without a card, no card without weights
        assert f.with_suffix(".json").is_file(), f
    for name, tag in SHIPPED:
        card = read_card(name, tag)
        assert set(CARD_KEYS) <= set(card), set(CARD_KEYS) - set(card)
        assert tag in get_model_info(name).pretrained


@pytest.mark.skipif(not (FMNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="needs the Debian package dataset-fashion-mnist")
@pytest.mark.parametrize("name,tag", SHIPPED, ids=[f"{n}.{t}" for n, t in SHIPPED])
def test_shipped_model_reproduces_its_card_on_the_real_test_set(name, tag):
    from spikevision.data import DataConfig, build_loader
    from spikevision.train.engine import evaluate

    card = read_card(name, tag)
    model = create_model(name, pretrained=tag).eval()
    data = {**card["config"]["data"], "root": str(FMNIST), "device": "cpu", "num_workers": 0,
            "eval_batch_size": 500}
    ev = evaluate(model, build_loader(DataConfig.from_dict(data), "test"), torch.device("cpu"))
    assert ev["samples"] == card["test_samples"] == 10_000
    assert abs(ev["top1"] - card["test_top1"]) <= 0.1, (ev["top1"], card["test_top1"])


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """A weights folder holding spiking_cnn_mini.toy (seeded weights and a card)."""
    monkeypatch.setattr(W, "WEIGHTS_DIR", tmp_path)
    torch.manual_seed(0)
    model = create_model("spiking_cnn_mini", T=3, num_classes=4)
    save_weights(model, tmp_path / "spiking_cnn_mini.toy.safetensors", model_name="spiking_cnn_mini",
                 model_kwargs={"T": 3, "num_classes": 4})
    card = {k: None for k in CARD_KEYS} | {"model": "spiking_cnn_mini", "tag": "toy",
                                           "model_kwargs": {"T": 3, "num_classes": 4}}
    (tmp_path / "spiking_cnn_mini.toy.json").write_text(json.dumps(card))
    return model


def test_pretrained_loads_the_card_kwargs_and_weights(weights_dir):
    model = create_model("spiking_cnn_mini", pretrained="toy")
    assert (model.T, model.num_classes) == (3, 4)
    for k, v in weights_dir.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    assert create_model("spiking_cnn_mini", pretrained="toy", T=5).T == 5  # T is free: weights do not depend on it
    assert get_model_info("spiking_cnn_mini").pretrained == ("toy",)
    assert [i.name for i in list_models() if i.pretrained] == ["spiking_cnn_mini"]


def test_pretrained_errors_name_the_fix(weights_dir, tmp_path):
    with pytest.raises(ValueError, match=r"num_classes=10 \(trained with 4\)"):
        create_model("spiking_cnn_mini", pretrained="toy", num_classes=10)
    with pytest.raises(PretrainedNotFoundError, match="shipped for spiking_cnn_mini: toy"):
        create_model("spiking_cnn_mini", pretrained="cifar10")
    with pytest.raises(PretrainedNotFoundError, match=r"Models with weights: spiking_cnn_mini \(toy\)"):
        create_model("ms_resnet20", pretrained="toy")
    with pytest.raises(ValueError, match="do not fit"):  # an extra kwarg that changes the shapes
        create_model("spiking_cnn_mini", pretrained="toy", widths=[8, 16])
    (tmp_path / "spiking_cnn_mini.toy.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="damaged"):
        create_model("spiking_cnn_mini", pretrained="toy")
    (tmp_path / "spiking_cnn_mini.toy.json").write_text("{not json")
    with pytest.raises(ValueError, match="damaged"):
        create_model("spiking_cnn_mini", pretrained="toy")
