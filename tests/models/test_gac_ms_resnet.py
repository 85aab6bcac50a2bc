"""GAC-MS-ResNet builders: the encoder owns the stem, constants per code tree, init, counts."""

import math

import pytest
import torch
import torchvision
from torch import nn

from spikevision.layers import GatedAttentionCoding
from spikevision.models import create_model, list_models
from spikevision.models.gac import GAC_APPENDIX_NEURON, GAC_CIFAR_NEURON, GAC_IMAGENET_NEURON
from spikevision.neuron import LIF, Rectangular, Triangle

T, B = 2, 2


@pytest.mark.parametrize("info", list_models("gac"), ids=lambda i: i.name)
def test_forward_backward_reaches_every_parameter(info):
    torch.manual_seed(0)
    model = create_model(info.name, T=T, num_classes=5)
    c, size = info.input_size[0], min(info.input_size[1], 64)  # ImageNet nets at 64x64
    logits = model(torch.randn(B, c, size, size))
    assert logits.shape == (B, 5) and torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([0, 4])).backward()
    missing = [n for n, q in model.named_parameters() if q.grad is None]
    assert not missing, missing


def test_encoder_owns_the_stem_and_gate_is_observable():
    torch.manual_seed(0)
    model = create_model("gac_ms_resnet18_cifar", T=3)
    assert isinstance(model.encoder, GatedAttentionCoding) and isinstance(model.stem, nn.Identity)
    assert isinstance(model.encoder.stem[0], nn.Conv2d) and model.encoder.stem[0].kernel_size == (3, 3)
    gates = []
    model.encoder.gate_act.register_forward_hook(lambda m, i, o: gates.append(o))
    x = torch.randn(B, 3, 32, 32)
    logits = model(x)
    assert gates[0].shape == (3, B, 64, 32, 32)
    assert ((gates[0] > 0) & (gates[0] < 1)).all()
    # the first block sees O = G * S: real values in [0, 1), zero where no spike
    o, g = model.encoder(x, return_gate=True)
    assert torch.equal(g, gates[0]) and o.shape == g.shape and (o < 1).all()
    # a sequence with the right T also goes through the encoder (its stem); another T raises
    logits_seq = model(x.unsqueeze(0).repeat(3, 1, 1, 1, 1))
    torch.testing.assert_close(logits_seq, logits, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="T=3"):
        model(torch.randn(4, B, 3, 32, 32))


def test_neuron_constants_per_code_tree_and_appendix_option():
    p = GAC_CIFAR_NEURON
    assert (p.decay, p.gain, p.v_th, p.reset, p.strict, p.detach_reset) == (0.5, 1.0, 1.0, "hard", True, False)
    assert p.surrogate == Triangle(width=2.0, peak=1.0)
    assert GAC_IMAGENET_NEURON.surrogate == Rectangular(1.0) and GAC_IMAGENET_NEURON.v_th == 0.5
    cifar = create_model("gac_ms_resnet18_cifar")
    lifs = [m for m in cifar.modules() if isinstance(m, LIF)]
    assert cifar.encoder.neuron in lifs and all(m.p == GAC_CIFAR_NEURON for m in lifs)
    appendix = create_model("gac_ms_resnet18_cifar", neuron_params=GAC_APPENDIX_NEURON)
    assert all(m.p.v_th == 0.5 and m.p.decay == 0.25 for m in appendix.modules() if isinstance(m, LIF))
    imnet = create_model("gac_ms_resnet34")
    assert all(m.p == GAC_IMAGENET_NEURON for m in imnet.modules() if isinstance(m, LIF))
    assert imnet.T == 4 and cifar.T == 6 and imnet.encoder.sca.kernel_size == 4


def test_initialisation_per_code_tree():
    torch.manual_seed(0)
    cifar = create_model("gac_ms_resnet18_cifar")
    blk = cifar.stages[0][0]
    assert torch.all(blk.bn2.weight == 1.0) and torch.all(cifar.encoder.stem[1].weight == 1.0)  # PyTorch defaults
    imnet = create_model("gac_ms_resnet18")
    blk = imnet.stages[3][1]
    assert torch.all(blk.bn2.weight == 0.0) and torch.all(blk.bn1.weight == 0.5)
    assert torch.all(imnet.encoder.stem[1].weight == 0.5)
    # Kaiming normal, fan_out: std sqrt(2 / (C_out k^2)); PyTorch's default is about 1 / sqrt(3 C_in k^2)
    w = blk.conv2.module.weight
    kaiming = math.sqrt(2.0 / (512 * 9))
    assert abs(w.std().item() - kaiming) / kaiming < 0.05
    w_default = cifar.stages[2][1].conv2.module.weight
    assert abs(w_default.std().item() - 1 / math.sqrt(3 * 512 * 9)) < 0.05 / math.sqrt(3 * 512 * 9)


def test_parameter_counts():
    resnet18 = sum(q.numel() for q in torchvision.models.resnet18().parameters())
    stage1_projection = 64 * 64 + 2 * 64
    for t, k in [(4, 4), (6, 8)]:
        ta = t * (t // 2) * 2  # two bias-free linear maps T -> T/2 -> T
        sca = 2 * 64 * 64 * k * k  # two bias-free k x k convs 64 -> 64
        n = sum(q.numel() for q in create_model("gac_ms_resnet18", T=t, kernel_size=k).parameters())
        assert n == resnet18 + stage1_projection + ta + sca
