"""The registry: names, errors, and that every registered builder honours its ModelInfo."""

import pytest
from torch import nn

from spikevision.models import UnknownModelError, create_model, get_model_info, list_models, register_model
from spikevision.models.registry import _REGISTRY, MODALITIES
from spikevision.neuron import NeuronParams


@pytest.fixture
def toy_model():
    @register_model(family="toy", paper="none", T=3, input_size=(1, 8, 8), num_classes=4, neuron=NeuronParams(),
                    modality="image")
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
        register_model(family="toy", paper="x", T=1, input_size=(1, 1, 1), num_classes=1, neuron=NeuronParams(),
                       modality="image")(
            toy_model
        )
    with pytest.raises(UnknownModelError, match="did you mean toy_net_for_registry_test"):
        create_model("toy_net_for_registry_tset")
    with pytest.raises(TypeError, match="toy_net_for_registry_test: .*unexpected keyword"):
        create_model("toy_net_for_registry_test", depth=3)
    with pytest.raises(ValueError, match="unknown family"):
        list_models("no_such_family")


@pytest.mark.parametrize("kwargs,message", [
    ({"T": 2.5}, "T must be >= 1, a whole number of time steps, got 2.5"),
    ({"T": 0}, "T must be >= 1, a whole number of time steps, got 0"),
    ({"num_classes": -3}, "num_classes must be >= 1, a whole number of classes, got -3"),
    ({"num_classes": 0}, "num_classes must be .* got 0"),
    ({"num_classes": True}, "num_classes must be .* got True"),
])
def test_shared_kwargs_are_checked_before_building(kwargs, message):
    with pytest.raises(ValueError, match=f"mlp_spe_mini: {message}"):
        create_model("mlp_spe_mini", **kwargs)


@pytest.mark.parametrize("info", list_models(), ids=lambda i: i.name)
def test_every_model_matches_its_registry_entry(info):
    """Each builder's defaults agree with what the registry advertises."""
    model = create_model(info.name)
    assert model.T == info.T
    assert model.num_classes == info.num_classes
    assert sum(p.numel() for p in model.parameters()) > 0
    for name in ("forward_features", "forward_head", "reset_classifier", "encoder", "residual_blocks"):
        assert hasattr(model, name), f"{info.name} lacks {name}"
    blocks = model.residual_blocks()
    assert all(model.get_submodule(n) is b for n, b in blocks.items())
    with_shortcut = [n for n, m in model.named_modules() if isinstance(getattr(m, "shortcut", None), nn.Module)]
    assert set(with_shortcut) <= set(blocks), f"{info.name}: blocks with a shortcut not listed"
    assert info.modality in MODALITIES


def test_input_shape_follows_modality_and_kwargs(toy_model):
    assert get_model_info("ms_resnet20").input_shape(2) == (2, 3, 32, 32)
    assert get_model_info("ms_resnet20_dvs").input_shape(2) == (20, 2, 2, 128, 128)
    assert get_model_info("sresnet38_dvs").input_shape(1, T=8) == (8, 1, 2, 128, 128)
    assert get_model_info("ms_resnet20_dvs").input_shape(1, model_kwargs={"T": 5, "in_chans": 1}) == (5, 1, 1, 128, 128)
    assert get_model_info("spiking_cnn_mini").input_shape(3, model_kwargs={"in_chans": 3, "img_size": 32}) == (
        3, 3, 32, 32)
    with pytest.raises(ValueError, match="unknown modality"):
        register_model(family="toy", paper="x", T=1, input_size=(1, 1, 1), num_classes=1, neuron=NeuronParams(),
                       modality="video")


def test_get_model_info_accepts_an_entry_and_refuses_other_types():
    info = list_models("ms_resnet")[0]
    assert get_model_info(info) is info  # what list_models gives can be looked up again
    with pytest.raises(TypeError, match="takes a model name \\(str\\) or a ModelInfo, got int"):
        get_model_info(3)
