"""Layers for spiking sequences: time folding, normalisation, input encoders, spike-input convolutions."""

from spikevision.layers.encoders import DirectEncoder, PoissonEncoder, check_image
from spikevision.layers.gac import GatedAttentionCoding
from spikevision.layers.norm import (
    BNTT2d,
    SyncBatchNorm,
    TDBatchNorm1d,
    TDBatchNorm2d,
    TimeFoldedSyncBatchNorm,
    TokenBatchNorm1d,
    convert_sync_batchnorm,
)
from spikevision.layers.spike_conv import SpikeConv2d, spike_conv2d, use_spike_conv
from spikevision.layers.temporal import TimeFolded, check_T, fold, unfold, use_time_broadcast

__all__ = [
    "TimeFolded", "fold", "unfold", "check_T", "use_time_broadcast",
    "TDBatchNorm2d", "TDBatchNorm1d", "BNTT2d", "TokenBatchNorm1d",
    "SyncBatchNorm", "TimeFoldedSyncBatchNorm", "convert_sync_batchnorm",
    "DirectEncoder", "PoissonEncoder", "check_image", "GatedAttentionCoding",
    "SpikeConv2d", "spike_conv2d", "use_spike_conv",
]
