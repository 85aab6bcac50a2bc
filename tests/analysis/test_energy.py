"""Energy arithmetic checked by hand, conventions stated, profile totals consistent."""

import pytest
import torch
from torch import nn

from spikevision.analysis import EnergyModel, MemoryEnergyModel, PAPER_45NM, format_profile, profile_model
from spikevision.layers import DirectEncoder, TimeFolded
from spikevision.neuron import LIF


def test_paper_constants_and_hand_arithmetic():
    assert (PAPER_45NM.e_mac_pj, PAPER_45NM.e_ac_pj) == (4.6, 0.9)  # 3.7 pJ fmul + 0.9 pJ fadd (Horowitz 2014)
    assert PAPER_45NM.energy_pj(macs=1000, acs=10_000) == pytest.approx(4600 + 9000)
    assert "4.6 pJ x MACs + 0.9 pJ x ACs" in PAPER_45NM.convention() and "Horowitz" in PAPER_45NM.convention()
    custom = EnergyModel(e_mac_pj=3.1, e_ac_pj=0.1)
    assert custom.energy_pj(macs=10, acs=10) == pytest.approx(32.0)
    assert "user-set" in custom.convention()
    with pytest.raises(ValueError):
        EnergyModel(e_mac_pj=-1)


def test_memory_model_by_hand():
    m = MemoryEnergyModel(e_word_pj=64.0, weight_bits=8, act_bits=16, membrane_bits=4)  # 1 pJ per bit
    # 8 bits x (acs + macs) + 16 bits x macs + 2 x 4 bits x acs + 2 x 4 bits x updates
    mem = 8 * (5 + 2) + 16 * 2 + 8 * 5 + 8 * 3
    assert m.memory_pj(macs=2, acs=5, neuron_updates=3) == pytest.approx(mem)
    assert m.energy_pj(macs=2, acs=5, neuron_updates=3) == pytest.approx(mem + 2 * 4.6 + 5 * 0.9)
    assert "Lemaire" in m.convention() and "SRAM 64 pJ" in m.convention()


def test_profile_totals_and_energy():
    torch.manual_seed(0)
    net = nn.Sequential(DirectEncoder(3), TimeFolded(nn.Conv2d(1, 4, 3, padding=1)), LIF(v_th=0.3),
                        TimeFolded(nn.Flatten()), TimeFolded(nn.Linear(4 * 16, 2)))
    net.T = 3
    x = torch.randn(2, 1, 4, 4)
    p = profile_model(net, x)
    conv, fc = p.ops.layers
    assert conv.input_kind == "real" and fc.input_kind == "binary"
    assert conv.macs == 3 * 4 * 16 * 9  # per sample: T x outputs x fan-in
    # hand count for the linear: every spike reaches the 2 outputs
    with torch.no_grad():
        h = net[2](net[1](net[0](x)))
    assert fc.acs == float(h.count_nonzero()) * 2 / 2
    assert p.energy_pj() == pytest.approx(4.6 * conv.macs + 0.9 * fc.acs)
    assert p.mean_rate == pytest.approx(float(h.mean()))
    assert p.ops.totals["neuron_updates"] == 3 * 64
    text = format_profile(p)
    assert "convention: E = 4.6 pJ x MACs + 0.9 pJ x ACs" in text and "Lemaire" in text
    assert net.training  # mode restored
    once = profile_model(net, x, repeated_input_once=True)
    assert once.ops.layers[0].macs == conv.macs / 3
