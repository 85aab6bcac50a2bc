"""One-call model profile: firing rates, operation counts and energy per layer, per sample.

:func:`profile_model` runs one forward pass under a
:class:`~spikevision.analysis.monitors.FiringRateMonitor` and an
:class:`~spikevision.analysis.synops.SynOpsCounter` (eval mode, no autograd);
:func:`format_profile` renders the table the ``spikevision profile`` command
prints, with the energy convention on its own line.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikevision.analysis.energy import PAPER_45NM, EnergyModel, MemoryEnergyModel
from spikevision.analysis.monitors import FiringRateMonitor, LayerRate, spiking_layers
from spikevision.analysis.synops import IntegerMode, SynOpsCounter, OpsResult, connection_sparsity, footprint

__all__ = ["Profile", "profile_model", "format_profile"]


@dataclass
class Profile:
    """Result of :func:`profile_model` (all counts per sample)."""

    ops: OpsResult
    rates: dict[str, LayerRate]
    T: int | None
    samples: int
    footprint_bytes: int
    connection_sparsity: float
    energy: EnergyModel
    memory_energy: MemoryEnergyModel
    repeated_input_once: bool = False

    @property
    def mean_rate(self) -> float:
        el = sum(r.elements for r in self.rates.values())
        return sum(r.spikes for r in self.rates.values()) / el if el else float("nan")

    def energy_pj(self, model: EnergyModel | MemoryEnergyModel | None = None) -> float:
        m = model or self.energy
        t = self.ops.totals
        return m.energy_pj(macs=t["macs"], acs=t["acs"], neuron_updates=t["neuron_updates"])


def _samples_and_T(x: Tensor) -> tuple[int, int | None]:
    if x.dim() == 4:
        return x.shape[0], None
    if x.dim() >= 5:
        return x.shape[1], x.shape[0]
    raise ValueError(f"expected images [B, C, H, W] or sequences [T, B, C, H, W], got shape {list(x.shape)}")


def profile_model(model: nn.Module, x: Tensor, *, integer_inputs: IntegerMode = "mac",
                  repeated_input_once: bool = False, energy: EnergyModel = PAPER_45NM,
                  memory_energy: MemoryEnergyModel | None = None) -> Profile:
    """Profile ``model`` on the batch ``x`` (images ``[B, C, H, W]`` or sequences ``[T, B, ...]``).

    The model is put in eval mode for the call and restored afterwards.
    ``T`` is read from ``model.T`` (the :class:`SpikingClassifier` interface) or
    from a sequence input.
    """
    samples, T = _samples_and_T(x)
    T = getattr(model, "T", None) or T
    was_training = model.training
    model.eval()
    try:
        monitor = FiringRateMonitor(model) if spiking_layers(model) else None
        counter = SynOpsCounter(model, integer_inputs=integer_inputs, repeated_input_once=repeated_input_once, T=T)
        with torch.no_grad(), counter:
            if monitor is not None:
                with monitor:
                    model(x)
            else:
                model(x)
    finally:
        model.train(was_training)
    return Profile(counter.result(samples), monitor.rates() if monitor else {}, T, samples, footprint(model),
                   connection_sparsity(model), energy, memory_energy or MemoryEnergyModel(compute=energy),
                   repeated_input_once)


def _si(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3f}{unit}"
    return f"{v:.3g}" if v else "0"


def _energy_str(pj: float) -> str:
    for unit, scale in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{pj / scale:.3f} {unit}"
    return f"{pj:.3g} pJ"


def format_profile(p: Profile, *, show_neurons: bool = True) -> str:
    """The per-layer table and totals as plain text (one sample; convention lines included)."""
    header = (f"{'layer':<44} {'type':<8} {'input':<7} {'in-nz':>6} {'dense MACs':>11} {'ACs':>10} {'MACs':>10} "
              f"{'energy':>11}")
    lines = [header, "-" * len(header)]
    for r in p.ops.layers:
        e = p.energy.energy_pj(macs=r.macs, acs=r.acs)
        lines.append(f"{r.name:<44.44} {r.layer_type:<8.8} {r.input_kind:<7} {r.input_density:>6.3f} "
                     f"{_si(r.dense_macs):>11} {_si(r.acs):>10} {_si(r.macs):>10} {_energy_str(e):>11}")
    if show_neurons and p.rates:
        lines.append("")
        lines.append(f"{'spiking layer':<44} {'neurons':>10} {'rate':>8} {'spikes/neuron/sample':>22}")
        for name, r in p.rates.items():
            T = len(r.rate_per_step)
            lines.append(f"{name:<44.44} {r.neurons:>10} {r.rate:>8.4f} {r.rate * T:>22.3f}")
    t = p.ops.totals
    lines += [
        "",
        f"per sample (T={p.T}): dense MACs {_si(t['dense_macs'])}, ACs {_si(t['acs'])}, MACs {_si(t['macs'])}, "
        f"neuron updates {_si(t['neuron_updates'])}, additions {_si(t['additions'])} (not charged)",
        f"mean firing rate {p.mean_rate:.4f} spikes/neuron/step "
        f"({p.mean_rate * (p.T or 1):.3f} per neuron per sample), "
        f"activation sparsity {1 - p.mean_rate:.4f}, connection sparsity {p.connection_sparsity:.4f}, "
        f"footprint {p.footprint_bytes / 2**20:.2f} MiB",
        f"energy {_energy_str(p.energy_pj())} per sample; convention: {p.energy.convention()}",
        f"energy with memory {_energy_str(p.energy_pj(p.memory_energy))} per sample; convention: "
        f"{p.memory_energy.convention()}",
        _counting_line(p),
    ]
    return "\n".join(lines)


def _counting_line(p: Profile) -> str:
    as_ac = p.ops.integer_inputs == "repeated_ac"
    repeat = ("non-binary inputs repeated at every step counted once" if p.repeated_input_once
              else "layers counted every time step as executed")
    return ("counting: ACs = exact (non-zero binary input, non-zero weight, output) connections"
            + ("; integer inputs as repeated ACs (|x| per connection)" if as_ac else "")
            + f"; MACs = dense MACs of layers with {'real' if as_ac else 'real or integer'}-valued input"
            + f"; {repeat}; bias, BN, pooling not counted")
