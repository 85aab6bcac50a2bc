"""The analysis tools on one registered model of every family (a renamed model fails here, never skips)."""

import pytest
import torch

from spikevision.analysis import FiringRateMonitor, SynOpsCounter, block_grad_norms, profile_model, residual_blocks
from spikevision.models import create_model

# (name, input builder): small inputs keep this fast
ZOO = [
    ("ms_resnet20", lambda: torch.randn(2, 3, 16, 16)),
    ("spiking_resnet20", lambda: torch.randn(2, 3, 16, 16)),
    ("gac_ms_resnet18_cifar", lambda: torch.randn(2, 3, 8, 8)),
    ("sresnet20", lambda: torch.randn(2, 3, 16, 16)),
    ("mlp_spe_mini", lambda: torch.randn(2, 1, 28, 28)),
    ("ms_resnet20_dvs", lambda: (torch.rand(2, 2, 2, 32, 32) < 0.2).float()),
]


@pytest.mark.parametrize("name,make_input", ZOO, ids=[n for n, _ in ZOO])
def test_profile_invariants(name, make_input):
    torch.manual_seed(0)
    model = create_model(name, T=2).eval()
    x = make_input()
    with torch.no_grad():
        ref = model(x)
        with SynOpsCounter(model) as ops, FiringRateMonitor(model):
            out = model(x)
    assert torch.equal(out, ref)  # counting changes nothing
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    res = ops.result(samples=2)
    assert res.layers, "no synaptic layer counted"
    for r in res.layers:
        assert r.acs <= r.dense_macs + 1e-6 and r.macs <= r.dense_macs + 1e-6
        assert (r.acs == 0) or r.input_kind == "binary"
        assert r.nb_dense <= r.dense_macs + 1e-6
    nb = res.neurobench()
    assert nb["Effective_ACs"] == pytest.approx(res.totals["acs"])
    prof = profile_model(model, x)
    assert prof.rates and 0.0 <= prof.mean_rate <= 1.0
    assert prof.energy_pj() == pytest.approx(4.6 * prof.ops.totals["macs"] + 0.9 * prof.ops.totals["acs"])


@pytest.mark.parametrize("name", ["ms_resnet20", "sresnet20", "mlp_spe_mini"])
def test_blocks_found_and_gradients_reach_them(name):
    torch.manual_seed(0)
    model = create_model(name, T=2, num_classes=3)
    x = torch.randn(2, 1, 28, 28) if name == "mlp_spe_mini" else torch.randn(2, 3, 16, 16)
    blocks = residual_blocks(model)
    norms = block_grad_norms(model, x, torch.tensor([0, 2]))
    assert list(norms) == [n for n in blocks if n in norms] and len(norms) == len(blocks)
    assert all(v >= 0 for v in norms.values())
