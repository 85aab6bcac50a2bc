"""Analysis of spiking networks: firing rates, operation counts, energy, gradient isometry, plots.

* :mod:`~spikevision.analysis.monitors`: :class:`FiringRateMonitor` (per-layer, per-step, per-channel rates).
* :mod:`~spikevision.analysis.synops`: :class:`SynOpsCounter` (dense MACs, ACs, MACs, neuron updates, additions;
  NeuroBench footprint / connection sparsity / effective operations).
* :mod:`~spikevision.analysis.energy`: 45 nm energy per operation (Horowitz, ISSCC 2014) and a memory-aware model.
* :mod:`~spikevision.analysis.profile`: :func:`profile_model` and :func:`format_profile` (the ``profile`` command).
* :mod:`~spikevision.analysis.isometry`: gradient norms at block inputs, phi(JJ^T), the MS vs vanilla depth study.
* :mod:`~spikevision.analysis.plots`: matplotlib (Agg) figures.
"""

from spikevision.analysis.energy import PAPER_45NM, EnergyModel, MemoryEnergyModel
from spikevision.analysis.isometry import (
    block_grad_norms, block_phi, blockwise_phi, depth_comparison, residual_blocks, train_steps,
)
from spikevision.analysis.monitors import (
    FiringRateMonitor, LayerRate, SurrogateWindowMonitor, spiking_layers,
)
from spikevision.analysis.synops import LayerOps, SynOpsCounter, OpsResult, connection_sparsity, footprint, input_kind
from spikevision.analysis.profile import Profile, format_profile, profile_model

__all__ = [
    "FiringRateMonitor", "LayerRate", "spiking_layers", "SurrogateWindowMonitor",
    "SynOpsCounter", "OpsResult", "LayerOps", "input_kind", "footprint", "connection_sparsity",
    "EnergyModel", "MemoryEnergyModel", "PAPER_45NM",
    "Profile", "profile_model", "format_profile",
    "residual_blocks", "train_steps", "block_grad_norms", "block_phi", "blockwise_phi", "depth_comparison",
]
