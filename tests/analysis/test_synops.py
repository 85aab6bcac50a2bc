"""SynOpsCounter against brute-force loops and hand counts; NeuroBench equality when it is importable."""

import itertools

import pytest
import torch
from torch import nn

from spikevision.analysis import SynOpsCounter, connection_sparsity, footprint, input_kind
from spikevision.analysis.synops import dense_macs
from spikevision.layers import TimeFolded
from spikevision.neuron import LIF


def brute_conv_connections(conv: nn.Conv2d, x: torch.Tensor, weighted_by_value=False) -> float:
    """Plain loop over every output and every kernel tap: sum of the input value (or 1 if non-zero)."""
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    g, cout = conv.groups, conv.out_channels
    cin_g, cout_g = C // g, cout // g
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    total = 0.0
    for n, co, oh, ow in itertools.product(range(N), range(cout), range(Ho), range(Wo)):
        grp = co // cout_g
        for ci, i, j in itertools.product(range(cin_g), range(kh), range(kw)):
            ih, iw = oh * sh - ph + i * dh, ow * sw - pw + j * dw
            if not (0 <= ih < H and 0 <= iw < W) or conv.weight[co, ci, i, j] == 0:
                continue
            v = float(x[n, grp * cin_g + ci, ih, iw])
            total += abs(v) if weighted_by_value else float(v != 0)
    return total


CONVS = [
    dict(in_channels=3, out_channels=4, kernel_size=3, stride=1, padding=1),
    dict(in_channels=3, out_channels=2, kernel_size=3, stride=2, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(0, 1), dilation=(1, 2), groups=2),
]


@pytest.mark.parametrize("cfg", CONVS)
@pytest.mark.parametrize("pruned", [False, True])
def test_conv_acs_equal_brute_force(cfg, pruned):
    torch.manual_seed(0)
    conv = nn.Conv2d(**cfg, bias=False)
    if pruned:
        with torch.no_grad():
            conv.weight[torch.rand_like(conv.weight) < 0.3] = 0
    x = (torch.rand(2, cfg["in_channels"], 6, 7) < 0.4).float()
    with SynOpsCounter(conv) as ops:
        y = conv(x)
    r = ops.result(samples=2).layers[0]
    assert r.input_kind == "binary"
    assert r.acs == pytest.approx(brute_conv_connections(conv, x) / 2)
    assert r.macs == 0
    assert r.dense_macs == y.numel() * conv.weight[0].numel() / 2
    # NeuroBench dense: all-ones input and weights, padding excluded
    ones = nn.Conv2d(**cfg, bias=False)
    nn.init.ones_(ones.weight)
    assert r.nb_dense == pytest.approx(brute_conv_connections(ones, torch.ones_like(x)) / 2)
    assert r.input_density == pytest.approx(float(x.mean()))


def test_linear_acs_nnz_times_out_and_real_is_dense():
    lin = nn.Linear(7, 5)
    x = (torch.rand(3, 4, 7) < 0.3).float()  # [T, B, N] straight into Linear
    with SynOpsCounter(lin) as ops:
        lin(x)
    r = ops.result(samples=4).layers[0]
    assert r.acs == int(x.count_nonzero()) * 5 / 4
    xr = torch.randn(3, 4, 7)
    with SynOpsCounter(lin) as ops:
        lin(xr)
    r = ops.result(samples=4).layers[0]
    assert r.input_kind == "real" and r.acs == 0
    assert r.macs == r.dense_macs == 3 * 4 * 7 * 5 / 4
    # pruned weights: an AC per (non-zero input, non-zero weight) pair, by a loop
    with torch.no_grad():
        lin.weight[:, 0] = 0
        lin.weight[2, 3] = 0
    with SynOpsCounter(lin) as ops:
        lin(x)
    expect = sum(1 for row in x.reshape(-1, 7) for i in range(7) for o in range(5)
                 if row[i] != 0 and lin.weight[o, i] != 0)
    assert ops.result(samples=4).layers[0].acs == expect / 4


def test_integer_inputs_mac_or_repeated_ac():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    x = torch.randint(0, 4, (1, 2, 5, 5)).float()  # block sums s_k + ... + s_0
    assert input_kind(x) == "integer" and input_kind((x > 1).float()) == "binary" and input_kind(x + 0.5) == "real"
    with SynOpsCounter(conv) as ops:
        conv(x)
    r = ops.result(samples=1).layers[0]
    assert r.macs == r.dense_macs == 3 * 25 * 18 and r.acs == 0
    with SynOpsCounter(conv, integer_inputs="repeated_ac") as ops:
        conv(x)
    r = ops.result(samples=1).layers[0]
    assert r.macs == 0
    assert r.acs == pytest.approx(brute_conv_connections(conv, x, weighted_by_value=True))


class _ToyBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.lif = LIF()
        self.conv = TimeFolded(nn.Conv2d(c, c, 3, padding=1, bias=False))

    def forward(self, x):
        return self.conv(self.lif(x)) + x  # one residual addition per output element


def test_neuron_updates_additions_and_time_folding():
    torch.manual_seed(0)
    net = nn.Sequential(TimeFolded(nn.Conv2d(1, 2, 3, padding=1)), _ToyBlock(2), _ToyBlock(2))
    x = torch.randn(3, 2, 1, 4, 4)  # T=3, B=2
    with SynOpsCounter(net) as ops:
        y = net(x)
    res = ops.result(samples=2)
    assert res.neuron_updates == {"1.lif": 3 * 2 * 4 * 4, "2.lif": 3 * 2 * 4 * 4}
    assert res.additions == {"1": 3 * 2 * 4 * 4, "2": 3 * 2 * 4 * 4}  # LIF-internal and counter arithmetic excluded
    assert res.totals["dense_macs"] == (3 * 2 * 16 * 9 + 2 * 3 * 2 * 16 * 18)
    assert all(len(m._forward_hooks) == len(m._forward_pre_hooks) == 0 for m in net.modules())
    # the counted forward gives the same output
    assert torch.equal(y, net(x))


