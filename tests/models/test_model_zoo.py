"""Zoo entries: a registered name fills its family's config; the builder's signature comes from the entry."""

import inspect
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from spikevision.layers.norm import TDBatchNorm2d, build_norm2d
from spikevision.models import create_model, get_model_info, list_models
from spikevision.models.ms_resnet import RESNET_MINI, MSResNet, MSResNetConfig
from spikevision.models.registry import _REGISTRY
from spikevision.models.zoo import register_config
from spikevision.neuron import NeuronParams


@dataclass(frozen=True)
class ToyConfig:
    width: int
    num_classes: int = 3
    T: int = 2
    neuron_params: NeuronParams = NeuronParams()


@pytest.fixture
def toy_entry():
    built = []

    def build(cfg: ToyConfig) -> nn.Module:
        built.append(cfg)
        return nn.Linear(cfg.width, cfg.num_classes)

    builder = register_config("toy_entry_for_zoo_test", ToyConfig(width=4), build, tunable=("num_classes", "size"),
                              aliases={"size": "width"}, doc="A toy.", module=__name__, family="toy",
                              paper="none", input_size=(1, 2, 2), modality="image", finish=lambda config, changes: changes)
    yield builder, built
    del _REGISTRY["toy_entry_for_zoo_test"]


def test_an_entry_becomes_a_keyword_only_builder_with_its_defaults(toy_entry):
    builder, built = toy_entry
    params = inspect.signature(builder).parameters
    assert list(params) == ["num_classes", "size"] and params["size"].default == 4
    assert all(p.kind is p.KEYWORD_ONLY for p in params.values())
    info = get_model_info("toy_entry_for_zoo_test")
    assert (info.T, info.num_classes, info.config) == (2, 3, ToyConfig(width=4)) and builder.__doc__ == "A toy."
    m = create_model("toy_entry_for_zoo_test", size=6, num_classes=None)
    assert (m.in_features, m.out_features) == (6, 3) and built[-1] == ToyConfig(width=6)
    with pytest.raises(TypeError, match="toy_entry_for_zoo_test: .*unexpected keyword argument 'width'"):
        create_model("toy_entry_for_zoo_test", width=6)  # the config field is reached through its alias only
    with pytest.raises(ValueError, match="depth not fields of ToyConfig"):
        register_config("toy_bad", ToyConfig(width=1), nn.Linear, tunable=("depth",), doc="", module=__name__,
                        family="toy", paper="", input_size=(1, 1, 1), modality="image")


def test_every_entry_of_the_resnet_families_keeps_its_config():
    for info in list_models("ms_resnet") + list_models("spiking_resnet") + list_models("gac"):
        assert isinstance(info.config, MSResNetConfig), info.name
        assert (info.config.T, info.config.num_classes, info.config.in_chans) == (
            info.T, info.num_classes, info.input_size[0]), info.name
    assert get_model_info("gac_ms_resnet_mini").config.encoder == "gac"
    model = MSResNet(RESNET_MINI)  # the class takes the config alone, nanoGPT-style
    assert model.config is RESNET_MINI and model.T == 4


def test_config_errors_name_the_fix():
    with pytest.raises(ValueError, match="differ in length"):
        MSResNetConfig(layers=(1, 1), widths=(8,), strides=(1,), stem="conv3x3", stem_width=8)
    with pytest.raises(ValueError, match="unknown encoder 'poisson'"):
        MSResNetConfig(layers=(1,), widths=(8,), strides=(1,), stem="conv3x3", stem_width=8, encoder="poisson")
    with pytest.raises(TypeError, match="resolve_neuron_params"):
        MSResNetConfig(layers=(1,), widths=(8,), strides=(1,), stem="conv3x3", stem_width=8,
                       neuron_params={"v_th": 1.0})
    with pytest.raises(ValueError, match="non-empty and of equal length"):
        create_model("ms_resnet_mini", layers=(1, 1), widths=(8,))


class PlainBN(nn.BatchNorm2d):
    """A user's norm: BatchNorm2d applied to each step of [T, B, C, H, W]."""

    def forward(self, x):
        return super().forward(x.flatten(0, 1)).unflatten(0, x.shape[:2])


def test_norm_layer_is_injectable_by_name_or_class():
    default = create_model("ms_resnet_mini", T=2, widths=(4, 8), layers=(1, 1))
    named = create_model("ms_resnet_mini", T=2, widths=(4, 8), layers=(1, 1), norm_layer="tdbn")
    assert list(default.state_dict()) == list(named.state_dict())
    custom = create_model("ms_resnet_mini", T=2, widths=(4, 8), layers=(1, 1), norm_layer=PlainBN)
    block = custom.stages[1][0]
    assert type(block.bn1) is PlainBN and type(block.shortcut[-1]) is PlainBN
    assert torch.all(block.bn1.weight == 0.5) and torch.all(block.bn2.weight == 0)  # the paper's gammas
    assert custom(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    cnn = create_model("spiking_cnn_mini", widths=(4,), norm_layer=PlainBN)
    assert type(cnn.stages[0].bn) is PlainBN and cnn(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert isinstance(build_norm2d("tdbn", 3, 0.5), TDBatchNorm2d)
    with pytest.raises(ValueError, match="unknown norm_layer 'ln'; choose one of \\['tdbn'\\]"):
        create_model("ms_resnet_mini", norm_layer="ln")


def test_the_keyword_constructor_of_before_configs_still_builds_with_a_deprecation_warning():
    from spikevision.models.spiking_cnn import SPIKING_CNN_NEURON, SpikingCNN, SpikingCNNConfig

    with pytest.warns(DeprecationWarning, match=r"SpikingCNN\(\*\*kwargs\) is deprecated; pass SpikingCNNConfig"):
        old = SpikingCNN(widths=(4,), img_size=28, in_chans=1, num_classes=3, T=2, pool="max", dropout=0.0,
                         stem_once=True, neuron="lif", neuron_params=SPIKING_CNN_NEURON)
    assert old.config == SpikingCNNConfig(widths=(4,), num_classes=3)
    with pytest.warns(DeprecationWarning), pytest.raises(
            TypeError, match="MSResNet: .*unexpected keyword argument 'encoder_has_stem'.*create_model"):
        MSResNet(layers=(1,), widths=(8,), strides=(1,), stem="conv3x3", stem_width=8, encoder_has_stem=False)
    with pytest.raises(TypeError, match="MSResNet takes a MSResNetConfig, got SpikingCNNConfig"):
        MSResNet(SpikingCNNConfig())
    with pytest.raises(TypeError, match="takes one MSResNetConfig"):
        MSResNet()


def test_every_builder_is_importable_by_its_name():
    """Entries are module attributes under their registered name (so builders pickle, and docs link them)."""
    import importlib
    import pickle

    for info in list_models():
        assert getattr(importlib.import_module(info.builder.__module__), info.name) is info.builder, info.name
        assert pickle.loads(pickle.dumps(info.builder)) is info.builder, info.name
