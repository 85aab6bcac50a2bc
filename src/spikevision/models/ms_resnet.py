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

from dataclasses import dataclass, replace
from typing import Any, Literal

from torch import Tensor, nn

from spikevision.layers.encoders import DirectEncoder
from spikevision.layers.gac import GatedAttentionCoding
from spikevision.layers.norm import NormLayerLike, build_norm2d
from spikevision.layers.spike_conv import SpikeConv2d
from spikevision.layers.temporal import TimeFolded
from spikevision.models.base import NeuronKind, SpikingClassifier
from spikevision.models.registry import Modality
from spikevision.models.zoo import config_or_kwargs, register_config
from spikevision.neuron.functional import NeuronParams
from spikevision.neuron.modules import build_neuron
from spikevision.neuron.surrogate import Rectangular

__all__ = ["MSResNet", "MSResNetConfig", "MSBlock", "SpikingBasicBlock", "MS_RESNET_NEURON", "SPIKING_RESNET_NEURON"]

BlockType = Literal["ms", "vanilla"]
StemKind = Literal["conv7x7", "deep3x3", "conv3x3"]
ShortcutKind = Literal["conv", "avgpool_conv"]
EncoderKind = Literal["direct", "gac"]
ConvInit = Literal["default", "kaiming_fan_out"]
ENCODERS = ("direct", "gac")
CONV_INITS = ("default", "kaiming_fan_out")

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
GAC_KERNEL_SIZE = 4  # SCA kernel of the GAC encoder; the author stresses k = 4 (GAC issue #5)
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


