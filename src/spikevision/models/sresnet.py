"""S-ResNet: the CIFAR-style 6n+2 spiking ResNet with BNTT, and spiking residual-connection variants.

Vicente-Sola, Manna, Kirkland, Di Caterina, Bihl, "Keys to Accurate Feature
Extraction Using Residual Spiking Neural Networks", Neuromorphic Computing and
Engineering 2(4) 044001, 2022 (arXiv 2111.05955). Authors' code:
https://github.com/VicenteAlex/Spiking_ResNet.

BibTeX::

    @article{vicente2022keys,
      title={Keys to Accurate Feature Extraction Using Residual Spiking Neural Networks},
      author={Vicente-Sola, Alex and Manna, Davide L and Kirkland, Paul and Di Caterina, Gaetano and Bihl, Trevor},
      journal={Neuromorphic Computing and Engineering}, volume={2}, number={4}, pages={044001}, year={2022}}

Every layer is a "conv-BNTT-LIF" unit, per time step ``t``::

    I_t = BNTT_t(conv(x_t));  U_t = 0.8744 U_{t-1} + I_t;  s_t = [U_t > 1];  U_t <- U_t - s_t

Network: stem unit -> 3 stages of ``n`` blocks (widths F, 2F, 4F; the first
conv of stages 2 and 3 has stride 2) -> global average pool of the last
block's output -> Linear (no bias) per step -> mean over ``T``.

Released block (``residual="post_lif_add"``, the default): ``h = LIF_a(BN(conv_a(x)))``,
``s = LIF_b(BN(conv_b(h)))``, ``out = s + P(x)``: the skip is added **after**
the second LIF, so block outputs are spike counts (not binary). ``P`` is the
identity inside a stage and ``conv1x1/2 -> BNTT`` (no LIF, real-valued) where
the shape changes. Other residual modes (``pre_lif_add``, ``post_add_lif``,
``sew_and``, ``sew_iand``; ``sew_add`` is an alias of the released mode) are
spikevision's own provisional names for the design space of the paper's
residual study, whose variant names are not known; see :class:`SResBlock`.

Released quirks kept by default (clean options in brackets): the BNTT biases
are trained (quirk Q1) [``bntt_bias=False``]; BNTT itself can be swapped for
tdBN, one BatchNorm over time and batch [``norm="tdbn"``]. Fixed, not copied: the
hard-coded CUDA device (Q2) and lenient loading with another ``T`` (Q5: here
any ``T`` mismatch raises; :func:`remap_sresnet_checkpoint` truncates only on
request).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikevision.layers.encoders import DirectEncoder, PoissonEncoder
from spikevision.layers.gac import GatedAttentionCoding
from spikevision.layers.norm import BNTT2d, TDBatchNorm2d
from spikevision.layers.spike_conv import SpikeConv2d
from spikevision.layers.temporal import TimeFolded, fold, unfold
from spikevision.models.base import NeuronKind, SpikingClassifier
from spikevision.models.zoo import config_or_kwargs, register_config
from spikevision.neuron.functional import NeuronParams
from spikevision.neuron.modules import build_neuron
from spikevision.neuron.surrogate import Triangle

__all__ = [
    "SResNet", "SResNetConfig", "SResBlock", "ConvBNTTLIF", "Projection", "SRESNET_NEURON", "RESIDUAL_MODES",
    "make_norm", "resolve_residual", "remap_sresnet_checkpoint", "load_sresnet_checkpoint",
]

ResidualMode = Literal["post_lif_add", "pre_lif_add", "post_add_lif", "sew_add", "sew_and", "sew_iand"]
Encoding = Literal["direct", "poisson", "gac"]
NormKind = Literal["bntt", "tdbn"]
NormLayer = Callable[[int], nn.Module]
ENCODINGS = ("direct", "poisson", "gac")

PAPER = ("Vicente-Sola et al., Keys to Accurate Feature Extraction Using Residual Spiking Neural Networks, "
         "NCE 2022 (arXiv 2111.05955)")

#: S-ResNet LIF [code]: U_t = 0.8744 U_{t-1} + I_t, spike if U_t > 1 (strict), subtract 1, reset mask
#: detached; surrogate 0.3 * max(0, 1 - |U/v_th - 1|) = Triangle(width=2 v_th, peak=0.3) at v_th = 1.
#: Overriding v_th keeps the triangle as given; the authors' formula at another threshold is
#: Triangle(width=2 * v_th, peak=0.3 / v_th) (the 1/v_th comes from the chain rule through U/v_th).
SRESNET_NEURON = NeuronParams(
    decay=0.8744, gain=1.0, v_th=1.0, reset="soft", strict=True, detach_reset=True,
    surrogate=Triangle(width=2.0, peak=0.3),
)

BNTT_EPS = 1e-4
BNTT_MOMENTUM = 0.1
XAVIER_GAIN = 2.0  # xavier_uniform_(gain=2) on every conv and linear weight [code]
BOOST_GROUP = 10  # boosting: 10 output neurons per class, averaged
DEFAULT_T = 50
DEFAULT_WIDTH = 32  # F: stage widths F, 2F, 4F
DVS_RESIZE = 64  # each 128x128 event frame is resized to 64x64 in the model
CIFAR_INPUT = (3, 32, 32)
DVS_INPUT = (2, 128, 128)

#: Residual modes (spikevision's provisional names, not the paper's).
RESIDUAL_MODES = ("post_lif_add", "pre_lif_add", "post_add_lif", "sew_and", "sew_iand")
#: SEW-ResNet's ADD (Fang et al., NeurIPS 2021) is exactly the released dataflow.
RESIDUAL_ALIASES = {"sew_add": "post_lif_add"}
#: Modes that need a binary skip: their projection shortcut ends in a LIF (as SEW-ResNet's downsample).
BINARY_SKIP_MODES = ("sew_and", "sew_iand")


def resolve_residual(mode: str) -> str:
    """Canonical residual mode name (``"sew_add"`` -> ``"post_lif_add"``).

    Raises:
        ValueError: unknown mode (listing the valid ones).
    """
    mode = RESIDUAL_ALIASES.get(mode, mode)
    if mode not in RESIDUAL_MODES:
        valid = sorted(RESIDUAL_MODES + tuple(RESIDUAL_ALIASES))
        raise ValueError(f"unknown residual mode {mode!r}; choose one of {valid}")
    return mode


def make_norm(kind: str, T: int, bias: bool = True) -> NormLayer:
    """Factory ``channels -> norm module`` for every S-ResNet layer.

    Args:
        kind: ``"bntt"`` (released: one BatchNorm per time step, Kim & Panda,
            Frontiers in Neuroscience 2021) or ``"tdbn"`` (statistics over time
            and batch, Zheng et al., AAAI 2021; gamma 1 = alpha * V_th; not tied to ``T``).
        T: time steps (BNTT only).
        bias: train the BN shifts (released quirk Q1) or keep them frozen at 0.

    Both use eps 1e-4 and momentum 0.1 [code].
    """
    if kind not in ("bntt", "tdbn"):
        raise ValueError(f"unknown norm {kind!r}; choose 'bntt' (released) or 'tdbn'")

    def build(channels: int) -> nn.Module:
        if kind == "bntt":
            return BNTT2d(channels, T, bias=bias, eps=BNTT_EPS, momentum=BNTT_MOMENTUM)
        bn = TDBatchNorm2d(channels, eps=BNTT_EPS, momentum=BNTT_MOMENTUM)
        if not bias:
            bn.bias.requires_grad_(False)
        return bn

    return build


class ConvBNTTLIF(nn.Module):
    """The S-ResNet layer unit: ``conv3x3 (no bias) -> BNTT_t -> LIF``.

    Vicente-Sola et al., NCE 2022 (arXiv 2111.05955); BNTT from Kim & Panda,
    Frontiers in Neuroscience 2021.

    Args:
        cin, cout: channels in and out.
        stride: conv stride (2 at the first conv of stages 2 and 3, and the DVS stem).
        norm_layer: ``channels -> norm`` (:func:`make_norm`; released: BNTT with biases).
        neuron, params: neuron kind and constants.
        spike_input: the input is a spike map (a neuron's output): the conv is a
            :class:`~spikevision.layers.spike_conv.SpikeConv2d`.

    Shape: ``[T, B, cin, H, W]`` to spikes ``[T, B, cout, H/stride, W/stride]``.
    """

    def __init__(self, cin: int, cout: int, stride: int, *, norm_layer: NormLayer, neuron: NeuronKind,
                 params: NeuronParams, spike_input: bool = False) -> None:
        super().__init__()
        conv = SpikeConv2d if spike_input else nn.Conv2d  # event-driven in CPU training where it reads spikes
        self.conv = TimeFolded(conv(cin, cout, 3, stride=stride, padding=1, bias=False))
        self.bn = norm_layer(cout)
        self.lif = build_neuron(neuron, params)

    def current(self, x: Tensor) -> Tensor:
        """Input current ``I = BNTT_t(conv(x))`` of the neuron, ``[T, B, cout, H', W']``."""
        return self.bn(self.conv(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.lif(self.current(x))


class Projection(nn.Module):
    """Projection shortcut ``conv1x1 stride 2 (no bias) -> BNTT_t [-> LIF]``.

    Released (He et al.'s option B, only where the shape changes): no LIF, so a
    real-valued projection is added to spikes. ``spiking=True`` (used by the
    AND/IAND modes, whose skip must be binary) appends a LIF, as SEW-ResNet's
    downsample does.

    Shape: ``[T, B, cin, H, W]`` to ``[T, B, cout, H/stride, W/stride]``.
    """

    def __init__(self, cin: int, cout: int, stride: int, *, norm_layer: NormLayer, spiking: bool,
                 neuron: NeuronKind, params: NeuronParams) -> None:
        super().__init__()
        self.conv = TimeFolded(nn.Conv2d(cin, cout, 1, stride=stride, bias=False))
        self.bn = norm_layer(cout)
        self.lif = build_neuron(neuron, params) if spiking else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.lif(self.bn(self.conv(x)))


class SResBlock(nn.Module):
    """S-ResNet basic block: two conv-BNTT-LIF units and a residual connection.

    Vicente-Sola et al., NCE 2022 (arXiv 2111.05955). With ``h = unit_a(x)``,
    ``I = BNTT(conv_b(h))``, ``s = LIF_b(I)`` and ``P`` the shortcut:

    | mode (spikevision's name) | output | binary? |
    |---|---|---|
    | ``post_lif_add`` (released, default; alias ``sew_add``) | ``s + P(x)``, no LIF after | no (counts) |
    | ``pre_lif_add`` (Spiking-ResNet style) | ``LIF_b(I + P(x))``: ``U <- 0.8744 U + I + P(x)`` | yes |
    | ``post_add_lif`` | ``LIF_c(s + P(x))`` | yes |
    | ``sew_and`` (Fang et al., NeurIPS 2021) | ``s * P(x)`` | yes |
    | ``sew_iand`` (Fang et al., NeurIPS 2021) | ``(1 - s) * P(x)`` | yes |

    For ``sew_and``/``sew_iand`` the skip is binary by construction: the stem
    and every block emit spikes, and the projection ends in a LIF.

    Args:
        cin, cout: channels in and out.
        stride: stride of ``conv_a`` (and of the projection).
        residual: mode (see the table).
        norm_layer, neuron, params: as :class:`ConvBNTTLIF`.

    Shape: ``[T, B, cin, H, W]`` to ``[T, B, cout, H/stride, W/stride]``.
    """

    def __init__(self, cin: int, cout: int, stride: int, *, residual: str, norm_layer: NormLayer,
                 neuron: NeuronKind, params: NeuronParams) -> None:
        super().__init__()
        self.residual = resolve_residual(residual)
        unit = dict(norm_layer=norm_layer, neuron=neuron, params=params)
        self.unit_a = ConvBNTTLIF(cin, cout, stride, **unit)
        self.unit_b = ConvBNTTLIF(cout, cout, 1, spike_input=True, **unit)  # reads unit_a's spikes
        if stride == 1 and cin == cout:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = Projection(cin, cout, stride, spiking=self.residual in BINARY_SKIP_MODES, **unit)
        self.lif_out = build_neuron(neuron, params) if self.residual == "post_add_lif" else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        current = self.unit_b.current(self.unit_a(x))
        skip = self.shortcut(x)
        if self.residual == "pre_lif_add":
            return self.unit_b.lif(current + skip)
        s = self.unit_b.lif(current)
        if self.residual == "post_lif_add":
            return s + skip
        if self.residual == "post_add_lif":
            return self.lif_out(s + skip)
        if self.residual == "sew_and":
            return s * skip
        return (1.0 - s) * skip  # sew_iand

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


@dataclass(frozen=True)
class SResNetConfig:
    """Everything that defines an :class:`SResNet` (its only argument); defaults: the paper's CIFAR-10 setting.

    Attributes:
        n: blocks per stage (depth ``6n + 2``).
        width: F, the stem and stage-1 width (stages: F, 2F, 4F). Paper: 32.
        in_chans: input channels (3 images, 2 event polarities).
        num_classes: classes: 10 (CIFAR-10) or 100 (CIFAR-100).
        T: time steps. Paper: 50.
        residual: residual mode (see :class:`SResBlock`). Released: ``"post_lif_add"``.
        boosting: 10 outputs per class, averaged (the released CIFAR-10 checkpoint
            ``cifar10_sresnet-boost`` needs it). Default off.
        encoding: ``"direct"`` (released default), ``"poisson"`` (signed, probability
            ``min(|x|/2, 1)``) or ``"gac"``: Qiu et al.'s gated attention coding (AAAI 2024) in
            place of the stem unit (not in the S-ResNet paper; its conv + BN, its LIF with this
            family's constants, the gate ``sigmoid(TA * SCA)``; PyTorch's default init, as Xavier
            gain 2 would saturate the gate).
        poisson_seed: seed of the Poisson encoder's private generator (None: global RNG).
        norm: ``"bntt"`` (released) or ``"tdbn"`` (see :func:`make_norm`).
        bntt_bias: released quirk Q1 (True) or norms without trained shifts (False).
        dvs: event-frame input (the authors' ``SResnetNM``): images are rejected, no encoder,
            stride-2 stem.
        input_resize: resize each step to this square size first (DVS: 64), or None.
        stem_stride: the stem conv's stride; None: the paper's (2 for event frames, 1 for images). 2 on
            images (not in the paper; spikevision's, for small budgets) quarters every map and layer cost.
        neuron, neuron_params: neuron kind and constants (default :data:`SRESNET_NEURON`).

    Raises:
        ValueError: non-positive sizes, an unknown ``encoding``, GAC with events, a ``stem_stride`` not None/1/2.
    """

    n: int
    width: int = DEFAULT_WIDTH
    in_chans: int = CIFAR_INPUT[0]
    num_classes: int = 10
    T: int = DEFAULT_T
    residual: ResidualMode = "post_lif_add"
    boosting: bool = False
    encoding: Encoding = "direct"
    poisson_seed: int | None = None
    norm: NormKind = "bntt"
    bntt_bias: bool = True
    dvs: bool = False
    input_resize: int | None = None
    stem_stride: int | None = None
    neuron: NeuronKind = "lif"
    neuron_params: NeuronParams = SRESNET_NEURON

    def __post_init__(self) -> None:
        for name in ("T", "n", "width", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {self.encoding!r}; choose 'direct', 'poisson' or 'gac'")
        if self.encoding == "gac" and self.dvs:
            raise ValueError("an encoder with its own stem (GAC) takes static images; the DVS model has none")
        if self.stem_stride not in (None, 1, 2) or isinstance(self.stem_stride, bool):
            raise ValueError(f"stem_stride must be None (the paper's), 1 or 2, got {self.stem_stride!r}")

    @property
    def resolved_stem_stride(self) -> int:
        """The stem conv's stride: ``stem_stride``, or the paper's (2 for event frames, 1 for images)."""
        return self.stem_stride if self.stem_stride is not None else 2 if self.dvs else 1


def _encoder(cfg: SResNetConfig) -> nn.Module:
    """The image-to-sequence module of a config (an identity for event frames)."""
    if cfg.dvs:
        return nn.Identity()  # event frames are already a sequence
    if cfg.encoding == "poisson":
        return PoissonEncoder(cfg.T, signed=True, seed=cfg.poisson_seed)
    if cfg.encoding == "gac":  # GAC owns the stem: conv3x3 + (static) BN, then its gated neuron
        conv = nn.Conv2d(cfg.in_chans, cfg.width, 3, stride=cfg.resolved_stem_stride, padding=1, bias=False)
        stem = nn.Sequential(conv, nn.BatchNorm2d(cfg.width))
        return GatedAttentionCoding(cfg.T, stem, cfg.width, neuron=cfg.neuron, neuron_params=cfg.neuron_params)
    return DirectEncoder(cfg.T)


class SResNet(SpikingClassifier):
    """S-ResNet (6n+2 layers) for static images or event frames.

    Vicente-Sola et al., NCE 2022 (arXiv 2111.05955). Built from one
    :class:`SResNetConfig` and holds no variant tables; the registered names
    fill the published numbers.

    Pipeline: encoder (image to ``[T, B, C, H, W]``; events pass through) ->
    [per-step bilinear resize, DVS] -> stem unit -> ``3n`` blocks -> global
    average pool of the last block's output -> Linear (no bias) per step ->
    [boosting: mean over groups of 10 outputs] -> mean over ``T``.

    BNTT holds one BatchNorm per step, so the model is tied to ``T``: any other
    number of steps raises (fix of the released lenient loading, quirk Q5).
    Every input sequence must have ``T`` steps, whatever the norm.

    Args:
        config: the whole network (see :class:`SResNetConfig`); kept as ``self.config``.
        kwargs: deprecated: the fields of the config, as the constructor took them before configs.

    Shape: ``[B, C, H, W]`` (or ``[T, B, C, H, W]``) to ``[B, num_classes]``.
    """

    def __init__(self, config: SResNetConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        cfg = self.config = config_or_kwargs(SResNet, SResNetConfig, config, kwargs)
        self.n, self.width, self.in_chans = cfg.n, cfg.width, cfg.in_chans
        self.T, self.num_classes = cfg.T, cfg.num_classes
        self.residual = resolve_residual(cfg.residual)
        self.encoder = _encoder(cfg)
        self.event_input = cfg.dvs
        self.encoder_has_stem = cfg.encoding == "gac"
        self.input_resize = cfg.input_resize
        self.boost_group = BOOST_GROUP if cfg.boosting else 1
        self.norm = cfg.norm
        unit = dict(norm_layer=make_norm(cfg.norm, cfg.T, cfg.bntt_bias), neuron=cfg.neuron,
                    params=cfg.neuron_params)
        stride = cfg.resolved_stem_stride
        self.stem = nn.Identity() if self.encoder_has_stem else ConvBNTTLIF(cfg.in_chans, cfg.width, stride, **unit)
        stages, cin = [], cfg.width
        for i, cout in enumerate((cfg.width, 2 * cfg.width, 4 * cfg.width)):
            blocks = []
            for j in range(cfg.n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(SResBlock(cin, cout, stride, residual=self.residual, **unit))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = cin
        self.fc = nn.Linear(cin, cfg.num_classes * self.boost_group, bias=False)
        _init_xavier(self)

    def encode(self, x: Tensor) -> Tensor:
        """Images through the encoder; sequences (and event frames) checked and passed."""
        if isinstance(x, Tensor) and x.dim() in (4, 5) and x.shape[-3] != self.in_chans:
            raise ValueError(f"{type(self).__name__} was built for {self.in_chans} input channels, got shape "
                             f"{list(x.shape)}; rebuild with in_chans={x.shape[-3]}")
        if self.event_input and isinstance(x, Tensor) and x.dim() == 4:
            raise ValueError(f"this S-ResNet takes event-frame sequences [T, B, {self.in_chans}, H, W] "
                             f"(T={self.T}), got an image batch {list(x.shape)}; bin the events into T frames")
        if self.encoder_has_stem:
            self.check_input(x)
            return self.encoder(x)
        return super().encode(x)

    def forward_features(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` to the last block's output ``[T, B, 4F, H', W']`` (spike counts, released)."""
        if self.input_resize is not None:
            size = (self.input_resize, self.input_resize)
            x = unfold(F.interpolate(fold(x), size=size, mode="bilinear", align_corners=False, antialias=False),
                       x.shape[0])
        return self.stages(self.stem(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False, per_step: bool = False) -> Tensor:
        """Global average pool, Linear per step, boosting, then mean over ``T`` (unless ``per_step``)."""
        x = x.mean(dim=(-2, -1))  # [T, B, C]
        if pre_logits:
            return x
        out = self.fc(x)  # [T, B, classes * group]
        if self.boost_group > 1:
            out = out.unflatten(-1, (self.num_classes, self.boost_group)).mean(-1)  # [T, B, classes]
        return out if per_step else out.mean(0)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh Xavier-initialised ``Linear`` (boosting kept)."""
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes * self.boost_group, bias=False,
                            device=self.fc.weight.device, dtype=self.fc.weight.dtype)
        nn.init.xavier_uniform_(self.fc.weight, gain=XAVIER_GAIN)

    def residual_blocks(self) -> dict[str, nn.Module]:
        """Every block of every stage (``"stages.<i>.<j>"``), in forward order."""
        return self._children_of(*(f"stages.{i}" for i in range(len(self.stages))))


def _init_xavier(model: nn.Module, gain: float = XAVIER_GAIN) -> None:
    """Xavier-uniform (Glorot & Bengio, AISTATS 2010) with ``gain`` on every conv and linear weight [code].

    A GAC encoder keeps PyTorch's default init: with gain 2 its gate ``sigmoid(TA * SCA)``
    starts saturated at 0 or 1 (no gradient through the gate).
    """
    skip = {id(m) for m in model.encoder.modules()} if isinstance(model.encoder, GatedAttentionCoding) else set()
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in skip:
            nn.init.xavier_uniform_(m.weight, gain=gain)


# ---------------------------------------------------------------------------
# Loading the authors' checkpoints (figshare article 20712535)
# ---------------------------------------------------------------------------

#: Duplicate module names in the authors' state dict and the list entries they alias.
_AUTHOR_ALIASES = {
    "conv1.": "conv_list.0.", "bntt1.": "bntt_list.0.",
    "conv_resize_1.": "conv1x1_list.0.", "conv_resize_2.": "conv1x1_list.1.",
    "resize_bn_1.": "bn_conv1x1_list.0.", "resize_bn_2.": "bn_conv1x1_list.1.",
}
_CONV_KEY = re.compile(r"^conv_list\.(\d+)\.weight$")
_BNTT_KEY = re.compile(r"^bntt_list\.(\d+)\.(\d+)\.(\w+)$")
_PROJ_KEY = re.compile(r"^conv1x1_list\.([01])\.weight$")
_PROJ_BN_KEY = re.compile(r"^bn_conv1x1_list\.([01])\.(\d+)\.(\w+)$")


def _layer_prefix(i: int, n: int) -> str:
    """Our module path of the authors' layer ``conv_list[i]`` (0 = stem, then conv_a/conv_b per block)."""
    if i == 0:
        return "stem"
    k, second = divmod(i - 1, 2)
    return f"stages.{k // n}.{k % n}.{'unit_b' if second else 'unit_a'}"


def remap_sresnet_checkpoint(checkpoint: Mapping[str, Any], *, T: int | None = None, n: int | None = None,
                             allow_fewer_steps: bool = False) -> dict[str, Tensor]:
    """Rename an authors' S-ResNet state dict to :class:`SResNet` keys.

    The released checkpoints (``{"global_step", "state_dict", "accuracy"}``)
    name layers ``conv_list.i`` / ``bntt_list.i.t`` (``i = 0`` the stem, then
    ``conv_a``, ``conv_b`` of each block in order), projections
    ``conv1x1_list.j`` / ``bn_conv1x1_list.j.t`` and the classifier ``fc``;
    every module is also saved under an alias (``conv1``, ``bntt1``,
    ``conv_resize_1/2``, ``resize_bn_1/2``), which must agree with its list
    entry. A ``module.`` prefix (DataParallel) is stripped.

    Args:
        checkpoint: the checkpoint dict or its ``state_dict``.
        T: the target model's time steps; None keeps the checkpoint's.
        n: the target model's blocks per stage; None infers it.
        allow_fewer_steps: with ``T`` below the checkpoint's step count, keep
            the first ``T`` BN sets (what the released test script silently
            does, quirk Q5) instead of raising.

    Returns:
        A state dict for ``load_state_dict(strict=True)`` of the matching model.

    Raises:
        ValueError: unknown keys, aliases that disagree, depth or ``T`` mismatch.
    """
    sd = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(sd, Mapping):
        raise TypeError(f"expected a state dict or a checkpoint dict with 'state_dict', "
                        f"got {type(checkpoint).__name__}")
    canon: dict[str, Tensor] = {}
    aliases: dict[str, Tensor] = {}
    for key, value in sd.items():
        key = key[len("module."):] if key.startswith("module.") else key
        for alias, target in _AUTHOR_ALIASES.items():
            if key.startswith(alias):
                aliases[target + key[len(alias):]] = value
                break
        else:
            canon[key] = value
    for key, value in aliases.items():
        if key not in canon:
            canon[key] = value
        elif not torch.equal(canon[key], value):
            raise ValueError(f"checkpoint alias of {key!r} holds different values; the file is inconsistent")
    layers = sorted(int(m.group(1)) for k in canon if (m := _CONV_KEY.match(k)))
    if not layers or (len(layers) - 1) % 6 or layers != list(range(len(layers))):
        raise ValueError(f"expected conv_list.0 .. conv_list.6n in the checkpoint, found indices {layers}")
    n_ckpt = (len(layers) - 1) // 6
    if n is not None and n != n_ckpt:
        raise ValueError(f"checkpoint has n={n_ckpt} blocks per stage (S-ResNet-{6 * n_ckpt + 2}), model has n={n}")
    bn_steps = [int(m.group(2)) for k in canon if (m := _BNTT_KEY.match(k) or _PROJ_BN_KEY.match(k))]
    if not bn_steps:
        raise ValueError("no BNTT entries (bntt_list.i.t.*) in the checkpoint; is it an S-ResNet checkpoint?")
    steps = 1 + max(bn_steps)
    if T is not None and T != steps and not (allow_fewer_steps and T < steps):
        hint = "; pass allow_fewer_steps=True to keep the first T BN sets" if T < steps else ""
        raise ValueError(f"checkpoint was trained with T={steps} (one BN set per step), model has T={T}{hint}")
    keep = steps if T is None else T
    out: dict[str, Tensor] = {}
    for key, value in canon.items():
        if m := _CONV_KEY.match(key):
            out[f"{_layer_prefix(int(m.group(1)), n_ckpt)}.conv.module.weight"] = value
        elif m := _BNTT_KEY.match(key):
            if int(m.group(2)) < keep:
                out[f"{_layer_prefix(int(m.group(1)), n_ckpt)}.bn.bns.{m.group(2)}.{m.group(3)}"] = value
        elif m := _PROJ_KEY.match(key):
            out[f"stages.{int(m.group(1)) + 1}.0.shortcut.conv.module.weight"] = value
        elif m := _PROJ_BN_KEY.match(key):
            if int(m.group(2)) < keep:
                out[f"stages.{int(m.group(1)) + 1}.0.shortcut.bn.bns.{m.group(2)}.{m.group(3)}"] = value
        elif key == "fc.weight":
            out[key] = value
        else:
            raise ValueError(f"unexpected key {key!r} in an S-ResNet checkpoint")
    return out


def load_sresnet_checkpoint(model: SResNet, checkpoint: Mapping[str, Any], *,
                            allow_fewer_steps: bool = False) -> SResNet:
    """Load an authors' checkpoint (already read, e.g. ``torch.load(path, weights_only=True)``) strictly.

    The model must match the checkpoint: depth ``n``, width, boosting and ``T``
    (see :func:`remap_sresnet_checkpoint` for ``allow_fewer_steps``).

    Raises:
        ValueError: a model without BNTT, keys or shapes that do not fit, or weights holding NaN or
            infinite values (:class:`spikevision.weights.NonFiniteWeightsError`, naming the tensor).
    """
    if model.norm != "bntt":
        raise ValueError(f"the authors' checkpoints hold BNTT layers; build the model with norm='bntt', "
                         f"not {model.norm!r}")
    from spikevision.weights import check_finite_weights

    state = remap_sresnet_checkpoint(checkpoint, T=model.T, n=model.n, allow_fewer_steps=allow_fewer_steps)
    check_finite_weights(state, "the S-ResNet checkpoint", "use the authors' original file")
    model.load_state_dict(state, strict=True)
    return model


# ---------------------------------------------------------------------------
# Registered names (family "sresnet"): each fills an SResNetConfig
# ---------------------------------------------------------------------------

_ARGS = ("num_classes", "T", "in_chans", "width", "residual", "boosting", "encoding", "poisson_seed", "norm",
         "bntt_bias", "stem_stride", "neuron", "neuron_params")
_ARGS_DVS = ("num_classes", "T", "in_chans", "width", "residual", "norm", "bntt_bias", "neuron", "neuron_params",
             "input_resize")


def _sres(name: str, config: SResNetConfig, doc: str, tunable: tuple[str, ...] = _ARGS,
          input_size: tuple[int, int, int] = CIFAR_INPUT) -> Any:
    """Register an S-ResNet entry."""
    return register_config(name, config, SResNet, tunable=tunable, doc=doc, module=__name__, family="sresnet",
                           paper=PAPER, input_size=input_size, modality="events" if config.dvs else "image")


sresnet20 = _sres("sresnet20", SResNetConfig(n=3), "S-ResNet-20 for CIFAR (n = 3). Arguments as :func:`sresnet38`.")
sresnet38 = _sres("sresnet38", SResNetConfig(n=6), """S-ResNet-38 for CIFAR-10/100 (n = 6, F = 32, T = 50): \
the paper's headline model.

The arguments are the fields of :class:`SResNetConfig` (``num_classes`` 10 or 100,
``T`` 50, ``width`` F = 32, ``residual``, ``boosting``, ``encoding``,
``poisson_seed``, ``norm``, ``bntt_bias``, ``stem_stride``, ``neuron``, ``neuron_params``).
""")
sresnet56 = _sres("sresnet56", SResNetConfig(n=9), "S-ResNet-56 for CIFAR (n = 9). Arguments as :func:`sresnet38`.")
sresnet38_dvs = _sres(
    "sresnet38_dvs", SResNetConfig(n=6, in_chans=DVS_INPUT[0], dvs=True, input_resize=DVS_RESIZE),
    """S-ResNet-38 for CIFAR10-DVS (the authors' ``SResnetNM``; n = 6, F = 32, T = 50 frames).

Input: event count frames ``[T, B, 2, 128, 128]`` (no encoder). Each step
is resized bilinearly (no antialias) to ``input_resize`` (64; None keeps
the input size) inside the model, then a stride-2 stem gives 32x32 feature
maps. No boosting. Other arguments as :func:`sresnet38`.
""", _ARGS_DVS, DVS_INPUT)
