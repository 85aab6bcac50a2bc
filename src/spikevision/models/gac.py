"""GAC-MS-ResNet: MS-ResNet backbones with the gated attention coding encoder.

Qiu, Zhu, Chou, Wang, Deng, Li, "Gated Attention Coding for Training
High-performance and Efficient Spiking Neural Networks", AAAI 2024
(arXiv 2308.06582). Authors' code: https://github.com/bollossom/GAC (separate
CIFAR and ImageNet trees; "GAC issue #N" below is an issue there).

BibTeX::

    @inproceedings{qiu2024gated,
      title={Gated Attention Coding for Training High-performance and Efficient Spiking Neural Networks},
      author={Qiu, Xuerui and Zhu, Rui-Jie and Chou, Yuhong and Wang, Zhaorui and Deng, Liang-Jian and Li, Guoqi},
      booktitle={AAAI}, year={2024}}

The encoder is :class:`~spikevision.layers.gac.GatedAttentionCoding`; it holds
the stem conv + BN, so ``O = sigmoid(TA * SCA) * LIF(U)`` enters stage 1 of
the MS-ResNet (:mod:`spikevision.models.ms_resnet`) directly.

Neuron constants: each code tree's own by default (CIFAR: decay 0.5,
threshold 1.0, triangle surrogate, reset not detached; ImageNet: the MS-ResNet
LIF). The paper appendix lists the MS-ResNet constants for both; pass
``neuron_params=GAC_APPENDIX_NEURON`` for that option (a user found it hurt on
CIFAR, GAC issue #5).

Initialisation: CIFAR keeps PyTorch defaults (BN gamma 1, no zero-init, as
released); ImageNet uses Kaiming-normal (fan_out) convs, BN gamma 0.5 and a
zero-initialised second BN in each block.
"""

from __future__ import annotations

from typing import Sequence

from spikevision.models.ms_resnet import (
    CIFAR18_WIDTHS,
    CIFAR_INPUT,
    CIFAR_STRIDES,
    IMAGENET_INPUT,
    IMAGENET_STRIDES,
    IMAGENET_WIDTHS,
    MS_BN_WEIGHT_INIT,
    MINI_INPUT,
    MINI_LAYERS,
    MINI_T,
    MINI_WIDTHS,
    MS_RESNET_NEURON,
    MSResNet,
    _mini,
    _ms_resnet,
)
from spikevision.models.base import NeuronKind, ParamsLike
from spikevision.models.registry import register_model
from spikevision.neuron.functional import NeuronParams
from spikevision.neuron.surrogate import Triangle

__all__ = ["GAC_CIFAR_NEURON", "GAC_IMAGENET_NEURON", "GAC_APPENDIX_NEURON"]

PAPER = (
    "Qiu et al., Gated Attention Coding for Training High-performance and Efficient SNNs, AAAI 2024 (arXiv 2308.06582)"
)

#: GAC CIFAR code: u <- 0.5 u + x; spike if u > 1; u <- (1 - s) u, the spike
#: *not* detached in the reset; triangle surrogate max(0, 1 - |u - 1|).
GAC_CIFAR_NEURON = NeuronParams(
    decay=0.5, gain=1.0, v_th=1.0, v_reset=0.0, v_rest=0.0, reset="hard",
    strict=True, detach_reset=False, surrogate=Triangle(width=2.0, peak=1.0),
)
#: GAC ImageNet code: the MS-ResNet LIF (decay 0.25, threshold 0.5, rectangular surrogate).
GAC_IMAGENET_NEURON = MS_RESNET_NEURON
#: The paper appendix (GAC issue #5): threshold 0.5, decay 0.25 for every data set.
GAC_APPENDIX_NEURON = MS_RESNET_NEURON

GAC_KERNEL_SIZE = 4  # SCA kernel; the author stresses k = 4 (GAC issue #5)
CIFAR_T = 6  # hard-coded in the CIFAR code
IMAGENET_T = 4  # global constant of the ImageNet code
TORCH_BN_WEIGHT_INIT = 1.0  # PyTorch default BN gamma (GAC CIFAR code)

_GAC = dict(family="gac", paper=PAPER, modality="image")


