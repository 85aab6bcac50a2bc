"""The registry: names, errors, and that every registered builder honours its ModelInfo."""

import pytest
from torch import nn

from spikevision.models import UnknownModelError, create_model, get_model_info, list_models, register_model
from spikevision.models.registry import _REGISTRY
from spikevision.neuron import NeuronParams


@pytest.fixture
def toy_model():
    @register_model(family="toy", paper="none", T=3, input_size=(1, 8, 8), num_classes=4, neuron=NeuronParams())
    def toy_net_for_registry_test(*, num_classes: int = 4, width: int = 2) -> nn.Module:
        return nn.Linear(width, num_classes)

    yield toy_net_for_registry_test
    del _REGISTRY["toy_net_for_registry_test"]


def test_create_drops_none_and_passes_kwargs(toy_model):
    m = create_model("toy_net_for_registry_test", num_classes=None, width=5)
    assert m.in_features == 5 and m.out_features == 4
    assert get_model_info("toy_net_for_registry_test").family == "toy"
    assert [i.name for i in list_models("toy")] == ["toy_net_for_registry_test"]


def test_duplicate_and_unknown_names(toy_model):
    with pytest.raises(ValueError, match="already registered"):
        register_model(family="toy", paper="x", T=1, input_size=(1, 1, 1), num_classes=1, neuron=NeuronParams())(
            toy_model
        )
    with pytest.raises(UnknownModelError, match="did you mean toy_net_for_registry_test"):
        create_model("toy_net_for_registry_tset")
    with pytest.raises(TypeError, match="toy_net_for_registry_test: .*unexpected keyword"):
        create_model("toy_net_for_registry_test", depth=3)
    with pytest.raises(ValueError, match="unknown family"):
        list_models("no_such_family")


@pytest.mark.parametrize("info", list_models(), ids=lambda i: i.name)
def test_every_model_matches_its_registry_entry(info):
    """Each builder's defaults agree with what the registry advertises."""
    model = create_model(info.name)
    assert model.T == info.T
    assert model.num_classes == info.num_classes
    assert sum(p.numel() for p in model.parameters()) > 0
    for name in ("forward_features", "forward_head", "reset_classifier", "encoder"):
        assert hasattr(model, name), f"{info.name} lacks {name}"
