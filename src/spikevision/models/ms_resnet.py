"""MS-ResNet (membrane-shortcut spiking ResNet) and the vanilla spiking ResNet baseline.

Hu, Deng, Wu, Yao, Li, "Advancing Spiking Neural Networks towards Deep
Residual Learning", IEEE TNNLS 2024 (arXiv 2112.08954). Authors' code:
https://github.com/Ariande1/MS-ResNet ("MS-ResNet issue #N" below is an issue there).

BibTeX::

    @article{hu2024advancing,
      title={Advancing Spiking Neural Networks towards Deep Residual Learning},
      author={Hu, Yifan and Deng, Lei and Wu, Yujie and Yao, Man and Li, Guoqi},
      journal={IEEE Transactions on Neural Networks and Learning Systems},
      year={2024}}

Two block types share one network class (``block_type``):

* ``"ms"`` (:class:`MSBlock`): pre-activation ``LIF -> conv -> BN -> LIF ->
  conv -> BN`` plus the shortcut, **no neuron after the addition**: the
  residual stream carries real-valued membrane inputs and the main path is an
  identity. With the last BN of each branch at gamma 0, every block equals its
  shortcut at initialisation, i.e. exactly the identity unless it projects
  (block dynamical isometry; gradients are equal at the inputs of a stage).
* ``"vanilla"`` (:class:`SpikingBasicBlock`): the ANN ResNet with ReLUs
  replaced by LIFs, ``conv -> BN -> LIF -> conv -> BN``, add, then a LIF on
  the main path (the paper's degradation baseline, family ``spiking_resnet``).

Released quirks kept by default (clean options in brackets): projection
shortcuts act on the real-valued stream, so they are MACs
[``spiking_shortcut=True``: ``LIF -> conv1x1 -> BN``, not the paper's];
the 104 stem has three convs with bias and no nonlinearity between them.
The released code's AvgPool shortcut fires for any projection; here it is used
only at stride 2 (the only case in the released nets).

The GAC encoder (``encoder="gac"``, :mod:`spikevision.models.gac`) replaces
direct coding; the stem conv + BN then lives inside the encoder.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

from torch import Tensor, nn

from spikevision.layers.encoders import DirectEncoder
from spikevision.layers.gac import GatedAttentionCoding
from spikevision.layers.norm import TDBatchNorm2d
from spikevision.layers.temporal import TimeFolded
from spikevision.models.base import NeuronKind, ParamsLike, SpikingClassifier, resolve_neuron_params
from spikevision.models.registry import register_model
from spikevision.neuron.functional import NeuronParams
from spikevision.neuron.modules import build_neuron
from spikevision.neuron.surrogate import Rectangular

__all__ = ["MSResNet", "MSBlock", "SpikingBasicBlock", "MS_RESNET_NEURON", "SPIKING_RESNET_NEURON"]

BlockType = Literal["ms", "vanilla"]
StemKind = Literal["conv7x7", "deep3x3", "conv3x3"]
ShortcutKind = Literal["conv", "avgpool_conv"]

PAPER = "Hu et al., Advancing Spiking Neural Networks towards Deep Residual Learning, TNNLS 2024 (arXiv 2112.08954)"

#: MS-ResNet LIF [code]: u_t = 0.25 u_{t-1} (1 - s_{t-1}) + x_t, spike if u_t > 0.5,
#: spike detached in the reset, rectangular surrogate of height 1 on u in (0, 1).
MS_RESNET_NEURON = NeuronParams(
    decay=0.25, gain=1.0, v_th=0.5, v_reset=0.0, v_rest=0.0, reset="hard",
    strict=True, detach_reset=True, surrogate=Rectangular(width=1.0),
)
#: The vanilla baseline of the same paper uses the same neuron.
SPIKING_RESNET_NEURON = MS_RESNET_NEURON

MS_BN_WEIGHT_INIT = 0.5  # BN gamma = V_th (tdBN's alpha * V_th), beta = 0
IMAGENET_WIDTHS = (64, 128, 256, 512)
IMAGENET_STRIDES = (2, 2, 2, 2)  # stage 1 has stride 2 (no max-pool after the stem)
CIFAR_WIDTHS = (16, 32, 64)  # confirmed for ResNet-20, assumed for every depth
CIFAR_STRIDES = (1, 2, 2)  # assumed [unverified]
DVS_STRIDES = (2, 2, 2)  # the extra stride 2 in the first stage (MS-ResNet issue #5)
CIFAR18_WIDTHS = (128, 256, 512)  # "CIFAR MS-ResNet-18" [3, 3, 2], the GAC backbone
IMAGENET_DROPOUT_104 = 0.2
MINI_T = 4  # ms_resnet_mini: spikevision's size for 28x28 inputs, not the paper's
MINI_INPUT = (1, 28, 28)
MINI_LAYERS = (2, 2, 2)
MINI_WIDTHS = (32, 64, 128)
IMAGENET_INPUT = (3, 224, 224)
CIFAR_INPUT = (3, 32, 32)
DVS_INPUT = (2, 128, 128)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> TimeFolded:
    return TimeFolded(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False))


class MSBlock(nn.Module):
    """MS-ResNet basic block: ``LIF -> conv3x3 -> BN -> LIF -> conv3x3 -> BN`` + shortcut.

    Hu et al., TNNLS 2024 (arXiv 2112.08954). No neuron after the addition, so
    the shortcut carries real values and the main path is an identity.

    Args:
        cin, cout: channels in and out.
        stride: stride of the first conv (and of the projection).
        shortcut: identity or projection module built by the network.
        neuron, params: neuron kind and constants.
        bn_weight_init: gamma of the first BN (paper: 0.5 = V_th).
        last_bn_weight_init: gamma of the last BN (paper: 0, so the block is
            the identity at initialisation).

    Shape: ``[T, B, cin, H, W]`` to ``[T, B, cout, H/stride, W/stride]``.
    """

    def __init__(self, cin: int, cout: int, stride: int, shortcut: nn.Module, *, neuron: NeuronKind,
                 params: NeuronParams, bn_weight_init: float, last_bn_weight_init: float) -> None:
        super().__init__()
        self.lif1 = build_neuron(neuron, params)
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = TDBatchNorm2d(cout, weight_init=bn_weight_init)
        self.lif2 = build_neuron(neuron, params)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = TDBatchNorm2d(cout, weight_init=last_bn_weight_init)
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(self.lif1(x)))
        out = self.bn2(self.conv2(self.lif2(out)))
        return out + self.shortcut(x)


class SpikingBasicBlock(nn.Module):
    """Vanilla spiking basic block: ``conv -> BN -> LIF -> conv -> BN``, + shortcut, ``-> LIF``.

    The degradation baseline of Hu et al., TNNLS 2024 (arXiv 2112.08954): the
    ANN ResNet with ReLUs replaced by LIFs, so a neuron sits on the main path
    after every addition. Same arguments and shapes as :class:`MSBlock`.
    """

    def __init__(self, cin: int, cout: int, stride: int, shortcut: nn.Module, *, neuron: NeuronKind,
                 params: NeuronParams, bn_weight_init: float, last_bn_weight_init: float) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = TDBatchNorm2d(cout, weight_init=bn_weight_init)
        self.lif1 = build_neuron(neuron, params)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = TDBatchNorm2d(cout, weight_init=last_bn_weight_init)
        self.shortcut = shortcut
        self.lif_out = build_neuron(neuron, params)

    def forward(self, x: Tensor) -> Tensor:
        out = self.lif1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.lif_out(out + self.shortcut(x))


BLOCKS: dict[str, type[nn.Module]] = {"ms": MSBlock, "vanilla": SpikingBasicBlock}


def _shortcut(kind: ShortcutKind, cin: int, cout: int, stride: int, *, spiking: bool, neuron: NeuronKind,
              params: NeuronParams, bn_weight_init: float) -> nn.Module:
    """Identity when shapes match; else ``[AvgPool2] [-> LIF] -> conv1x1 -> BN``.

    ``"conv"``: conv1x1 with the block's stride (ResNet-18/34). ``"avgpool_conv"``
    (ResNet-104, ResNet-D style): AvgPool 2x2 then a stride-1 conv1x1, the pool
    only at stride 2. ``spiking`` puts a LIF before the conv (not the paper's).
    """
    if stride == 1 and cin == cout:
        return nn.Identity()
    layers: list[nn.Module] = []
    conv_stride = stride
    if kind == "avgpool_conv" and stride == 2:
        layers.append(TimeFolded(nn.AvgPool2d(2)))
        conv_stride = 1
    elif kind not in ("conv", "avgpool_conv") or stride not in (1, 2):
        raise ValueError(
            f"unsupported shortcut {kind!r} with stride {stride}; use 'conv' or 'avgpool_conv' with stride 1 or 2"
        )
    if spiking:
        layers.append(build_neuron(neuron, params))
    layers.append(TimeFolded(nn.Conv2d(cin, cout, 1, stride=conv_stride, bias=False)))
    layers.append(TDBatchNorm2d(cout, weight_init=bn_weight_init))
    return nn.Sequential(*layers)


def _stem(kind: StemKind, in_chans: int, width: int, bn_weight_init: float) -> nn.Sequential:
    """Per-frame stem ``[N, in_chans, H, W] -> [N, width, H', W']``: conv(s) then BN, no neuron.

    Per-frame (not time-major) so that the GAC encoder can run it once on a
    static image; applied to ``[T*B, ...]`` by :class:`TimeFolded` its BN is
    exactly tdBN (statistics over time and batch).
    """
    if kind == "conv7x7":  # ResNet-18/34: 7x7/2, no bias; the max-pool is defined but unused
        convs = [nn.Conv2d(in_chans, width, 7, stride=2, padding=3, bias=False)]
    elif kind == "deep3x3":  # ResNet-104: three 3x3 convs with bias, no nonlinearity between (released)
        convs = [nn.Conv2d(in_chans, width, 3, stride=2, padding=1), nn.Conv2d(width, width, 3, padding=1),
                 nn.Conv2d(width, width, 3, padding=1)]
    elif kind == "conv3x3":  # CIFAR / DVS nets: 3x3/1 (assumed for the 6n+2 nets)
        convs = [nn.Conv2d(in_chans, width, 3, stride=1, padding=1, bias=False)]
    else:
        raise ValueError(f"unknown stem {kind!r}; choose 'conv7x7', 'deep3x3' or 'conv3x3'")
    bn = nn.BatchNorm2d(width)
    nn.init.constant_(bn.weight, bn_weight_init)
    return nn.Sequential(*convs, bn)


class MSResNet(SpikingClassifier):
    """Spiking ResNet with membrane shortcuts (``block_type="ms"``) or vanilla blocks.

    Hu et al., TNNLS 2024 (arXiv 2112.08954). Holds no variant tables: the
    registered builders below fix the published numbers.

    Pipeline: encoder (image to ``[T, B, C, H, W]``) -> stem (conv + BN,
    per step; plus a LIF for vanilla blocks) -> stages of blocks -> LIF (MS
    only; vanilla blocks already end in one) -> global average pool -> mean
    over ``T`` -> dropout -> Linear.

    Args:
        layers: blocks per stage.
        widths: channels per stage.
        strides: stride of each stage's first block.
        stem: per-frame stem module (see ``_stem``); ignored in favour of the
            encoder's when ``encoder_has_stem``.
        stem_width: output channels of the stem.
        in_chans: input channels.
        num_classes: classes (0 gives ``pre_logits``-only, an identity head).
        T: time steps.
        encoder: image to sequence module (:class:`DirectEncoder` or GAC).
        encoder_has_stem: the encoder applies the stem itself (GAC); every
            input, image or sequence, then goes through the encoder.
        block_type: ``"ms"`` or ``"vanilla"``.
        shortcut: ``"conv"`` or ``"avgpool_conv"`` projection.
        neuron, neuron_params: neuron kind and constants for every neuron.
        dropout: before the classifier (paper: 0.2 for ResNet-104 only).
        spiking_shortcut: LIF before projection convs (clean option).
        bn_weight_init: gamma of every BN except the last of each branch.
        last_bn_weight_init: gamma of the last BN of each branch.
        stem_once: in training mode, with direct coding of a static image,
            run the stem's conv + BN once per image and repeat the result over
            ``T`` (a view), instead of running it on ``T`` repeated frames;
            outputs and gradients are those of the repeated computation up to
            float round-off, BN's running variance uses the Bessel factor of
            ``B*H*W`` instead of ``T*B*H*W`` samples. Evaluation mode,
            sequences, and GAC (which has its own static fast path) always run
            the per-step network. False: the literal per-step computation
            (the image builders of both families take ``stem_once``; default True).

    Shape: ``[B, C, H, W]`` (or ``[T, B, C, H, W]``) to ``[B, num_classes]``.

    Raises:
        ValueError: mismatched stage lists, an unknown ``block_type``, vanilla
            blocks behind an encoder with its own stem; at call time, inputs
            with the wrong channel count or ``T``.
    """

    def __init__(self, *, layers: Sequence[int], widths: Sequence[int], strides: Sequence[int], stem: nn.Module,
                 stem_width: int, in_chans: int, num_classes: int, T: int, encoder: nn.Module,
                 encoder_has_stem: bool, block_type: BlockType, shortcut: ShortcutKind, neuron: NeuronKind,
                 neuron_params: NeuronParams, dropout: float, spiking_shortcut: bool, bn_weight_init: float,
                 last_bn_weight_init: float, stem_once: bool) -> None:
        super().__init__()
        if not (len(layers) == len(widths) == len(strides)):
            raise ValueError(f"layers, widths and strides differ in length: {layers}, {widths}, {strides}")
        if block_type not in BLOCKS:
            raise ValueError(f"unknown block_type {block_type!r}; choose one of {sorted(BLOCKS)}")
        if encoder_has_stem and block_type == "vanilla":
            raise ValueError("an encoder with its own stem (GAC) feeds real values to MS blocks; use block_type='ms'")
        self.T, self.num_classes, self.in_chans = T, num_classes, in_chans
        self.stem_once = stem_once
        self.block_type = block_type
        self.encoder = encoder
        self.encoder_has_stem = encoder_has_stem
        self.stem = nn.Identity() if encoder_has_stem else TimeFolded(stem)
        self.stem_neuron = build_neuron(neuron, neuron_params) if block_type == "vanilla" else nn.Identity()
        block_cls = BLOCKS[block_type]
        stages, cin = [], stem_width
        for n_blocks, width, stride in zip(layers, widths, strides):
            blocks = []
            for i in range(n_blocks):
                s = stride if i == 0 else 1
                sc = _shortcut(shortcut, cin, width, s, spiking=spiking_shortcut, neuron=neuron,
                               params=neuron_params, bn_weight_init=bn_weight_init)
                blocks.append(block_cls(cin, width, s, sc, neuron=neuron, params=neuron_params,
                                        bn_weight_init=bn_weight_init, last_bn_weight_init=last_bn_weight_init))
                cin = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.final_neuron = build_neuron(neuron, neuron_params) if block_type == "ms" else nn.Identity()
        self.num_features = cin
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes) if num_classes > 0 else nn.Identity()

    def encode(self, x: Tensor) -> Tensor:
        """Images (and, for an encoder with its own stem, sequences) through the encoder."""
        if x.dim() in (4, 5) and x.shape[-3] != self.in_chans:
            raise ValueError(
                f"{type(self).__name__} was built for {self.in_chans} input channels, got shape {list(x.shape)}; "
                f"rebuild with in_chans={x.shape[-3]}"
            )
        if self.encoder_has_stem:
            self.check_input(x)
            return self.encoder(x)
        return super().encode(x)

    def forward_features(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` (encoder output) to spikes ``[T, B, C', H', W']`` before pooling."""
        return self._body(self.stem(x))

    def _body(self, u: Tensor) -> Tensor:
        """Stem output ``[T, B, C, H, W]`` to the final spikes."""
        return self.final_neuron(self.stages(self.stem_neuron(u)))

    def forward(self, x: Tensor) -> Tensor:
        if not (self.stem_once and self.training and x.dim() == 4 and isinstance(self.encoder, DirectEncoder)):
            return super().forward(x)
        self.encode(x)  # input checks only: direct coding is a view
        u = self.stem.module(x)  # [B, C, H', W']: conv + BN of a static image, the same at every step
        return self.forward_head(self._body(u.unsqueeze(0).expand(self.T, *u.shape)))

    def forward_head(self, x: Tensor, pre_logits: bool = False, per_step: bool = False) -> Tensor:
        """Global average pool, then mean over ``T`` (or per step), dropout, Linear."""
        x = x.mean(dim=(-2, -1))  # [T, B, C]: per-step firing rates
        if pre_logits:
            return x
        if per_step:
            return self.fc(self.dropout(x))  # [T, B, classes]
        return self.fc(self.dropout(x.mean(0)))  # [B, classes]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh ``Linear(num_features, num_classes)`` (0: identity)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def residual_blocks(self) -> dict[str, nn.Module]:
        """Every block of every stage (``"stages.<i>.<j>"``), in forward order."""
        return self._children_of(*(f"stages.{i}" for i in range(len(self.stages))))


def _init_conv_kaiming_fan_out(model: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU gain) for every Conv2d, zero biases (GAC's ImageNet code).

    He et al., "Delving Deep into Rectifiers", ICCV 2015 (arXiv 1502.01852).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _ms_resnet(*, layers: Sequence[int], widths: Sequence[int], strides: Sequence[int], stem: StemKind,
               stem_width: int, shortcut: ShortcutKind = "conv", block_type: BlockType = "ms", num_classes: int,
               T: int, in_chans: int, neuron: NeuronKind, neuron_params: ParamsLike,
               default_neuron: NeuronParams = MS_RESNET_NEURON, encoder: Literal["direct", "gac"] = "direct",
               gac_kernel_size: int = 4, dropout: float = 0.0, spiking_shortcut: bool = False,
               bn_weight_init: float = MS_BN_WEIGHT_INIT, zero_init_last_bn: bool = True,
               conv_init: Literal["default", "kaiming_fan_out"] = "default", stem_once: bool = True) -> MSResNet:
    """Family builder shared by MS-ResNet, the vanilla baseline and GAC models."""
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    params = resolve_neuron_params(default_neuron, neuron_params)
    stem_module = _stem(stem, in_chans, stem_width, bn_weight_init)
    if encoder == "direct":
        enc: nn.Module = DirectEncoder(T)
    elif encoder == "gac":
        enc = GatedAttentionCoding(T, stem_module, stem_width, neuron=neuron, neuron_params=params,
                                   kernel_size=gac_kernel_size)
    else:
        raise ValueError(f"unknown encoder {encoder!r}; choose 'direct' or 'gac'")
    model = MSResNet(
        layers=layers, widths=widths, strides=strides, stem=stem_module, stem_width=stem_width, in_chans=in_chans,
        num_classes=num_classes, T=T, encoder=enc, encoder_has_stem=encoder == "gac", block_type=block_type,
        shortcut=shortcut, neuron=neuron, neuron_params=params, dropout=dropout, spiking_shortcut=spiking_shortcut,
        bn_weight_init=bn_weight_init, last_bn_weight_init=0.0 if zero_init_last_bn else bn_weight_init,
        stem_once=stem_once,
    )
    if conv_init == "kaiming_fan_out":
        _init_conv_kaiming_fan_out(model)
    elif conv_init != "default":
        raise ValueError(f"unknown conv_init {conv_init!r}; choose 'default' or 'kaiming_fan_out'")
    return model


def _imagenet(depth: int, block_type: BlockType, **kwargs: Any) -> MSResNet:
    arch = {18: ((2, 2, 2, 2), "conv7x7", "conv"), 34: ((3, 4, 6, 3), "conv7x7", "conv"),
            104: ((3, 8, 32, 8), "deep3x3", "avgpool_conv")}[depth]
    layers, stem, shortcut = arch
    return _ms_resnet(layers=layers, widths=IMAGENET_WIDTHS, strides=IMAGENET_STRIDES, stem=stem, stem_width=64,
                      shortcut=shortcut, block_type=block_type, zero_init_last_bn=block_type == "ms", **kwargs)


def _dvs20(block_type: BlockType, **kwargs: Any) -> MSResNet:
    """ResNet-20 shape for CIFAR10-DVS: 2 input channels, stage strides 2/2/2."""
    return _ms_resnet(layers=(3, 3, 3), widths=CIFAR_WIDTHS, strides=DVS_STRIDES, stem="conv3x3", stem_width=16,
                      block_type=block_type, zero_init_last_bn=block_type == "ms", **kwargs)


def _cifar18(block_type: BlockType, **kwargs: Any) -> MSResNet:
    """The [3, 3, 2] "CIFAR ResNet-18/19" shape: widths 128/256/512, 3x3 stem of 64."""
    return _ms_resnet(layers=(3, 3, 2), widths=CIFAR18_WIDTHS, strides=CIFAR_STRIDES, stem="conv3x3", stem_width=64,
                      block_type=block_type, zero_init_last_bn=block_type == "ms", **kwargs)


def _mini(layers: Sequence[int], widths: Sequence[int], block_type: BlockType, **kwargs: Any) -> MSResNet:
    """spikevision's 28x28 shape: 3x3 stem of ``widths[0]``, every stage starting with stride 2."""
    if len(layers) != len(widths) or not widths:
        raise ValueError(f"layers and widths must be non-empty and of equal length, got {list(layers)} and "
                         f"{list(widths)}")
    return _ms_resnet(layers=tuple(layers), widths=tuple(widths), strides=(2,) * len(widths), stem="conv3x3",
                      stem_width=widths[0], block_type=block_type, zero_init_last_bn=block_type == "ms", **kwargs)


def _cifar(n: int, block_type: BlockType, **kwargs: Any) -> MSResNet:
    """6n+2 CIFAR net; stem 3x3/1 + BN and conv1x1 projections are assumptions (see docs)."""
    return _ms_resnet(layers=(n, n, n), widths=CIFAR_WIDTHS, strides=CIFAR_STRIDES, stem="conv3x3", stem_width=16,
                      block_type=block_type, zero_init_last_bn=block_type == "ms", **kwargs)


# ---------------------------------------------------------------------------
# Registered builders: MS-ResNet (family "ms_resnet")
# ---------------------------------------------------------------------------

_MS = dict(family="ms_resnet", paper=PAPER, neuron=MS_RESNET_NEURON)
_IMAGENET = dict(T=6, input_size=IMAGENET_INPUT, num_classes=1000, modality="image")
_CIFAR = dict(T=6, input_size=CIFAR_INPUT, num_classes=10, modality="image")


@register_model(**_MS, **_IMAGENET)
def ms_resnet18(*, num_classes: int = 1000, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                neuron_params: ParamsLike = None, spiking_shortcut: bool = False, stem_once: bool = True) -> MSResNet:
    """MS-ResNet-18 for ImageNet: [2, 2, 2, 2], 7x7/2 stem, stage-1 stride 2 (about 11.69M parameters)."""
    return _imagenet(18, "ms", num_classes=num_classes, T=T, in_chans=in_chans, neuron=neuron,
                     neuron_params=neuron_params, spiking_shortcut=spiking_shortcut, stem_once=stem_once)


@register_model(**_MS, **_IMAGENET)
def ms_resnet34(*, num_classes: int = 1000, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                neuron_params: ParamsLike = None, spiking_shortcut: bool = False, stem_once: bool = True) -> MSResNet:
    """MS-ResNet-34 for ImageNet: [3, 4, 6, 3] (about 21.80M parameters)."""
    return _imagenet(34, "ms", num_classes=num_classes, T=T, in_chans=in_chans, neuron=neuron,
                     neuron_params=neuron_params, spiking_shortcut=spiking_shortcut, stem_once=stem_once)


@register_model(**_MS, **_IMAGENET)
def ms_resnet104(*, num_classes: int = 1000, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                 neuron_params: ParamsLike = None, spiking_shortcut: bool = False,
                 dropout: float = IMAGENET_DROPOUT_104, stem_once: bool = True) -> MSResNet:
    """MS-ResNet-104 for ImageNet: [3, 8, 32, 8], deep 3x3 stem, AvgPool + conv1x1 projections, dropout 0.2."""
    return _imagenet(104, "ms", num_classes=num_classes, T=T, in_chans=in_chans, neuron=neuron,
                     neuron_params=neuron_params, spiking_shortcut=spiking_shortcut, dropout=dropout,
                     stem_once=stem_once)


def _ms_cifar(n: int, num_classes: int, T: int, in_chans: int, neuron: NeuronKind, neuron_params: ParamsLike,
              spiking_shortcut: bool, stem_once: bool) -> MSResNet:
    return _cifar(n, "ms", num_classes=num_classes, T=T, in_chans=in_chans, neuron=neuron,
                  neuron_params=neuron_params, spiking_shortcut=spiking_shortcut, stem_once=stem_once)


@register_model(**_MS, **_CIFAR)
def ms_resnet20(*, num_classes: int = 10, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                neuron_params: ParamsLike = None, spiking_shortcut: bool = False, stem_once: bool = True) -> MSResNet:
    """MS-ResNet-20 for CIFAR (n = 3, widths 16/32/64)."""
    return _ms_cifar(3, num_classes, T, in_chans, neuron, neuron_params, spiking_shortcut, stem_once)


@register_model(**_MS, **_CIFAR)
def ms_resnet32(*, num_classes: int = 10, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                neuron_params: ParamsLike = None, spiking_shortcut: bool = False, stem_once: bool = True) -> MSResNet:
    """MS-ResNet-32 for CIFAR (n = 5)."""
    return _ms_cifar(5, num_classes, T, in_chans, neuron, neuron_params, spiking_shortcut, stem_once)


@register_model(**_MS, **_CIFAR)
def ms_resnet44(*, num_classes: int = 10, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                neuron_params: ParamsLike = None, spiking_shortcut: bool = False, stem_once: bool = True) -> MSResNet:
    """MS-ResNet-44 for CIFAR (n = 7)."""
    return _ms_cifar(7, num_classes, T, in_chans, neuron, neuron_params, spiking_shortcut, stem_once)


@register_model(**_MS, **_CIFAR)
def ms_resnet56(*, num_classes: int = 10, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                neuron_params: ParamsLike = None, spiking_shortcut: bool = False, stem_once: bool = True) -> MSResNet:
    """MS-ResNet-56 for CIFAR (n = 9)."""
    return _ms_cifar(9, num_classes, T, in_chans, neuron, neuron_params, spiking_shortcut, stem_once)


@register_model(**_MS, **_CIFAR)
def ms_resnet110(*, num_classes: int = 10, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                 neuron_params: ParamsLike = None, spiking_shortcut: bool = False, stem_once: bool = True) -> MSResNet:
    """MS-ResNet-110 for CIFAR (n = 18)."""
    return _ms_cifar(18, num_classes, T, in_chans, neuron, neuron_params, spiking_shortcut, stem_once)


@register_model(**_MS, **_CIFAR)
def ms_resnet482(*, num_classes: int = 10, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                 neuron_params: ParamsLike = None, spiking_shortcut: bool = False, stem_once: bool = True) -> MSResNet:
    """MS-ResNet-482 for CIFAR (n = 80, [80, 80, 80], MS-ResNet issue #8)."""
    return _ms_cifar(80, num_classes, T, in_chans, neuron, neuron_params, spiking_shortcut, stem_once)


@register_model(**_MS, T=20, input_size=DVS_INPUT, num_classes=10, modality="events")
def ms_resnet20_dvs(*, num_classes: int = 10, T: int = 20, in_chans: int = 2, neuron: NeuronKind = "lif",
                    neuron_params: ParamsLike = None, spiking_shortcut: bool = False) -> MSResNet:
    """MS-ResNet-20 for CIFAR10-DVS: 2 polarity channels, extra stride 2 in stage 1.

    Input: event frames ``[T, B, 2, 128, 128]`` (no encoder needed). T = 20 is
    PLIF's CIFAR10-DVS setting, whose pipeline the authors reused [assumed].
    """
    return _dvs20("ms", num_classes=num_classes, T=T, in_chans=in_chans, neuron=neuron,
                  neuron_params=neuron_params, spiking_shortcut=spiking_shortcut)


@register_model(**_MS, **_CIFAR)
def ms_resnet18_cifar(*, num_classes: int = 10, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                      neuron_params: ParamsLike = None, spiking_shortcut: bool = False,
                      stem_once: bool = True) -> MSResNet:
    """"CIFAR MS-ResNet-18" of later papers: [3, 3, 2], widths 128/256/512, 3x3 stem of 64 (the GAC backbone)."""
    return _cifar18("ms", num_classes=num_classes, T=T, in_chans=in_chans, neuron=neuron,
                    neuron_params=neuron_params, spiking_shortcut=spiking_shortcut, stem_once=stem_once)


@register_model(**_MS, T=MINI_T, input_size=MINI_INPUT, num_classes=10, modality="image")
def ms_resnet_mini(*, num_classes: int = 10, T: int = MINI_T, in_chans: int = 1,
                   layers: Sequence[int] = MINI_LAYERS, widths: Sequence[int] = MINI_WIDTHS,
                   neuron: NeuronKind = "lif", neuron_params: ParamsLike = None,
                   spiking_shortcut: bool = False, stem_once: bool = True) -> MSResNet:
    """Small MS-ResNet for 28x28 images: spikevision's own size, NOT from the paper.

    The paper's MS blocks, neuron and initialisation at a CPU-friendly shape:
    3x3 stem of ``widths[0]`` channels at full resolution, then one stage per
    entry of ``layers``, each starting with a stride-2 block (28 -> 14 -> 7 -> 4
    with the defaults [2, 2, 2] and 32/64/128), global average pooling. Every
    stage halves the resolution, so most of the compute sits at 14x14 and below
    (about 4x fewer MACs per step than MS-ResNet-20 at 28x28, with 2.6x its
    parameters). It is the Fashion-MNIST headline model (``configs/ms_resnet_mini_fashion_mnist.yaml``).
    ``gac_ms_resnet_mini`` is the same network behind Qiu et al.'s GAC encoder.
    """
    return _mini(layers, widths, "ms", num_classes=num_classes, T=T, in_chans=in_chans, neuron=neuron,
                 neuron_params=neuron_params, spiking_shortcut=spiking_shortcut, stem_once=stem_once)


# ---------------------------------------------------------------------------
# Registered builders: vanilla spiking ResNet baseline (family "spiking_resnet")
# ---------------------------------------------------------------------------

_VANILLA = dict(family="spiking_resnet", paper=PAPER + ", vanilla baseline", neuron=SPIKING_RESNET_NEURON)


def _vanilla_kwargs(num_classes: int, T: int, in_chans: int, neuron: NeuronKind, neuron_params: ParamsLike,
                    stem_once: bool = True) -> dict[str, Any]:
    return dict(num_classes=num_classes, T=T, in_chans=in_chans, neuron=neuron, neuron_params=neuron_params,
                default_neuron=SPIKING_RESNET_NEURON, stem_once=stem_once)


@register_model(**_VANILLA, **_IMAGENET)
def spiking_resnet18(*, num_classes: int = 1000, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                     neuron_params: ParamsLike = None, stem_once: bool = True) -> MSResNet:
    """Vanilla spiking ResNet-18, the shapes of :func:`ms_resnet18`."""
    return _imagenet(18, "vanilla", **_vanilla_kwargs(num_classes, T, in_chans, neuron, neuron_params, stem_once))


@register_model(**_VANILLA, **_IMAGENET)
def spiking_resnet34(*, num_classes: int = 1000, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                     neuron_params: ParamsLike = None, stem_once: bool = True) -> MSResNet:
    """Vanilla spiking ResNet-34, the shapes of :func:`ms_resnet34`."""
    return _imagenet(34, "vanilla", **_vanilla_kwargs(num_classes, T, in_chans, neuron, neuron_params, stem_once))


@register_model(**_VANILLA, **_IMAGENET)
def spiking_resnet104(*, num_classes: int = 1000, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                      neuron_params: ParamsLike = None, dropout: float = IMAGENET_DROPOUT_104,
                      stem_once: bool = True) -> MSResNet:
    """Vanilla spiking ResNet-104, the shapes of :func:`ms_resnet104`."""
    return _imagenet(104, "vanilla", dropout=dropout,
                     **_vanilla_kwargs(num_classes, T, in_chans, neuron, neuron_params, stem_once))


@register_model(**_VANILLA, **_CIFAR)
def spiking_resnet20(*, num_classes: int = 10, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                     neuron_params: ParamsLike = None, stem_once: bool = True) -> MSResNet:
    """Vanilla spiking ResNet-20 for CIFAR (n = 3)."""
    return _cifar(3, "vanilla", **_vanilla_kwargs(num_classes, T, in_chans, neuron, neuron_params, stem_once))


@register_model(**_VANILLA, **_CIFAR)
def spiking_resnet32(*, num_classes: int = 10, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                     neuron_params: ParamsLike = None, stem_once: bool = True) -> MSResNet:
    """Vanilla spiking ResNet-32 for CIFAR (n = 5)."""
    return _cifar(5, "vanilla", **_vanilla_kwargs(num_classes, T, in_chans, neuron, neuron_params, stem_once))


@register_model(**_VANILLA, **_CIFAR)
def spiking_resnet44(*, num_classes: int = 10, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                     neuron_params: ParamsLike = None, stem_once: bool = True) -> MSResNet:
    """Vanilla spiking ResNet-44 for CIFAR (n = 7)."""
    return _cifar(7, "vanilla", **_vanilla_kwargs(num_classes, T, in_chans, neuron, neuron_params, stem_once))


@register_model(**_VANILLA, **_CIFAR)
def spiking_resnet56(*, num_classes: int = 10, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                     neuron_params: ParamsLike = None, stem_once: bool = True) -> MSResNet:
    """Vanilla spiking ResNet-56 for CIFAR (n = 9)."""
    return _cifar(9, "vanilla", **_vanilla_kwargs(num_classes, T, in_chans, neuron, neuron_params, stem_once))


@register_model(**_VANILLA, **_CIFAR)
def spiking_resnet110(*, num_classes: int = 10, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                      neuron_params: ParamsLike = None, stem_once: bool = True) -> MSResNet:
    """Vanilla spiking ResNet-110 for CIFAR (n = 18)."""
    return _cifar(18, "vanilla", **_vanilla_kwargs(num_classes, T, in_chans, neuron, neuron_params, stem_once))


@register_model(**_VANILLA, **_CIFAR)
def spiking_resnet482(*, num_classes: int = 10, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                      neuron_params: ParamsLike = None, stem_once: bool = True) -> MSResNet:
    """Vanilla spiking ResNet-482 for CIFAR (n = 80)."""
    return _cifar(80, "vanilla", **_vanilla_kwargs(num_classes, T, in_chans, neuron, neuron_params, stem_once))


@register_model(**_VANILLA, **_CIFAR)
def spiking_resnet18_cifar(*, num_classes: int = 10, T: int = 6, in_chans: int = 3, neuron: NeuronKind = "lif",
                           neuron_params: ParamsLike = None, stem_once: bool = True) -> MSResNet:
    """Vanilla spiking ResNet of the [3, 3, 2] CIFAR shape of :func:`ms_resnet18_cifar`."""
    return _cifar18("vanilla", **_vanilla_kwargs(num_classes, T, in_chans, neuron, neuron_params, stem_once))


@register_model(**_VANILLA, T=MINI_T, input_size=MINI_INPUT, num_classes=10, modality="image")
def spiking_resnet_mini(*, num_classes: int = 10, T: int = MINI_T, in_chans: int = 1,
                        layers: Sequence[int] = MINI_LAYERS, widths: Sequence[int] = MINI_WIDTHS,
                        neuron: NeuronKind = "lif", neuron_params: ParamsLike = None,
                        stem_once: bool = True) -> MSResNet:
    """Vanilla spiking ResNet of the 28x28 shape of :func:`ms_resnet_mini` (spikevision's size)."""
    return _mini(layers, widths, "vanilla",
                 **_vanilla_kwargs(num_classes, T, in_chans, neuron, neuron_params, stem_once))


@register_model(**_VANILLA, T=20, input_size=DVS_INPUT, num_classes=10, modality="events")
def spiking_resnet20_dvs(*, num_classes: int = 10, T: int = 20, in_chans: int = 2, neuron: NeuronKind = "lif",
                         neuron_params: ParamsLike = None) -> MSResNet:
    """Vanilla spiking ResNet-20 for CIFAR10-DVS, the shape of :func:`ms_resnet20_dvs`."""
    return _dvs20("vanilla", **_vanilla_kwargs(num_classes, T, in_chans, neuron, neuron_params))