@register_model(**_GAC, T=CIFAR_T, input_size=CIFAR_INPUT, num_classes=10, neuron=GAC_CIFAR_NEURON)
def gac_ms_resnet18_cifar(*, num_classes: int = 10, T: int = CIFAR_T, in_chans: int = 3, neuron: NeuronKind = "lif",
                          neuron_params: ParamsLike = None, kernel_size: int = GAC_KERNEL_SIZE) -> MSResNet:
    """GAC-MS-ResNet-18 for CIFAR: 3x3/1 stem of 64 + BN -> GAC -> [3, 3, 2] MS blocks of 128/256/512.

    The released code hard-codes CIFAR-100 (pass ``num_classes=100``) and
    keeps PyTorch's default initialisation (BN gamma 1, no zero-init).
    """
    return _ms_resnet(layers=(3, 3, 2), widths=CIFAR18_WIDTHS, strides=CIFAR_STRIDES, stem="conv3x3", stem_width=64,
                      num_classes=num_classes, T=T, in_chans=in_chans, neuron=neuron, neuron_params=neuron_params,
                      default_neuron=GAC_CIFAR_NEURON, encoder="gac", gac_kernel_size=kernel_size,
                      bn_weight_init=TORCH_BN_WEIGHT_INIT, zero_init_last_bn=False, conv_init="default")


def _gac_imagenet(layers: tuple[int, ...], num_classes: int, T: int, in_chans: int, neuron: NeuronKind,
                  neuron_params: ParamsLike, kernel_size: int) -> MSResNet:
    return _ms_resnet(layers=layers, widths=IMAGENET_WIDTHS, strides=IMAGENET_STRIDES, stem="conv7x7", stem_width=64,
                      num_classes=num_classes, T=T, in_chans=in_chans, neuron=neuron, neuron_params=neuron_params,
                      default_neuron=GAC_IMAGENET_NEURON, encoder="gac", gac_kernel_size=kernel_size,
                      bn_weight_init=MS_BN_WEIGHT_INIT, zero_init_last_bn=True, conv_init="kaiming_fan_out")


@register_model(**_GAC, T=IMAGENET_T, input_size=IMAGENET_INPUT, num_classes=1000, neuron=GAC_IMAGENET_NEURON)
def gac_ms_resnet18(*, num_classes: int = 1000, T: int = IMAGENET_T, in_chans: int = 3, neuron: NeuronKind = "lif",
                    neuron_params: ParamsLike = None, kernel_size: int = GAC_KERNEL_SIZE) -> MSResNet:
    """GAC-MS-ResNet-18 for ImageNet: 7x7/2 stem + BN -> GAC at 112x112 -> [2, 2, 2, 2] MS blocks."""
    return _gac_imagenet((2, 2, 2, 2), num_classes, T, in_chans, neuron, neuron_params, kernel_size)


@register_model(**_GAC, T=IMAGENET_T, input_size=IMAGENET_INPUT, num_classes=1000, neuron=GAC_IMAGENET_NEURON)
def gac_ms_resnet34(*, num_classes: int = 1000, T: int = IMAGENET_T, in_chans: int = 3, neuron: NeuronKind = "lif",
                    neuron_params: ParamsLike = None, kernel_size: int = GAC_KERNEL_SIZE) -> MSResNet:
    """GAC-MS-ResNet-34 for ImageNet: [3, 4, 6, 3]; k = 4 (a code comment suggests 8, unconfirmed)."""
    return _gac_imagenet((3, 4, 6, 3), num_classes, T, in_chans, neuron, neuron_params, kernel_size)


@register_model(**_GAC, T=MINI_T, input_size=MINI_INPUT, num_classes=10, neuron=MS_RESNET_NEURON)
def gac_ms_resnet_mini(*, num_classes: int = 10, T: int = MINI_T, in_chans: int = 1,
                       layers: Sequence[int] = MINI_LAYERS, widths: Sequence[int] = MINI_WIDTHS,
                       neuron: NeuronKind = "lif", neuron_params: ParamsLike = None,
                       kernel_size: int = GAC_KERNEL_SIZE) -> MSResNet:
    """GAC in front of ``ms_resnet_mini`` (spikevision's 28x28 size, NOT from the paper).

    Everything but the encoder equals ``ms_resnet_mini`` (MS-ResNet neuron, BN
    gamma 0.5, zero-init last BN, stride-2 stages), so the two compare direct
    coding with GAC and nothing else: the paper appendix's constants, which the
    GAC ImageNet code also uses.
    """
    return _mini(layers, widths, "ms", num_classes=num_classes, T=T, in_chans=in_chans, neuron=neuron,
                 neuron_params=neuron_params, default_neuron=GAC_APPENDIX_NEURON, encoder="gac",
                 gac_kernel_size=kernel_size)