def test_repeated_input_counted_once():
    conv = TimeFolded(nn.Conv2d(1, 2, 3, padding=1, bias=False))
    x = torch.randn(1, 2, 1, 4, 4).expand(3, 2, 1, 4, 4).contiguous()  # direct encoding: same image every step
    with SynOpsCounter(conv, repeated_input_once=True, T=3) as ops:
        conv(x)
    once = ops.result(samples=2).layers[0].macs
    with SynOpsCounter(conv) as ops:
        conv(x)
    assert ops.result(samples=2).layers[0].macs == 3 * once == 3 * 2 * 16 * 9


def test_dense_macs_on_meta_matches_real():
    net = nn.Sequential(TimeFolded(nn.Conv2d(3, 4, 3, stride=2)), LIF(), TimeFolded(nn.Flatten()),
                        TimeFolded(nn.Linear(4 * 3 * 3, 5)))
    x = torch.randn(2, 1, 3, 7, 7)
    real = dense_macs(net, x)
    with torch.device("meta"):
        meta_net = nn.Sequential(TimeFolded(nn.Conv2d(3, 4, 3, stride=2)), LIF(), TimeFolded(nn.Flatten()),
                                 TimeFolded(nn.Linear(4 * 3 * 3, 5)))
    assert dense_macs(meta_net, torch.empty(2, 1, 3, 7, 7, device="meta")) == real
    assert real == {"0.module": 2 * 4 * 9 * 27, "3.module": 2 * 5 * 36}


def test_footprint_and_connection_sparsity():
    lin = nn.Linear(4, 3)
    bn = nn.BatchNorm1d(3)
    net = nn.Sequential(lin, bn)
    with torch.no_grad():
        lin.weight[0] = 0
    # params: 12 + 3 + 3 + 3, buffers: 3 + 3 floats + 1 int64
    assert footprint(net) == (21 + 6) * 4 + 8
    assert connection_sparsity(net) == pytest.approx(4 / 12)


def test_counter_errors():
    with pytest.raises(ValueError, match="integer_inputs"):
        SynOpsCounter(nn.Linear(2, 2), integer_inputs="ac")
    with pytest.raises(ValueError, match="needs T"):
        SynOpsCounter(nn.Linear(2, 2), repeated_input_once=True)
    with SynOpsCounter(nn.Linear(2, 2)) as ops:
        pass
    with pytest.raises(ValueError, match="samples"):
        ops.result(samples=0)


def test_equal_to_neurobench():
    layers_mod = pytest.importorskip(
        "neurobench.metrics.utils.layers",
        reason="neurobench is not installed (its full dependency set is heavy; `pip install --no-deps neurobench` "
               "is enough for this test)")
    torch.manual_seed(0)
    convs = [nn.Conv2d(**cfg) for cfg in CONVS] + [nn.Linear(6, 4)]
    with torch.no_grad():
        convs[1].weight[torch.rand_like(convs[1].weight) < 0.3] = 0
    for layer in convs:
        shape = (2, layer.in_channels, 6, 7) if isinstance(layer, nn.Conv2d) else (3, 6)
        for x in ((torch.rand(shape) < 0.4).float(), torch.randn(shape)):
            with SynOpsCounter(layer) as ops:
                layer(x)
            r = ops.result(samples=1).layers[0]
            eff, spiking = layers_mod.single_layer_MACs(x, layer)
            dense, _ = layers_mod.single_layer_MACs(x, layer, total=True)
            assert spiking == (r.input_kind == "binary")
            assert r.synops == eff
            assert r.nb_dense == dense


def test_whole_model_equals_neurobench():
    """A small zoo model end to end: our per-sample totals = NeuroBench's per-layer counts summed over the
    conv/linear layers of the same forward (its SynapticOperations metric sums the same function per layer)."""
    layers_mod = pytest.importorskip("neurobench.metrics.utils.layers", reason="neurobench is not installed")
    from spikevision.models import create_model

    torch.manual_seed(0)
    model = create_model("spiking_cnn_mini", T=2, widths=(4, 8)).eval()
    x = torch.rand(3, 1, 28, 28)
    eff_ac = eff_mac = dense = 0
    records = []

    def hook(module, inputs, output):
        records.append((module, inputs[0].detach().clone()))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    for module, inp in records:
        eff, spiking = layers_mod.single_layer_MACs(inp, module)
        tot, _ = layers_mod.single_layer_MACs(inp, module, total=True)
        eff_ac, eff_mac = eff_ac + (eff if spiking else 0), eff_mac + (0 if spiking else eff)
        dense += tot
    assert eff_ac > 0 and eff_mac > 0  # both kinds present: analog first conv, spiking rest
    with torch.no_grad(), SynOpsCounter(model) as ops:
        model(x)
    ours = ops.result(samples=x.shape[0]).neurobench()
    assert ours["Effective_ACs"] == pytest.approx(eff_ac / 3)
    assert ours["Effective_MACs"] == pytest.approx(eff_mac / 3)
    assert ours["Dense"] == pytest.approx(dense / 3)


def test_repeated_spike_input_not_deduplicated():
    lin = TimeFolded(nn.Linear(3, 2))
    x = torch.zeros(4, 2, 3)  # silent spikes, identical at every step
    with SynOpsCounter(lin, repeated_input_once=True, T=4) as ops:
        lin(x)
    assert ops.result(samples=2).layers[0].dense_macs == 4 * 2 * 3 * 2 / 2
