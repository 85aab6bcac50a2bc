"""Spiking MLPs with spiking patch encoding (MLP-SPE-T/S/B, MLP-S).

Li, Leng, Shen, Zhang, Zhang, Liao, Cheng, "Efficient Deep Spiking
Multi-Layer Perceptrons with Multiplication-Free Inference", IEEE TNNLS 2024
(arXiv 2306.12465; earlier ICLR 2023 submission "Rethinking Deep Spiking
Neural Networks: A Multi-Layer Perceptron Approach"). Authors' code:
https://github.com/EMI-Group/mixer-snn (PyTorch + SpikingJelly).

BibTeX::

    @article{li2024efficient,
      title={Efficient Deep Spiking Multi-Layer Perceptrons with Multiplication-Free Inference},
      author={Li, Boyan and Leng, Luziwei and Shen, Shuaijie and Zhang, Kaixuan and
              Zhang, Jianguo and Liao, Jianxing and Cheng, Ran},
      journal={IEEE Transactions on Neural Networks and Learning Systems},
      year={2024}}

A four-stage sMLPNet-style network: axial token mixing (:class:`TokenMixing`)
and channel MLPs (:class:`ChannelMLP`), BatchNorm only, so that at inference
normalisation folds into the weights and every synaptic operation after the
stem acts on binary spikes (multiplication-free inference). Stages 2-4 start
with a spiking patch encoding cell (:class:`SpikingPatchEncoding`).

Residual wiring of one stage (exact released code)::

    m = Downsample(x_prev)            # analog (BN output)
    x = LIF_entry(m)
    for each block j:
        a = m + TokenMixing_j(x)      # the stage-entry m is added in EVERY block
        x_tok = LIF_tok_j(a)
        x = LIF_ch_j(a + ChannelMLP_j(x_tok))

Both shortcuts are analog additions before a LIF; block ``j`` reaches block
``j + 1`` only through spikes. Head: BN2d -> global average pool -> Linear,
logits averaged over ``T``.

Released behaviour is the default; clean or alternative options (not from
the paper) are labelled as such:

* ``channel_norm="token"`` (quirk): the channel MLP's BatchNorm1d sees
  ``[T*B, N, C]``, normalising **per token position**; ``"channel"`` is the
  clean per-channel, foldable norm.
* ``running_stream=False`` (released): every block adds the stage-entry ``m``;
  ``True`` (not from the paper) carries each block's pre-LIF sum forward.
* ``head_lif=False`` (code): no LIF in the head; ``True`` adds the README
  figure's LIF after the pooling.

The token mixing and the per-token BN tie a model to its ``img_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
from torch import Tensor, nn

from spikevision.layers.encoders import DirectEncoder
from spikevision.layers.norm import TDBatchNorm1d, TDBatchNorm2d, TokenBatchNorm1d
from spikevision.layers.spike_conv import SpikeConv2d
from spikevision.layers.temporal import TimeFolded
from spikevision.models.base import NeuronKind, SpikingClassifier
from spikevision.models.zoo import config_or_kwargs, register_config
from spikevision.neuron.functional import NeuronParams
from spikevision.neuron.modules import build_neuron
from spikevision.neuron.surrogate import Sigmoid

__all__ = [
    "SpikingMLP", "SpikingMLPConfig", "SpikingPatchEncoding", "TokenMixing", "ChannelMLP", "MLPBlock", "MLPStage",
    "MLP_NEURON",
]

ChannelNorm = Literal["token", "channel"]
DownsampleKind = Literal["spe", "conv"]

PAPER = (
    "Li et al., Efficient Deep Spiking Multi-Layer Perceptrons with Multiplication-Free Inference, "
    "TNNLS 2024 (arXiv 2306.12465)"
)

#: SpikingJelly ``LIFNode`` defaults [code]: H = V + (X - V) / 2 (tau 2, decay_input), spike if H >= 1,
#: hard reset to 0, reset path detached, surrogate d/dx sigmoid(4 x).
MLP_NEURON = NeuronParams.from_tau(
    2.0, decay_input=True, v_th=1.0, v_reset=0.0, reset="hard", strict=False, detach_reset=True,
    surrogate=Sigmoid(alpha=4.0),
)

IMAGENET_SIZE = 224
IMAGENET_DEPTHS = (2, 8, 14, 2)
STEM_PATCH = 4  # stage 1: 4x4 stride-4 conv, 224 -> 56x56 tokens
MLP_RATIO = 3  # channel-MLP expansion
SPE_BRANCHES = 3  # SPE output = concat of three nodes, so C_out % 3 == 0
MLP_SPE_T_DIM = 78  # authors' config "small" (the paper's Tiny)
MLP_SPE_S_DIM = 96  # authors' config "big" (the paper's Small)
MLP_S_DIM = 96
#: MLP-SPE-B is not released; only its size is quoted (README: 66M). UNCONFIRMED default: d = 108 with 2-10-24-2
#: (65.61M parameters at 1000 classes, the closer of two shapes near 66M; the other, d = 126 with 2-8-14-2, 65.01M).
MLP_SPE_B_DIM = 108
MLP_SPE_B_DEPTHS = (2, 10, 24, 2)
#: spikevision's own small-image configuration (NOT from the paper), for Fashion-MNIST/CIFAR quickstarts.
MINI_SIZE = 28
MINI_PATCH = 2  # 28 -> 14x14 tokens, then 7x7
MINI_DIM = 24
MINI_DEPTHS = (1, 1)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, padding: int, *, spike_input: bool = False
             ) -> nn.Sequential:
    """Per-step ``Conv2d`` (no bias) then BN over time and batch: ``[T, B, cin, H, W]`` to ``[T, B, cout, H', W']``.

    ``spike_input``: the conv reads spikes, so it is a :class:`~spikevision.layers.SpikeConv2d` (event-driven in
    CPU training; the same parameters and results as ``Conv2d``).
    """
    conv = SpikeConv2d if spike_input else nn.Conv2d
    return nn.Sequential(TimeFolded(conv(cin, cout, kernel, stride=stride, padding=padding, bias=False)),
                         TDBatchNorm2d(cout))


class SpikingPatchEncoding(nn.Module):
    """Spiking patch encoding (SPE) cell, the authors' ``PatchCell``: a small DARTS-style cell.

    Li et al., TNNLS 2024 (arXiv 2306.12465). With ``ConvBN_s`` = 3x3 conv
    (padding 1, stride ``s``, no bias) -> BN2d(n) and ``n = cout / 3``::

        node1 = ConvBN_2(x)
        node2 = ConvBN_2(x) + ConvBN_1(LIF_A(node1))
        node3 = ConvBN_2(x) + node1 + ConvBN_1(LIF_B(node2))
        out   = concat[node1, node2, node3]        # analog

    Args:
        cin: input channels (spikes).
        cout: output channels, divisible by 3 (released nets: ``2 * cin``).
        neuron, params: neuron kind and constants of LIF_A and LIF_B.

    Shape: ``[T, B, cin, H, W]`` to ``[T, B, cout, ceil(H/2), ceil(W/2)]``.

    Raises:
        ValueError: ``cout`` not divisible by 3.
    """

    def __init__(self, cin: int, cout: int, *, neuron: NeuronKind = "lif", params: NeuronParams = MLP_NEURON) -> None:
        super().__init__()
        if cout % SPE_BRANCHES:
            raise ValueError(
                f"SpikingPatchEncoding concatenates {SPE_BRANCHES} nodes, so its output channels must be divisible "
                f"by {SPE_BRANCHES}, got {cout} (= 2 x {cin} input channels); choose a base width d that is a "
                f"multiple of 3 (e.g. 78 or 96; the authors' d = 80 crashes here)"
            )
        n = cout // SPE_BRANCHES
        # every conv reads spikes: the previous stage's output, or LIF_A / LIF_B's
        self.branch1 = _conv_bn(cin, n, 3, 2, 1, spike_input=True)
        self.branch2 = _conv_bn(cin, n, 3, 2, 1, spike_input=True)
        self.branch3 = _conv_bn(cin, n, 3, 2, 1, spike_input=True)
        self.lif_a = build_neuron(neuron, params)
        self.conv_a = _conv_bn(n, n, 3, 1, 1, spike_input=True)
        self.lif_b = build_neuron(neuron, params)
        self.conv_b = _conv_bn(n, n, 3, 1, 1, spike_input=True)

    def forward(self, x: Tensor) -> Tensor:
        node1 = self.branch1(x)  # [T, B, n, H/2, W/2]
        node2 = self.branch2(x) + self.conv_a(self.lif_a(node1))
        node3 = self.branch3(x) + node1 + self.conv_b(self.lif_b(node2))
        return torch.cat([node1, node2, node3], dim=2)  # [T, B, 3n, H/2, W/2]


class TokenMixing(nn.Module):
    """Axial token mixing of sMLPNet on spikes, the authors' ``sMLPBlock``.

    Li et al., TNNLS 2024 (arXiv 2306.12465). The H-branch treats the rows as
    channels: a 1x1 conv ``H -> H`` with bias (one ``H x H`` matrix shared by
    all channels and columns), BN2d(H) (one statistic per output row), LIF;
    the W-branch does the same along columns. The fuse step concatenates
    ``[identity(x), x_h, x_w]`` and maps ``3C -> C`` by a 1x1 conv without
    bias, then BN2d(C). No depthwise conv (sMLPNet's ANN has one).

    Args:
        dim: channels ``C``.
        height, width: token grid ``H x W`` (fixed: the branches' weights are ``H x H`` and ``W x W``).
        identity_norm: identity path ``LIF(BN(x))`` (MLP-S, no SPE) instead of raw ``x`` (MLP-SPE).
        neuron, params: neuron kind and constants.

    Shape: spikes ``[T, B, C, H, W]`` to analog ``[T, B, C, H, W]``.
    """

    def __init__(self, dim: int, height: int, width: int, *, identity_norm: bool = False, neuron: NeuronKind = "lif",
                 params: NeuronParams = MLP_NEURON) -> None:
        super().__init__()
        # every conv reads spikes (SpikeConv2d: event-driven in CPU training, otherwise exactly Conv2d)
        self.proj_h = TimeFolded(SpikeConv2d(height, height, 1))
        self.norm_h = TDBatchNorm2d(height)
        self.lif_h = build_neuron(neuron, params)
        self.proj_w = TimeFolded(SpikeConv2d(width, width, 1))
        self.norm_w = TDBatchNorm2d(width)
        self.lif_w = build_neuron(neuron, params)
        self.identity = (nn.Sequential(TDBatchNorm2d(dim), build_neuron(neuron, params)) if identity_norm
                         else nn.Identity())
        self.fuse = TimeFolded(SpikeConv2d(SPE_BRANCHES * dim, dim, 1, bias=False))
        self.norm = TDBatchNorm2d(dim)

    def forward(self, x: Tensor) -> Tensor:
        # contiguous copies: conv and BN on transposed strides take slow paths (about 10x on CPU)
        x_h = x.transpose(2, 3).contiguous()  # [T, B, H, C, W]: rows as channels
        x_h = self.lif_h(self.norm_h(self.proj_h(x_h))).transpose(2, 3)  # [T, B, C, H, W]
        x_w = x.transpose(2, 4).contiguous()  # [T, B, W, H, C]: columns as channels
        x_w = self.lif_w(self.norm_w(self.proj_w(x_w))).transpose(2, 4)  # [T, B, C, H, W]
        x = torch.cat([self.identity(x), x_h, x_w], dim=2)  # [T, B, 3C, H, W]
        return self.norm(self.fuse(x))  # [T, B, C, H, W]


class _PerChannelNorm(nn.Module):
    """Clean option: per-channel BN (tdBN-style) on tokens ``[T, B, N, C]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = TDBatchNorm1d(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(x.transpose(2, 3)).transpose(2, 3)  # [T, B, N, C] -> [T, B, C, N] -> back


def _token_norm(kind: ChannelNorm, dim: int, num_tokens: int) -> nn.Module:
    if kind == "token":
        return TokenBatchNorm1d(num_tokens)
    if kind == "channel":
        return _PerChannelNorm(dim)
    raise ValueError(f"unknown channel_norm {kind!r}; choose 'token' (released, per token position) or 'channel'")


class ChannelMLP(nn.Module):
    """Channel MLP on spike tokens, the authors' ``FeedForward``.

    Li et al., TNNLS 2024 (arXiv 2306.12465). ``Linear(C, rC) -> BN -> LIF ->
    Linear(rC, C) -> BN`` on the ``N = H * W`` tokens (row-major).

    Args:
        dim: channels ``C``.
        num_tokens: ``N = H * W``.
        mlp_ratio: expansion ``r`` (paper: 3).
        channel_norm: ``"token"`` (released quirk: ``BatchNorm1d(N)`` on
            ``[T*B, N, C]``, one statistic per token position over time, batch
            and channels; ties the model to one input size and does not fold
            into a shared matrix) or ``"channel"`` (clean, per channel).
        neuron, params: neuron kind and constants.

    Shape: spikes ``[T, B, C, H, W]`` to analog ``[T, B, C, H, W]``.
    """

    def __init__(self, dim: int, num_tokens: int, *, mlp_ratio: int = MLP_RATIO, channel_norm: ChannelNorm = "token",
                 neuron: NeuronKind = "lif", params: NeuronParams = MLP_NEURON) -> None:
        super().__init__()
        hidden = mlp_ratio * dim
        self.fc1 = nn.Linear(dim, hidden)  # acts on the last dim, no time folding needed
        self.norm1 = _token_norm(channel_norm, hidden, num_tokens)
        self.lif = build_neuron(neuron, params)
        self.fc2 = nn.Linear(hidden, dim)
        self.norm2 = _token_norm(channel_norm, dim, num_tokens)

    def forward(self, x: Tensor) -> Tensor:
        T, B, C, H, W = x.shape
        t = x.flatten(3).transpose(2, 3)  # [T, B, N, C]
        t = self.norm2(self.fc2(self.lif(self.norm1(self.fc1(t)))))  # [T, B, N, C]
        return t.transpose(2, 3).reshape(T, B, C, H, W)


class MLPBlock(nn.Module):
    """One block: token mixing and channel MLP, each with an analog shortcut before its LIF.

    Li et al., TNNLS 2024 (arXiv 2306.12465)::

        a = m + TokenMixing(x);  x_tok = LIF_tok(a);  out = LIF_ch(a + ChannelMLP(x_tok))

    Shape: spikes ``x`` and analog stream ``m`` ``[T, B, C, H, W]`` to
    (spikes, pre-LIF sum ``a + ChannelMLP(x_tok)``), both ``[T, B, C, H, W]``.
    """

    def __init__(self, dim: int, height: int, width: int, *, mlp_ratio: int, channel_norm: ChannelNorm,
                 identity_norm: bool, neuron: NeuronKind, params: NeuronParams) -> None:
        super().__init__()
        self.token = TokenMixing(dim, height, width, identity_norm=identity_norm, neuron=neuron, params=params)
        self.lif_tok = build_neuron(neuron, params)
        self.channel = ChannelMLP(dim, height * width, mlp_ratio=mlp_ratio, channel_norm=channel_norm,
                                  neuron=neuron, params=params)
        self.lif_ch = build_neuron(neuron, params)

    def forward(self, x: Tensor, m: Tensor) -> tuple[Tensor, Tensor]:
        a = m + self.token(x)
        out = a + self.channel(self.lif_tok(a))
        return self.lif_ch(out), out


class MLPStage(nn.Module):
    """Downsampler, entry LIF and blocks; every block adds the stage-entry stream ``m``.

    Li et al., TNNLS 2024 (arXiv 2306.12465).

    Args:
        downsample: stem (stage 1), SPE cell or strided conv + BN; analog output.
        blocks: the stage's :class:`MLPBlock` list.
        entry_neuron: LIF turning ``m`` into the first block's spikes.
        running_stream: not from the paper: ``m`` becomes each block's pre-LIF
            sum (False: the released wiring, ``m`` fixed for the whole stage).

    Shape: ``[T, B, C_in, H_in, W_in]`` to spikes ``[T, B, C, H, W]``.
    """

    def __init__(self, downsample: nn.Module, blocks: Sequence[MLPBlock], entry_neuron: nn.Module,
                 running_stream: bool = False) -> None:
        super().__init__()
        self.downsample = downsample
        self.lif_entry = entry_neuron
        self.blocks = nn.ModuleList(blocks)
        self.running_stream = running_stream

    def forward(self, x: Tensor) -> Tensor:
        m = self.downsample(x)  # [T, B, C, H, W], analog
        x = self.lif_entry(m)
        for block in self.blocks:
            x, out = block(x, m)
            if self.running_stream:
                m = out
        return x

    def extra_repr(self) -> str:
        return f"running_stream={self.running_stream}"


_SIZE_FIXED_BY = "in_chans, img_size; its token mixing and per-token BN are size-specific"


@dataclass(frozen=True)
class SpikingMLPConfig:
    """Everything that defines a :class:`SpikingMLP` (its only argument); defaults: the paper's ImageNet setting.

    Stage ``i`` has ``dim * 2**i`` channels on a ``img_size / (patch_size * 2**i)``
    square token grid.

    Attributes:
        dim: base width ``d``.
        depths: blocks per stage (paper: 2-8-14-2).
        img_size: square input side; fixed by the token mixing and per-token BN.
        patch_size: stem patch (paper: 4).
        in_chans: input channels.
        num_classes: classes (0: identity head, ``pre_logits`` only).
        T: time steps (paper: 4; 6 for the T = 6 rows).
        downsample: ``"spe"`` (MLP-SPE) or ``"conv"`` (MLP-S).
        identity_norm: token identity path ``LIF(BN(x))`` (MLP-S) instead of ``x``.
        mlp_ratio: channel-MLP expansion (paper: 3).
        channel_norm: ``"token"`` (released quirk) or ``"channel"`` (clean).
        running_stream: carry each block's pre-LIF sum as the next ``m``
            (not from the paper; default False, the released wiring).
        head_lif: LIF after the pooling (README figure; default False, the code).
        neuron, neuron_params: kind and constants of every neuron.

    Raises:
        ValueError: ``img_size`` not divisible by ``patch_size * 2**(stages - 1)``, sizes below 1,
            an unknown ``downsample`` or ``channel_norm``, a ``T`` below 1.
    """

    dim: int
    depths: tuple[int, ...] = IMAGENET_DEPTHS
    img_size: int = IMAGENET_SIZE
    patch_size: int = STEM_PATCH
    in_chans: int = 3
    num_classes: int = 1000
    T: int = 4
    downsample: DownsampleKind = "spe"
    identity_norm: bool = False
    mlp_ratio: int = MLP_RATIO
    channel_norm: ChannelNorm = "token"
    running_stream: bool = False
    head_lif: bool = False
    neuron: NeuronKind = "lif"
    neuron_params: NeuronParams = MLP_NEURON

    def __post_init__(self) -> None:
        depths = tuple(int(n) for n in self.depths)
        object.__setattr__(self, "depths", depths)
        dim, patch_size, mlp_ratio = self.dim, self.patch_size, self.mlp_ratio
        if self.T < 1:
            raise ValueError(f"T must be >= 1, got {self.T}")
        if self.channel_norm not in ("token", "channel"):
            raise ValueError(f"unknown channel_norm {self.channel_norm!r}; choose 'token' (released) or "
                             "'channel' (clean)")
        if not depths or min(depths) < 1 or dim < 1 or patch_size < 1 or mlp_ratio < 1:
            raise ValueError(f"need dim, patch_size, mlp_ratio >= 1 and depths >= 1, got dim={dim}, "
                             f"patch_size={patch_size}, mlp_ratio={mlp_ratio}, depths={list(depths)}")
        if self.downsample not in ("spe", "conv"):
            raise ValueError(f"unknown downsample {self.downsample!r}; choose 'spe' (MLP-SPE) or 'conv' (MLP-S)")
        factor = patch_size * 2 ** (len(depths) - 1)
        if self.img_size % factor:
            raise ValueError(
                f"img_size={self.img_size} must be divisible by patch_size x 2^(stages-1) = {patch_size} x "
                f"{2 ** (len(depths) - 1)} = {factor} (each of the {len(depths)} stages halves the token grid); "
                f"use e.g. img_size={max(factor, round(self.img_size / factor) * factor)}"
            )


class SpikingMLP(SpikingClassifier):
    """Spiking MLP (MLP-SPE / MLP-S) of Li et al., TNNLS 2024 (arXiv 2306.12465).

    Built from one :class:`SpikingMLPConfig` and holds no variant tables: the
    registered names fill the published numbers. Stage 1 starts with the stem
    (``patch_size`` conv with stride ``patch_size``, no bias, then BN2d); later
    stages with an SPE cell (``downsample="spe"``) or a 2x2 stride-2 conv + BN
    (``"conv"``, MLP-S).

    Args:
        config: the whole network (see :class:`SpikingMLPConfig`); kept as ``self.config``.
        kwargs: deprecated: the fields of the config, as the constructor took them before configs.

    Shape: ``[B, C, H, W]`` (or ``[T, B, C, H, W]``) to ``[B, num_classes]``.

    Raises:
        ValueError: SPE width not divisible by 3; inputs of another shape.
    """

    def __init__(self, config: SpikingMLPConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        cfg = self.config = config_or_kwargs(SpikingMLP, SpikingMLPConfig, config, kwargs)
        neuron, params = cfg.neuron, cfg.neuron_params
        self.T, self.num_classes, self.in_chans, self.img_size = cfg.T, cfg.num_classes, cfg.in_chans, cfg.img_size
        self.encoder = DirectEncoder(cfg.T)
        stages, cin, side = [], cfg.in_chans, cfg.img_size // cfg.patch_size
        for i, n_blocks in enumerate(cfg.depths):
            cout = cfg.dim * 2 ** i
            if i == 0:
                down = _conv_bn(cfg.in_chans, cout, cfg.patch_size, cfg.patch_size, 0)
            elif cfg.downsample == "spe":
                down = SpikingPatchEncoding(cin, cout, neuron=neuron, params=params)
                side //= 2
            else:
                down = _conv_bn(cin, cout, 2, 2, 0, spike_input=True)  # reads the previous stage's spikes
                side //= 2
            blocks = [MLPBlock(cout, side, side, mlp_ratio=cfg.mlp_ratio, channel_norm=cfg.channel_norm,
                               identity_norm=cfg.identity_norm, neuron=neuron, params=params)
                      for _ in range(n_blocks)]
            stages.append(MLPStage(down, blocks, build_neuron(neuron, params), cfg.running_stream))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.num_features = cin
        self.head_norm = TDBatchNorm2d(cin)
        self.head_lif = build_neuron(neuron, params) if cfg.head_lif else nn.Identity()
        self.fc = nn.Linear(cin, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()

    def encode(self, x: Tensor) -> Tensor:
        """Images ``[B, C, H, W]`` repeated over ``T`` (direct coding); sequences checked and passed."""
        self.check_fixed_size(x, _SIZE_FIXED_BY)
        return super().encode(x)

    def forward_features(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` (encoder output) to the last block's spikes ``[T, B, 8d, H/32, W/32]``."""
        if x.dim() != 5:
            raise ValueError(f"forward_features expects a sequence [T, B, C, H, W], got shape {list(x.shape)}; "
                             f"call the model (which encodes images) or model.encode(x) first")
        self.check_fixed_size(x, _SIZE_FIXED_BY)
        return self.stages(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False, per_step: bool = False) -> Tensor:
        """BN2d -> global average pool [-> LIF] -> Linear; logits averaged over ``T`` unless ``per_step``."""
        x = self.head_lif(self.head_norm(x).mean(dim=(-2, -1)))  # [T, B, C]
        if pre_logits:
            return x
        if per_step:
            return self.fc(x)  # [T, B, classes]
        return self.fc(x.mean(0))  # [B, classes]; equals the mean of per-step logits (fc is affine)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh ``Linear(num_features, num_classes)`` (0: identity)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def residual_blocks(self) -> dict[str, nn.Module]:
        """Every :class:`MLPBlock` (``"stages.<i>.blocks.<j>"``), in forward order."""
        return self._children_of(*(f"stages.{i}.blocks" for i in range(len(self.stages))))


# Initialisation: PyTorch defaults everywhere (released code), so there is no init function.


# ---------------------------------------------------------------------------
# Registered names: each fills a SpikingMLPConfig
# ---------------------------------------------------------------------------

_ARGS = ("num_classes", "T", "in_chans", "img_size", "neuron", "neuron_params", "channel_norm", "running_stream",
         "head_lif")


def _mlp(name: str, config: SpikingMLPConfig, doc: str, tunable: tuple[str, ...] = _ARGS,
         paper: str = PAPER) -> Any:
    """Register a spiking MLP entry (family ``spiking_mlp``)."""
    return register_config(name, config, SpikingMLP, tunable=tunable, doc=doc, module=__name__,
                           family="spiking_mlp", paper=paper, input_size=(config.in_chans, config.img_size,
                                                                          config.img_size), modality="image")


mlp_spe_t = _mlp("mlp_spe_t", SpikingMLPConfig(dim=MLP_SPE_T_DIM), "MLP-SPE-T: d = 78, 2-8-14-2, stem + SPE "
                 "(README: 25M parameters; 66.39% ImageNet top-1 at T = 4).")
mlp_spe_s = _mlp("mlp_spe_s", SpikingMLPConfig(dim=MLP_SPE_S_DIM), "MLP-SPE-S: d = 96, 2-8-14-2, stem + SPE "
                 "(README: 38M parameters; 68.84% at T = 4).")
mlp_s = _mlp("mlp_s", SpikingMLPConfig(dim=MLP_S_DIM, downsample="conv", identity_norm=True), """MLP-S (no SPE): \
d = 96, 2-8-14-2, 2x2 stride-2 conv + BN between stages, token identity ``LIF(BN(x))``.

README: 34M parameters, 63.25% at T = 4. The file-to-model mapping of the
authors' no-SPE code is inferred, and that model is not wired into their
training script.
""")
mlp_spe_b = _mlp("mlp_spe_b", SpikingMLPConfig(dim=MLP_SPE_B_DIM, depths=MLP_SPE_B_DEPTHS, T=6), """MLP-SPE-B: \
**CONFIGURATION UNCONFIRMED** (not released; README: 66M parameters, 71.64% at T = 6).

The default d = 108 with 2-10-24-2 (65.61M parameters) is a guess chosen
because it matches the quoted 66M best; d = 126 with 2-8-14-2 (65.01M)
fits almost as well. Neither is confirmed by the paper or the code: pass
``dim`` and ``depths`` to choose. ``dim`` must be a multiple of 3 (SPE).
""", (*_ARGS[:4], "dim", "depths", *_ARGS[4:]))
mlp_spe_mini = _mlp(
    "mlp_spe_mini",
    SpikingMLPConfig(dim=MINI_DIM, depths=MINI_DEPTHS, img_size=MINI_SIZE, patch_size=MINI_PATCH, in_chans=1,
                     num_classes=10),
    """Small MLP-SPE for 28x28 / 32x32 images: spikevision's own configuration, NOT from the paper.

The paper's blocks and wiring at a CPU-friendly size: stem patch 2
(28 -> 14x14 tokens), two stages (d, then 2d after one SPE cell at 7x7),
one block each. For CIFAR pass ``in_chans=3, img_size=32`` (16x16 and
8x8 tokens). ``dim`` must be a multiple of 3 (SPE) and ``img_size``
divisible by ``patch_size * 2**(len(depths) - 1)``. The paper's no-SPE
ablation (MLP-S) at this size: ``downsample="conv", identity_norm=True``.
""",
    (*_ARGS[:4], "dim", "depths", "patch_size", "mlp_ratio", *_ARGS[4:], "downsample", "identity_norm"),
    paper=PAPER + "; spikevision's small-image configuration, not the paper's",
)
