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

from typing import Any

from dataclasses import replace

from spikevision.models.ms_resnet import (
    CIFAR_INPUT,
    GAC_KERNEL_SIZE,
    IMAGENET_INPUT,
    MINI_INPUT,
    MINI_T,
    MS_RESNET_NEURON,
    RESNET18,
    RESNET18_CIFAR,
    RESNET34,
    RESNET_MINI,
    MSResNet,
    MSResNetConfig,
    mini_shape,
)
from spikevision.models.zoo import register_config
from spikevision.neuron.functional import NeuronParams
from spikevision.neuron.surrogate import Triangle

__all__ = ["GAC_CIFAR_NEURON", "GAC_IMAGENET_NEURON", "GAC_APPENDIX_NEURON", "GAC_KERNEL_SIZE"]

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

CIFAR_T = 6  # hard-coded in the CIFAR code
IMAGENET_T = 4  # global constant of the ImageNet code
TORCH_BN_WEIGHT_INIT = 1.0  # PyTorch default BN gamma (GAC CIFAR code)

# ---------------------------------------------------------------------------
# Registered names: MS-ResNet configs with the GAC encoder (family "gac")
# ---------------------------------------------------------------------------

#: CIFAR code: its own neuron, PyTorch's default initialisation (BN gamma 1, no zero-init)
GAC_RESNET18_CIFAR = replace(RESNET18_CIFAR, encoder="gac", T=CIFAR_T, neuron_params=GAC_CIFAR_NEURON,
                             bn_weight_init=TORCH_BN_WEIGHT_INIT, zero_init_last_bn=False)
_IMAGENET = dict(encoder="gac", T=IMAGENET_T, neuron_params=GAC_IMAGENET_NEURON, conv_init="kaiming_fan_out")
GAC_RESNET18 = replace(RESNET18, **_IMAGENET)
GAC_RESNET34 = replace(RESNET34, **_IMAGENET)
GAC_RESNET_MINI = replace(RESNET_MINI, encoder="gac", T=MINI_T, neuron_params=GAC_APPENDIX_NEURON)

_ARGS = ("num_classes", "T", "in_chans", "neuron", "neuron_params", "kernel_size", "norm_layer")


def _gac(name: str, config: MSResNetConfig, input_size: tuple[int, int, int], doc: str,
         tunable: tuple[str, ...] = _ARGS, **kw) -> Any:
    """Register a GAC entry; the builders' ``kernel_size`` is the config's ``gac_kernel_size``."""
    return register_config(name, config, MSResNet, tunable=tunable, doc=doc, module=__name__, family="gac",
                           paper=PAPER, input_size=input_size, modality="image",
                           aliases={"kernel_size": "gac_kernel_size"}, **kw)


gac_ms_resnet18_cifar = _gac("gac_ms_resnet18_cifar", GAC_RESNET18_CIFAR, CIFAR_INPUT, """GAC-MS-ResNet-18 for CIFAR: \
3x3/1 stem of 64 + BN -> GAC -> [3, 3, 2] MS blocks of 128/256/512.

The released code hard-codes CIFAR-100 (pass ``num_classes=100``) and
keeps PyTorch's default initialisation (BN gamma 1, no zero-init).
""")
gac_ms_resnet18 = _gac("gac_ms_resnet18", GAC_RESNET18, IMAGENET_INPUT,
                       "GAC-MS-ResNet-18 for ImageNet: 7x7/2 stem + BN -> GAC at 112x112 -> [2, 2, 2, 2] MS blocks.")
gac_ms_resnet34 = _gac("gac_ms_resnet34", GAC_RESNET34, IMAGENET_INPUT,
                       "GAC-MS-ResNet-34 for ImageNet: [3, 4, 6, 3]; k = 4 (a code comment suggests 8, unconfirmed).")
gac_ms_resnet_mini = _gac("gac_ms_resnet_mini", GAC_RESNET_MINI, MINI_INPUT, """GAC in front of ``ms_resnet_mini`` \
(spikevision's 28x28 size, NOT from the paper).

Everything but the encoder equals ``ms_resnet_mini`` (MS-ResNet neuron, BN
gamma 0.5, zero-init last BN, stride-2 stages), so the two compare direct
coding with GAC and nothing else: the paper appendix's constants, which the
GAC ImageNet code also uses.
""", (*_ARGS[:3], "layers", "widths", *_ARGS[3:]), finish=mini_shape)
