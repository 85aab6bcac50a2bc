"""Weights and cards from disk are checked before use: finite tensors (naming the bad one), cards that are
JSON objects of sane size and depth, card kwargs within bounds; each refusal is one line, never a traceback."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import spikevision.weights as W
from spikevision.models import create_model
from spikevision.weights import NonFiniteWeightsError, check_finite_weights, non_finite_tensors

NAME, TAG = "mlp_spe_mini", "fashion_mnist"  # the smallest shipped model


def test_check_names_the_tensor():
    state = {"a.weight": torch.ones(3), "b.weight": torch.tensor([1.0, float("nan")]),
             "c.bias": torch.tensor([float("inf")]), "steps": torch.tensor([3])}
    assert non_finite_tensors(state) == ["b.weight", "c.bias"]
    with pytest.raises(NonFiniteWeightsError, match=r"x.safetensors: tensor 'b.weight' holds NaN or infinite "
                                                    r"values \(and 1 more: c.bias\)"):
        check_finite_weights(state, "x.safetensors")
    check_finite_weights({"a": torch.zeros(2), "n": torch.arange(3)}, "fine")


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A copy of the shipped weights folder to tamper with."""
    for suffix in (".json", ".safetensors"):
        shutil.copy(W.WEIGHTS_DIR / f"{NAME}.{TAG}{suffix}", tmp_path)
    monkeypatch.setattr(W, "WEIGHTS_DIR", tmp_path)
    return tmp_path


def test_tampered_shipped_weights_are_refused(shipped):
    path = shipped / f"{NAME}.{TAG}.safetensors"
    state = load_file(str(path))
    key = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    state[key] = state[key].clone().fill_(float("nan"))
    save_file(state, str(path))
    with pytest.raises(NonFiniteWeightsError, match=f"tensor '{key}' holds NaN"):
        create_model(NAME, pretrained=TAG)


@pytest.mark.parametrize("card, message", [
    ([1, 2, 3], "a JSON list, not an object"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ({"model": NAME, "model_kwargs": {"dim": 3 * 10 ** 7}}, "parameters"),
    ({"model": NAME, "model_kwargs": {"T": 10 ** 9}}, "needs about"),
    ({"model": NAME, "model_kwargs": {"dim": "wide"}}, "model_kwargs.dim must be int"),
    ({"model": NAME, "model_kwargs": {"T": 4, "depths": [-1]}}, "model_kwargs.depths must be whole numbers"),
    ({"model": NAME, "model_kwargs": []}, "does not describe"),
])
def test_tampered_cards_are_refused_in_one_line(shipped, card, message):
    path = shipped / f"{NAME}.{TAG}.json"
    path.write_text(card if isinstance(card, str) else json.dumps(card))
    with pytest.raises(ValueError, match=message) as e:
        create_model(NAME, pretrained=TAG)
    assert "\n" not in str(e.value)


def test_an_oversized_card_is_not_parsed(shipped):
    (shipped / f"{NAME}.{TAG}.json").write_text(" " * (W.MAX_CARD_BYTES + 1) + "{}")
    with pytest.raises(ValueError, match="not a card"):
        W.read_card(NAME, TAG)
