"""Shipped weights: create_model(pretrained=...) loads offline, refuses contradicting kwargs and names what exists.

Every card reproduced on the real Fashion-MNIST test set: test_shipped_accuracy.py."""

import json
import re

import pytest
import torch

import spikevision.weights as W
from spikevision.deploy.weights import save_weights
from spikevision.models import create_model, get_model_info, list_models
from spikevision.weights import CARD_KEYS, PretrainedNotFoundError, available_weights, read_card

SHIPPED = [(name, tag) for name, tags in available_weights().items() for tag in tags]
MAX_TOTAL_BYTES = 20_000_000  # all shipped weights together (the evidence issue's budget: 20 MB)


def test_cards_carry_the_rendered_documentation():
    """License, citation, data set, preprocessing, class names, use and limits: card_documentation's, not hand-typed."""
    from spikevision.analysis.card import DOC_KEYS, card_documentation
    from spikevision.data.constants import FASHION_MNIST_MEAN, FASHION_MNIST_STD

    for name, tag in SHIPPED:
        card = read_card(name, tag)
        assert {k: card[k] for k in DOC_KEYS} == json.loads(json.dumps(card_documentation(card))), name
        assert card["citation"].startswith("@") and card["license"] == "bsd-3-clause"
        cfg = create_model(name, pretrained=tag).pretrained_cfg
        assert (cfg.mean, cfg.std) == (FASHION_MNIST_MEAN, FASHION_MNIST_STD) == ((0.286,), (0.353,))
        assert cfg.class_names[0] == "T-shirt/top" and len(cfg.class_names) == cfg.num_classes == 10


def test_top_level_api_lists_builds_and_preprocesses():
    import subprocess
    import sys

    import spikevision

    # `import spikevision` stays light: the model zoo (and torch) load on first use
    code = "import sys, spikevision; print('torch' in sys.modules, 'spikevision.models' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == ["False"] * 2
    assert spikevision.list_models("ms_resnet*", pretrained=True) == ["ms_resnet_mini"]
    assert set(spikevision.list_models(pretrained=True)) == {n for n, _ in SHIPPED}
    assert "ms_resnet18" in spikevision.list_models("ms_resnet1?")
    assert spikevision.list_models("nothing*") == []
    model = spikevision.create_model("mlp_spe_mini", pretrained=True)  # the only tag
    assert model.pretrained_cfg.tag == "fashion_mnist" and model.pretrained_cfg.input_size == (1, 28, 28)
    assert spikevision.create_model("mlp_spe_mini").pretrained_cfg is None
    assert spikevision.resolve_data_config(model) == spikevision.resolve_data_config(read_card("mlp_spe_mini",
                                                                                              "fashion_mnist"))
    with pytest.raises(ValueError, match="dataset='fashion_mnist'"):
        spikevision.create_transform(spikevision.create_model("mlp_spe_mini"))
    prep = spikevision.resolve_data_config(spikevision.create_model("ms_resnet20"), dataset="cifar10")
    assert prep.input_size == (3, 32, 32) and prep.mean[0] == 0.4914
    rgb = spikevision.create_transform(model)(__import__("PIL.Image").Image.new("RGB", (64, 48), (255, 0, 0)))
    assert rgb.shape == (1, 28, 28)  # any picture: to the model's channels and size


def test_shipped_files_are_complete_and_small():
    files = list(W.WEIGHTS_DIR.glob("*.safetensors"))
    assert sum(f.stat().st_size for f in files) <= MAX_TOTAL_BYTES
    for f in files:  # no weights without a card, no card without weights
        assert f.with_suffix(".json").is_file(), f
    for name, tag in SHIPPED:
        card = read_card(name, tag)
        assert set(CARD_KEYS) <= set(card), set(CARD_KEYS) - set(card)
        assert tag in get_model_info(name).pretrained


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
    assert create_model("spiking_cnn_mini", pretrained=True).pretrained_cfg is None  # a card without a data set
    assert get_model_info("spiking_cnn_mini").pretrained == ("toy",)
    assert [i.name for i in list_models() if i.pretrained] == ["spiking_cnn_mini"]


def test_weights_with_per_step_parameters_say_which_T_they_fit():
    """S-ResNet's per-step batch norm (BNTT) ties its weights to T; the message is one readable line."""
    trained_T = read_card("sresnet20", "fashion_mnist")["model_kwargs"]["T"]
    with pytest.raises(ValueError) as e:
        create_model("sresnet20", pretrained="fashion_mnist", T=trained_T + 2)
    message = str(e.value)
    assert re.search(rf"missing \d+ entries: stem\.bn\.bns\.{trained_T}\.weight, .* and \d+ more; ", message), message
    assert f"fit only T={trained_T}, the T they were trained with" in message
    assert len(message) < 600 and "\n" not in message


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