def _conv3x3(cin: int, cout: int, stride: int = 1, *, spike_input: bool = False) -> TimeFolded:
    """A time-folded 3x3 conv; :class:`SpikeConv2d` (event-driven in CPU training) where it reads spikes."""
    conv = SpikeConv2d if spike_input else nn.Conv2d
    return TimeFolded(conv(cin, cout, 3, stride=stride, padding=1, bias=False))


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
        norm_layer: the norm after each conv, a name or a class
            (:func:`~spikevision.layers.norm.build_norm2d`; default tdBN).

    Shape: ``[T, B, cin, H, W]`` to ``[T, B, cout, H/stride, W/stride]``.
    """

    def __init__(self, cin: int, cout: int, stride: int, shortcut: nn.Module, *, neuron: NeuronKind,
                 params: NeuronParams, bn_weight_init: float, last_bn_weight_init: float,
                 norm_layer: NormLayerLike = "tdbn") -> None:
        super().__init__()
        self.lif1 = build_neuron(neuron, params)
        self.conv1 = _conv3x3(cin, cout, stride, spike_input=True)
        self.bn1 = build_norm2d(norm_layer, cout, bn_weight_init)
        self.lif2 = build_neuron(neuron, params)
        self.conv2 = _conv3x3(cout, cout, spike_input=True)
        self.bn2 = build_norm2d(norm_layer, cout, last_bn_weight_init)
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
                 params: NeuronParams, bn_weight_init: float, last_bn_weight_init: float,
                 norm_layer: NormLayerLike = "tdbn") -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = build_norm2d(norm_layer, cout, bn_weight_init)
        self.lif1 = build_neuron(neuron, params)
        self.conv2 = _conv3x3(cout, cout, spike_input=True)
        self.bn2 = build_norm2d(norm_layer, cout, last_bn_weight_init)
        self.shortcut = shortcut
        self.lif_out = build_neuron(neuron, params)

    def forward(self, x: Tensor) -> Tensor:
        out = self.lif1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.lif_out(out + self.shortcut(x))


BLOCKS: dict[str, type[nn.Module]] = {"ms": MSBlock, "vanilla": SpikingBasicBlock}


def _shortcut(kind: ShortcutKind, cin: int, cout: int, stride: int, *, spiking: bool, neuron: NeuronKind,
              params: NeuronParams, bn_weight_init: float, norm_layer: NormLayerLike = "tdbn") -> nn.Module:
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
    layers.append(build_norm2d(norm_layer, cout, bn_weight_init))
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


@dataclass(frozen=True)
class MSResNetConfig:
    """Everything that defines an MS-ResNet or a vanilla spiking ResNet: the only argument of :class:`MSResNet`.

    Defaults are the paper's ImageNet setting; a registered name is an entry that
    fills the rest (see the builders at the end of this module).

    Attributes:
        layers: blocks per stage.
        widths: channels per stage.
        strides: stride of each stage's first block.
        stem: per-frame stem (``"conv7x7"``, ``"deep3x3"`` or ``"conv3x3"``, see ``_stem``).
        stem_width: output channels of the stem.
        num_classes: classes (0 gives ``pre_logits``-only, an identity head).
        T: time steps.
        in_chans: input channels.
        block_type: ``"ms"`` (membrane shortcut) or ``"vanilla"`` (the degradation baseline).
        shortcut: ``"conv"`` or ``"avgpool_conv"`` projection.
        neuron, neuron_params: neuron kind and constants of every neuron.
        encoder: ``"direct"`` coding, or ``"gac"`` (Qiu et al., AAAI 2024), which then holds the stem.
        gac_kernel_size: GAC's spatial-channel attention kernel (``encoder="gac"`` only).
        dropout: before the classifier (paper: 0.2 for ResNet-104 only).
        spiking_shortcut: LIF before projection convs (clean option, not the paper's).
        bn_weight_init: gamma of every BN except the last of each branch (paper: 0.5 = V_th).
        zero_init_last_bn: the last BN of each branch starts at gamma 0, so every block is its
            shortcut at initialisation (MS blocks; the vanilla baseline keeps ``bn_weight_init``).
        conv_init: ``"default"`` (PyTorch's) or ``"kaiming_fan_out"`` (GAC's ImageNet code).
        stem_once: in training mode, with direct coding of a static image, run the stem's conv + BN
            once per image and repeat the result over ``T`` (a view) instead of running it on ``T``
            repeated frames (:meth:`SpikingClassifier.forward_features_static`); False: the literal
            per-step computation.
        norm_layer: the norm after each conv of the blocks and projections, a name or a class taking
            ``num_features`` (:func:`~spikevision.layers.norm.build_norm2d`; default tdBN). The stem's
            BN is per frame (it is tdBN on the folded sequence), so GAC can run it once.

    Raises:
        ValueError: mismatched stage lists, an unknown ``block_type``, ``encoder``, ``conv_init``, a
            ``T`` below 1, vanilla blocks behind an encoder with its own stem.
        TypeError: ``neuron_params`` that is not a :class:`NeuronParams` (builders resolve mappings).
    """

    layers: tuple[int, ...]
    widths: tuple[int, ...]
    strides: tuple[int, ...]
    stem: StemKind
    stem_width: int
    num_classes: int = 1000
    T: int = 6
    in_chans: int = 3
    block_type: BlockType = "ms"
    shortcut: ShortcutKind = "conv"
    neuron: NeuronKind = "lif"
    neuron_params: NeuronParams = MS_RESNET_NEURON
    encoder: EncoderKind = "direct"
    gac_kernel_size: int = GAC_KERNEL_SIZE
    dropout: float = 0.0
    spiking_shortcut: bool = False
    bn_weight_init: float = MS_BN_WEIGHT_INIT
    zero_init_last_bn: bool = True
    conv_init: ConvInit = "default"
    stem_once: bool = True
    norm_layer: NormLayerLike = "tdbn"

    def __post_init__(self) -> None:
        for name in ("layers", "widths", "strides"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not (len(self.layers) == len(self.widths) == len(self.strides)):
            raise ValueError(f"layers, widths and strides differ in length: {list(self.layers)}, "
                             f"{list(self.widths)}, {list(self.strides)}")
        if self.T < 1:
            raise ValueError(f"T must be >= 1, got {self.T}")
        for name, value, valid in (("block_type", self.block_type, BLOCKS), ("encoder", self.encoder, ENCODERS),
                                   ("conv_init", self.conv_init, CONV_INITS)):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; choose one of {sorted(valid)}")
        if self.encoder == "gac" and self.block_type == "vanilla":
            raise ValueError("an encoder with its own stem (GAC) feeds real values to MS blocks; use block_type='ms'")
        if not isinstance(self.neuron_params, NeuronParams):
            raise TypeError(f"neuron_params must be NeuronParams, got {type(self.neuron_params).__name__}; "
                            "resolve a mapping of changes with resolve_neuron_params(MS_RESNET_NEURON, changes)")


class MSResNet(SpikingClassifier):
    """Spiking ResNet with membrane shortcuts (``block_type="ms"``) or vanilla blocks.

    Hu et al., TNNLS 2024 (arXiv 2112.08954). Built from one :class:`MSResNetConfig`
    and holds no variant tables: the registered names at the end of this module
    fill the published numbers.

    Pipeline: encoder (image to ``[T, B, C, H, W]``) -> stem (conv + BN,
    per step; plus a LIF for vanilla blocks) -> stages of blocks -> LIF (MS
    only; vanilla blocks already end in one) -> global average pool -> mean
    over ``T`` -> dropout -> Linear.

    Args:
        config: the whole architecture (see :class:`MSResNetConfig`); kept as ``self.config``.
        kwargs: deprecated: the fields of the config, as the constructor took them before configs.

    Shape: ``[B, C, H, W]`` (or ``[T, B, C, H, W]``) to ``[B, num_classes]``.

    Raises:
        ValueError: at call time, inputs with the wrong channel count or ``T``.
    """

    def __init__(self, config: MSResNetConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        cfg = self.config = config_or_kwargs(MSResNet, MSResNetConfig, config, kwargs)
        self.T, self.num_classes, self.in_chans = cfg.T, cfg.num_classes, cfg.in_chans
        self.stem_once, self.block_type = cfg.stem_once, cfg.block_type
        stem = _stem(cfg.stem, cfg.in_chans, cfg.stem_width, cfg.bn_weight_init)
        self.encoder_has_stem = cfg.encoder == "gac"
        if self.encoder_has_stem:
            self.encoder: nn.Module = GatedAttentionCoding(cfg.T, stem, cfg.stem_width, neuron=cfg.neuron,
                                                           neuron_params=cfg.neuron_params,
                                                           kernel_size=cfg.gac_kernel_size)
        else:
            self.encoder = DirectEncoder(cfg.T)
        self.stem = nn.Identity() if self.encoder_has_stem else TimeFolded(stem)
        vanilla = cfg.block_type == "vanilla"
        self.stem_neuron = build_neuron(cfg.neuron, cfg.neuron_params) if vanilla else nn.Identity()
        stages, self.num_features = _stages(cfg)
        self.stages = nn.Sequential(*stages)
        self.final_neuron = nn.Identity() if vanilla else build_neuron(cfg.neuron, cfg.neuron_params)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        if cfg.conv_init == "kaiming_fan_out":
            _init_conv_kaiming_fan_out(self)

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

    def forward_features_static(self, x: Tensor) -> Tensor:
        """A static image ``[B, C, H, W]``: the stem's conv + BN once, repeated over ``T``, then the body."""
        u = self.stem.module(x)  # [B, C, H', W']: conv + BN of a static image, the same at every step
        return self._body(u.unsqueeze(0).expand(self.T, *u.shape))

    def _body(self, u: Tensor) -> Tensor:
        """Stem output ``[T, B, C, H, W]`` to the final spikes."""
        return self.final_neuron(self.stages(self.stem_neuron(u)))

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


def _stages(cfg: MSResNetConfig) -> tuple[list[nn.Sequential], int]:
    """The stages of blocks, each starting with the stage's stride (and a projection where shapes change),
    and the channels they end with."""
    block_cls = BLOCKS[cfg.block_type]
    last_gamma = 0.0 if cfg.zero_init_last_bn else cfg.bn_weight_init
    stages, cin = [], cfg.stem_width
    for n_blocks, width, stride in zip(cfg.layers, cfg.widths, cfg.strides):
        blocks = []
        for i in range(n_blocks):
            s = stride if i == 0 else 1
            sc = _shortcut(cfg.shortcut, cin, width, s, spiking=cfg.spiking_shortcut, neuron=cfg.neuron,
                           params=cfg.neuron_params, bn_weight_init=cfg.bn_weight_init, norm_layer=cfg.norm_layer)
            blocks.append(block_cls(cin, width, s, sc, neuron=cfg.neuron, params=cfg.neuron_params,
                                    bn_weight_init=cfg.bn_weight_init, last_bn_weight_init=last_gamma,
                                    norm_layer=cfg.norm_layer))
            cin = width
        stages.append(nn.Sequential(*blocks))
    return stages, cin


def _init_conv_kaiming_fan_out(model: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU gain) for every Conv2d, zero biases (GAC's ImageNet code).

    He et al., "Delving Deep into Rectifiers", ICCV 2015 (arXiv 1502.01852).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def mini_shape(config: MSResNetConfig, changes: dict[str, Any]) -> dict[str, Any]:
    """spikevision's 28x28 shape from its ``layers`` and ``widths``: 3x3 stem of ``widths[0]``, every stage
    starting with stride 2 (the ``finish`` of the mini entries: ``changes`` plus the derived fields).

    Raises:
        ValueError: empty or unequal ``layers`` and ``widths``.
    """
    layers, widths = changes.get("layers", config.layers), changes.get("widths", config.widths)
    if len(layers) != len(widths) or not widths:
        raise ValueError(f"layers and widths must be non-empty and of equal length, got {list(layers)} and "
                         f"{list(widths)}")
    return {**changes, "strides": (2,) * len(widths), "stem_width": widths[0]}


# ---------------------------------------------------------------------------
# Registered names: each fills an MSResNetConfig (the T / num_classes / in_chans defaults live there)
# ---------------------------------------------------------------------------

def _imagenet(layers: tuple[int, ...], stem: StemKind = "conv7x7", **changes: Any) -> MSResNetConfig:
    return MSResNetConfig(layers=layers, widths=IMAGENET_WIDTHS, strides=IMAGENET_STRIDES, stem=stem, stem_width=64,
                          **changes)


def _cifar(n: int) -> MSResNetConfig:
    """6n+2 CIFAR net; stem 3x3/1 + BN and conv1x1 projections are assumptions (see docs)."""
    return MSResNetConfig(layers=(n, n, n), widths=CIFAR_WIDTHS, strides=CIFAR_STRIDES, stem="conv3x3",
                          stem_width=16, num_classes=10)


RESNET18 = _imagenet((2, 2, 2, 2))
RESNET34 = _imagenet((3, 4, 6, 3))
RESNET104 = _imagenet((3, 8, 32, 8), "deep3x3", shortcut="avgpool_conv", dropout=IMAGENET_DROPOUT_104)
RESNET_CIFAR = {depth: _cifar((depth - 2) // 6) for depth in (20, 32, 44, 56, 110, 482)}
#: ResNet-20 for CIFAR10-DVS: 2 polarity channels, strides 2/2/2 (MS-ResNet issue #5), T = 20 [assumed]
RESNET20_DVS = replace(RESNET_CIFAR[20], strides=DVS_STRIDES, in_chans=DVS_INPUT[0], T=20)
#: the [3, 3, 2] "CIFAR ResNet-18/19" of later papers: widths 128/256/512, 3x3 stem of 64
RESNET18_CIFAR = replace(RESNET_CIFAR[20], layers=(3, 3, 2), widths=CIFAR18_WIDTHS, stem_width=64)
#: spikevision's own 28x28 size (NOT the paper's); the strides and stem width follow from ``widths``
RESNET_MINI = replace(RESNET_CIFAR[20], **mini_shape(RESNET_CIFAR[20], dict(
    layers=MINI_LAYERS, widths=MINI_WIDTHS, T=MINI_T, in_chans=MINI_INPUT[0])))

_ARGS = ("num_classes", "T", "in_chans", "neuron", "neuron_params", "spiking_shortcut", "stem_once", "norm_layer")
_ARGS_104 = (*_ARGS[:-2], "dropout", *_ARGS[-2:])
_ARGS_MINI = (*_ARGS[:3], "layers", "widths", *_ARGS[3:])
_ARGS_DVS = tuple(a for a in _ARGS if a != "stem_once")  # event frames are sequences: the stem runs per step


def _ms(name: str, config: MSResNetConfig, input_size: tuple[int, int, int], doc: str,
        tunable: tuple[str, ...] = _ARGS, modality: Modality = "image", **kw: Any) -> Any:
    """Register an MS-ResNet entry (family ``ms_resnet``)."""
    return register_config(name, config, MSResNet, tunable=tunable, doc=doc, module=__name__, family="ms_resnet",
                           paper=PAPER, input_size=input_size, modality=modality, **kw)


def _vanilla(name: str, config: MSResNetConfig, input_size: tuple[int, int, int], doc: str,
             tunable: tuple[str, ...] = _ARGS, modality: Modality = "image", **kw: Any) -> Any:
    """Register the vanilla baseline of an entry's shape (family ``spiking_resnet``): no zero-init last BN."""
    config = replace(config, block_type="vanilla", zero_init_last_bn=False, neuron_params=SPIKING_RESNET_NEURON)
    return register_config(name, config, MSResNet, tunable=tuple(a for a in tunable if a != "spiking_shortcut"),
                           doc=doc, module=__name__, family="spiking_resnet", paper=PAPER + ", vanilla baseline",
                           input_size=input_size, modality=modality, **kw)


_MINI_DOC = """Small MS-ResNet for 28x28 images: spikevision's own size, NOT from the paper.

The paper's MS blocks, neuron and initialisation at a CPU-friendly shape:
3x3 stem of ``widths[0]`` channels at full resolution, then one stage per
entry of ``layers``, each starting with a stride-2 block (28 -> 14 -> 7 -> 4
with the defaults [2, 2, 2] and 32/64/128), global average pooling. Every
stage halves the resolution, so most of the compute sits at 14x14 and below
(about 4x fewer MACs per step than MS-ResNet-20 at 28x28, with 2.6x its
parameters). It is the Fashion-MNIST headline model (``configs/ms_resnet_mini_fashion_mnist.yaml``).
``gac_ms_resnet_mini`` is the same network behind Qiu et al.'s GAC encoder.
"""
_DVS_DOC = """MS-ResNet-20 for CIFAR10-DVS: 2 polarity channels, extra stride 2 in stage 1.

Input: event frames ``[T, B, 2, 128, 128]`` (no encoder needed). T = 20 is
PLIF's CIFAR10-DVS setting, whose pipeline the authors reused [assumed].
"""

ms_resnet18 = _ms("ms_resnet18", RESNET18, IMAGENET_INPUT,
                  "MS-ResNet-18 for ImageNet: [2, 2, 2, 2], 7x7/2 stem, stage-1 stride 2 (about 11.69M parameters).")
ms_resnet34 = _ms("ms_resnet34", RESNET34, IMAGENET_INPUT, "MS-ResNet-34 for ImageNet: [3, 4, 6, 3] (about 21.80M "
                  "parameters).")
ms_resnet104 = _ms("ms_resnet104", RESNET104, IMAGENET_INPUT, "MS-ResNet-104 for ImageNet: [3, 8, 32, 8], deep 3x3 "
                   "stem, AvgPool + conv1x1 projections, dropout 0.2.", _ARGS_104)
ms_resnet20 = _ms("ms_resnet20", RESNET_CIFAR[20], CIFAR_INPUT, "MS-ResNet-20 for CIFAR (n = 3, widths 16/32/64).")
ms_resnet32 = _ms("ms_resnet32", RESNET_CIFAR[32], CIFAR_INPUT, "MS-ResNet-32 for CIFAR (n = 5).")
ms_resnet44 = _ms("ms_resnet44", RESNET_CIFAR[44], CIFAR_INPUT, "MS-ResNet-44 for CIFAR (n = 7).")
ms_resnet56 = _ms("ms_resnet56", RESNET_CIFAR[56], CIFAR_INPUT, "MS-ResNet-56 for CIFAR (n = 9).")
ms_resnet110 = _ms("ms_resnet110", RESNET_CIFAR[110], CIFAR_INPUT, "MS-ResNet-110 for CIFAR (n = 18).")
ms_resnet482 = _ms("ms_resnet482", RESNET_CIFAR[482], CIFAR_INPUT,
                   "MS-ResNet-482 for CIFAR (n = 80, [80, 80, 80], MS-ResNet issue #8).")
ms_resnet20_dvs = _ms("ms_resnet20_dvs", RESNET20_DVS, DVS_INPUT, _DVS_DOC, _ARGS_DVS, "events")
ms_resnet18_cifar = _ms("ms_resnet18_cifar", RESNET18_CIFAR, CIFAR_INPUT, '"CIFAR MS-ResNet-18" of later papers: '
                        "[3, 3, 2], widths 128/256/512, 3x3 stem of 64 (the GAC backbone).")
ms_resnet_mini = _ms("ms_resnet_mini", RESNET_MINI, MINI_INPUT, _MINI_DOC, _ARGS_MINI, finish=mini_shape)

spiking_resnet18 = _vanilla("spiking_resnet18", RESNET18, IMAGENET_INPUT,
                            "Vanilla spiking ResNet-18, the shapes of :func:`ms_resnet18`.")
spiking_resnet34 = _vanilla("spiking_resnet34", RESNET34, IMAGENET_INPUT,
                            "Vanilla spiking ResNet-34, the shapes of :func:`ms_resnet34`.")
spiking_resnet104 = _vanilla("spiking_resnet104", RESNET104, IMAGENET_INPUT,
                             "Vanilla spiking ResNet-104, the shapes of :func:`ms_resnet104`.", _ARGS_104)
spiking_resnet20 = _vanilla("spiking_resnet20", RESNET_CIFAR[20], CIFAR_INPUT,
                            "Vanilla spiking ResNet-20 for CIFAR (n = 3).")
spiking_resnet32 = _vanilla("spiking_resnet32", RESNET_CIFAR[32], CIFAR_INPUT,
                            "Vanilla spiking ResNet-32 for CIFAR (n = 5).")
spiking_resnet44 = _vanilla("spiking_resnet44", RESNET_CIFAR[44], CIFAR_INPUT,
                            "Vanilla spiking ResNet-44 for CIFAR (n = 7).")
spiking_resnet56 = _vanilla("spiking_resnet56", RESNET_CIFAR[56], CIFAR_INPUT,
                            "Vanilla spiking ResNet-56 for CIFAR (n = 9).")
spiking_resnet110 = _vanilla("spiking_resnet110", RESNET_CIFAR[110], CIFAR_INPUT,
                             "Vanilla spiking ResNet-110 for CIFAR (n = 18).")
spiking_resnet482 = _vanilla("spiking_resnet482", RESNET_CIFAR[482], CIFAR_INPUT,
                             "Vanilla spiking ResNet-482 for CIFAR (n = 80).")
spiking_resnet18_cifar = _vanilla("spiking_resnet18_cifar", RESNET18_CIFAR, CIFAR_INPUT,
                                  "Vanilla spiking ResNet of the [3, 3, 2] CIFAR shape of :func:`ms_resnet18_cifar`.")
spiking_resnet_mini = _vanilla("spiking_resnet_mini", RESNET_MINI, MINI_INPUT, "Vanilla spiking ResNet of the 28x28 "
                               "shape of :func:`ms_resnet_mini` (spikevision's size).", _ARGS_MINI, finish=mini_shape)
spiking_resnet20_dvs = _vanilla("spiking_resnet20_dvs", RESNET20_DVS, DVS_INPUT,
                                "Vanilla spiking ResNet-20 for CIFAR10-DVS, the shape of :func:`ms_resnet20_dvs`.",
                                _ARGS_DVS, "events")
