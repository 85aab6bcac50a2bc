"""Energy estimates from operation counts, with the convention printed beside every number.

**Compute-only estimate (the papers' convention)**, :class:`EnergyModel`:
``E = e_mac * MACs + e_ac * ACs`` with the 45 nm CMOS figures of Horowitz,
"Computing's energy problem (and what we can do about it)", ISSCC 2014:
32-bit float add 0.9 pJ, 32-bit float multiply 3.7 pJ, so one MAC = 4.6 pJ
and one AC = 0.9 pJ. This is the convention of MS-ResNet's group (Hu et
al., TNNLS 2024, arXiv 2112.08954), GAC (Qiu et al., AAAI 2024, arXiv
2308.06582) and most SNN papers: MACs for layers with analog input, ACs =
input firing rate x T x dense MACs for the others. None of the four papers
spikevision implements publishes its counting code, so every report states
its convention (see docs/analysis.md). It ignores memory traffic, which
usually dominates on real hardware.

**Compute + memory estimate**, :class:`MemoryEnergyModel`: adds the energy of
memory accesses, following the structure of Lemaire, Cordone, Castagnetti,
Novac, Courtois, Miramond, "An Analytical Estimation of Spiking Neural
Networks Energy Efficiency", ICONIP 2022 (arXiv 2210.13107): an SNN pays per
synaptic event for reading the weight and for reading and writing the
target neuron's membrane potential, and per neuron and step for its
leak/threshold update; an ANN-style MAC reads its weight and its real-valued
input. Access energies are Horowitz's (ISSCC 2014) 45 nm SRAM figures per
64-bit access: 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ (DRAM 1.3-2.6 nJ).
spikevision's simplified model (its own, not the paper's equations):

    E_mem = e_bit * ( w_bits * (ACs + MACs)            # one weight read per synaptic op
                    + a_bits * MACs                    # one real-valued input read per MAC
                    + 2 * v_bits * ACs                 # read + write the target membrane per AC (event-driven)
                    + 2 * v_bits * neuron_updates )    # read + write every membrane once per step
    e_bit = e_word / 64                                # a b-bit access costs b/64 of a 64-bit word

Assumptions: all data in one SRAM level of the chosen size (no DRAM, no
reuse in registers, so it is an upper bound for the given SRAM), spike events
and addresses are free, bias/BN/pooling/residual additions are not charged
(see the ``additions`` count for those).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

__all__ = [
    "E_MAC_45NM_PJ", "E_AC_45NM_PJ", "SRAM_64BIT_READ_PJ", "EnergyModel", "MemoryEnergyModel", "PAPER_45NM",
]

#: 45 nm, 32-bit float multiply (3.7 pJ) + add (0.9 pJ); Horowitz, ISSCC 2014.
E_MAC_45NM_PJ = 4.6
#: 45 nm, 32-bit float add; Horowitz, ISSCC 2014.
E_AC_45NM_PJ = 0.9
#: 45 nm SRAM energy per 64-bit access by array size; Horowitz, ISSCC 2014.
SRAM_64BIT_READ_PJ: Mapping[str, float] = {"8KB": 10.0, "32KB": 20.0, "1MB": 100.0}


@dataclass(frozen=True)
class EnergyModel:
    """Compute-only energy: ``e_mac_pj * MACs + e_ac_pj * ACs`` (Horowitz, ISSCC 2014, 45 nm).

    Args:
        e_mac_pj: energy of one multiply-accumulate in pJ (paper: 4.6).
        e_ac_pj: energy of one accumulate in pJ (paper: 0.9).
    """

    e_mac_pj: float = E_MAC_45NM_PJ
    e_ac_pj: float = E_AC_45NM_PJ

    def __post_init__(self) -> None:
        if self.e_mac_pj < 0 or self.e_ac_pj < 0:
            raise ValueError(f"energies per operation must be >= 0 pJ, got MAC {self.e_mac_pj}, AC {self.e_ac_pj}")

    def energy_pj(self, *, macs: float, acs: float, neuron_updates: float = 0.0) -> float:
        """Energy in pJ (``neuron_updates`` is accepted for a common signature and not charged)."""
        return self.e_mac_pj * macs + self.e_ac_pj * acs

    def convention(self) -> str:
        """One line stating the formula and its source, printed with every number."""
        is_paper = (self.e_mac_pj, self.e_ac_pj) == (E_MAC_45NM_PJ, E_AC_45NM_PJ)
        source = "45 nm, Horowitz ISSCC 2014" if is_paper else (
            f"user-set constants; the 45 nm values are {E_MAC_45NM_PJ:g}/{E_AC_45NM_PJ:g} pJ")
        return f"E = {self.e_mac_pj:g} pJ x MACs + {self.e_ac_pj:g} pJ x ACs ({source}; compute only, no memory access)"


@dataclass(frozen=True)
class MemoryEnergyModel:
    """Compute + SRAM-access energy (see the module docstring for the formula and assumptions).

    Args:
        compute: the compute-only model added to the memory term.
        e_word_pj: energy of one 64-bit SRAM access in pJ (default 20 pJ: a
            32 KB array, Horowitz ISSCC 2014).
        weight_bits, act_bits, membrane_bits: bits read per weight, per
            real-valued input and per membrane potential (32: float32).
    """

    compute: EnergyModel = EnergyModel()
    e_word_pj: float = SRAM_64BIT_READ_PJ["32KB"]
    weight_bits: int = 32
    act_bits: int = 32
    membrane_bits: int = 32

    def __post_init__(self) -> None:
        if self.e_word_pj < 0 or min(self.weight_bits, self.act_bits, self.membrane_bits) <= 0:
            raise ValueError("e_word_pj must be >= 0 and every bit width positive")

    def memory_pj(self, *, macs: float, acs: float, neuron_updates: float) -> float:
        """Energy of the memory accesses alone, in pJ."""
        e_bit = self.e_word_pj / 64.0
        bits = (self.weight_bits * (acs + macs) + self.act_bits * macs + 2 * self.membrane_bits * acs
                + 2 * self.membrane_bits * neuron_updates)
        return e_bit * bits

    def energy_pj(self, *, macs: float, acs: float, neuron_updates: float = 0.0) -> float:
        """Compute plus memory energy in pJ."""
        return self.compute.energy_pj(macs=macs, acs=acs) + self.memory_pj(
            macs=macs, acs=acs, neuron_updates=neuron_updates)

    def convention(self) -> str:
        return (f"{self.compute.convention()} + SRAM {self.e_word_pj:g} pJ/64-bit word x "
                f"[{self.weight_bits}b weight per op + {self.act_bits}b input per MAC + "
                f"2x{self.membrane_bits}b membrane per AC and per neuron update] "
                f"(Horowitz ISSCC 2014 SRAM; structure after Lemaire et al. ICONIP 2022)")


#: The papers' convention.
PAPER_45NM = EnergyModel()
