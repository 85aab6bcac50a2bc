"""Every weights source becomes a model through the one path, ``models.factory.build_with_weights``:
shipped weights, an exported ``.safetensors``, a checkpoint, a run directory, a saved (Hub) folder and a model
name with a weights file; each gives the same model as the weights it was made from."""

import pytest
import torch

import spikevision.models.factory as factory
from spikevision.deploy.source import load_source
from spikevision.deploy.weights import save_weights
from spikevision.hub import save_pretrained
from spikevision.models import create_model
from spikevision.train import checkpoint as ck

TINY = {"T": 2, "dim": 6, "num_classes": 10}  # mlp_spe_mini, a few thousand parameters


def _sources(tmp_path, model):
    """Each on-disk source of ``model``'s weights: (source, load_source kwargs)."""
    ck.save_checkpoint(tmp_path / "run" / ck.CHECKPOINT_DIR / ck.LAST, {
        ck.VERSION_KEY: ck.FORMAT_VERSION, ck.MODEL_KEY: model.state_dict(), ck.MODEL_NAME_KEY: "mlp_spe_mini",
        ck.MODEL_KWARGS_KEY: TINY, ck.CONFIG_KEY: {}, ck.EPOCH_KEY: 1, ck.STEP_KEY: 1})
    save_weights(model, tmp_path / "w.safetensors", model_name="mlp_spe_mini", model_kwargs=TINY)
    torch.save(model.state_dict(), tmp_path / "state.pt")
    save_pretrained(model, tmp_path / "hub", model_name="mlp_spe_mini", model_kwargs=TINY)
    return {"run directory": (tmp_path / "run", {}),
            "checkpoint": (tmp_path / "run" / ck.CHECKPOINT_DIR / ck.LAST, {}),
            "safetensors": (tmp_path / "w.safetensors", {}),
            "hub folder": (tmp_path / "hub", {}),
            "name + weights": ("mlp_spe_mini", {"weights": tmp_path / "state.pt", "model_kwargs": TINY})}


def test_every_source_goes_through_build_with_weights(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = create_model("mlp_spe_mini", **TINY).eval()
    x = torch.rand(2, 1, 28, 28)
    calls = []
    real = factory.build_with_weights
    monkeypatch.setattr(factory, "build_with_weights", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    for what, (source, kwargs) in _sources(tmp_path, model).items():
        calls.clear()
        src = load_source(source, **kwargs)
        assert calls == ["mlp_spe_mini"], what
        assert (src.name, src.kwargs) == ("mlp_spe_mini", TINY), what
        assert torch.equal(src.model(x), model(x)), what
    calls.clear()
    src = load_source("mlp_spe_mini", pretrained="fashion_mnist")  # shipped weights, with their card's data set
    assert calls == ["mlp_spe_mini"] and src.data is not None and src.data.name == "fashion_mnist"


def test_weights_that_do_not_fit_name_the_source_and_the_fix(tmp_path):
    model = create_model("mlp_spe_mini", **TINY)
    torch.save(model.state_dict(), tmp_path / "state.pt")
    with pytest.raises(ValueError, match=r"state.pt: cannot rebuild mlp_spe_mini\(T=2, dim=12, num_classes=10\) "
                                         r"with these weights: they do not fit .*\(--model-kwargs\)"):
        load_source("mlp_spe_mini", weights=tmp_path / "state.pt", model_kwargs={**TINY, "dim": 12})


def test_weight_bits_come_from_the_flag_then_the_card_then_16(caplog):
    from spikevision.deploy.source import Source, card_weight_bits, resolve_weight_bits

    assert card_weight_bits({}, "x") is None
    assert card_weight_bits({"deploy": {"weight_bits": 20}}, "x") == 20
    for bad in ({"weight_bits": 40}, {"weight_bits": True}, {"weight_bits": "20"}, [20]):
        assert card_weight_bits({"deploy": bad}, "card.json") is None
    assert "card.json: the card's deploy.weight_bits is unusable" in caplog.text
    plain = Source(torch.nn.Identity(), "m", {}, None, "m")
    carded = Source(torch.nn.Identity(), "m", {}, None, "m", weight_bits=20)
    assert resolve_weight_bits(None, plain) == 16 and resolve_weight_bits(None, carded) == 20
    assert resolve_weight_bits(8, carded) == 8  # the flag wins


def test_a_shipped_card_can_name_the_weight_width_its_model_needs(tmp_path, monkeypatch):
    """A card's ``deploy.weight_bits`` (a model whose spikes flip at tiny perturbations, like an earlier
    S-ResNet seed that needed 20 bits) is what deploy and export use; without it, 16 bits."""
    import json
    import shutil

    import spikevision.weights as weights

    for suffix in (".json", ".safetensors"):
        shutil.copy(weights.WEIGHTS_DIR / f"ms_resnet_mini.fashion_mnist{suffix}", tmp_path)
    card_file = tmp_path / "ms_resnet_mini.fashion_mnist.json"
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    assert load_source("ms_resnet_mini", pretrained="fashion_mnist").weight_bits is None  # 16 bits suffice
    card = json.loads(card_file.read_text())
    card["deploy"] = {"weight_bits": 20, "agreement": 0.999, "samples": 10000}
    card_file.write_text(json.dumps(card))
    assert load_source("ms_resnet_mini", pretrained="fashion_mnist").weight_bits == 20