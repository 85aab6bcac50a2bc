"""NIR export: write, read back with the nir package, simulate with an independent loop, compare."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from deploy_nets import MSNet, randomize_bn, small_cnn

nir = pytest.importorskip("nir")

from spikevision.deploy.targets.nir import NIRExportError, export_nir, to_nir  # noqa: E402
from spikevision.neuron import LIF, NeuronParams  # noqa: E402


def _simulate(graph, frames: np.ndarray, dt: float) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
    """Run a NIR graph step by step with forward Euler; written from NIR's node definitions only.

    frames: ``[T, *input_shape]`` (one sample). Returns the Output node's value per step and each
    node's per-step output.
    """
    nodes, edges = graph.nodes, graph.edges
    preds = {k: [a for a, b in edges if b == k] for k in nodes}
    order, done = [], set()
    while len(order) < len(nodes):  # topological order
        for k in nodes:
            if k not in done and all(p in done for p in preds[k]):
                order.append(k)
                done.add(k)
    v = {k: np.zeros(np.asarray(n.v_threshold).shape) for k, n in nodes.items() if hasattr(n, "v_threshold")}
    record: dict[str, list[np.ndarray]] = {k: [] for k in nodes}
    for frame in frames:
        out: dict[str, np.ndarray] = {}
        for k in order:
            n = nodes[k]
            x = frame if isinstance(n, nir.Input) else sum(out[p] for p in preds[k])
            if isinstance(n, (nir.Input, nir.Output)):
                y = x
            elif isinstance(n, nir.Conv2d):
                pad = n.padding if isinstance(n.padding, str) else tuple(int(p) for p in n.padding)
                y = F.conv2d(torch.from_numpy(x[None]).float(), torch.from_numpy(n.weight), torch.from_numpy(n.bias),
                             tuple(int(s) for s in n.stride), pad, tuple(int(d) for d in n.dilation),
                             int(n.groups))[0].numpy()
            elif isinstance(n, nir.Affine):
                y = n.weight @ x + n.bias
            elif isinstance(n, nir.AvgPool2d):
                y = F.avg_pool2d(torch.from_numpy(x[None]).float(), tuple(int(k) for k in n.kernel_size),
                                 tuple(int(s) for s in n.stride), tuple(int(p) for p in n.padding))[0].numpy()
            elif isinstance(n, nir.Flatten):
                shape = x.shape
                s, e = n.start_dim, (n.end_dim % len(shape))
                y = x.reshape(*shape[:s], -1, *shape[e + 1:])
            elif isinstance(n, nir.LIF):
                # tau dv/dt = (v_leak - v) + r I, Euler step dt; fire v > thr; reset to v_reset
                v[k] = v[k] + dt / n.tau * (n.v_leak - v[k] + n.r * x)
                z = (v[k] > n.v_threshold).astype(np.float32)
                v[k] = np.where(z > 0, n.v_reset, v[k])
                y = z
            elif isinstance(n, nir.IF):
                v[k] = v[k] + dt * n.r * x
                z = (v[k] > n.v_threshold).astype(np.float32)
                v[k] = np.where(z > 0, n.v_reset, v[k])
                y = z
            else:
                raise AssertionError(f"simulator has no rule for {type(n).__name__}")
            out[k] = np.asarray(y, dtype=np.float32)
            record[k].append(out[k])
    return np.stack(record["output"]), record


def _lif_spikes(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    rec = []
    hooks = [m.register_forward_hook(lambda m, a, o: rec.append(o.detach())) for m in model.modules()
             if isinstance(m, LIF)]
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    return rec, logits


@pytest.mark.parametrize("build,shape,gamma", [
    (lambda: small_cnn(T=4), (1, 8, 8), (2.5, 4.0)),
    (lambda: small_cnn(T=3, p=NeuronParams(decay=1.0, gain=1.0, v_th=1.0)), (1, 8, 8), (2.5, 4.0)),  # IF
    (lambda: MSNet(T=4), (2, 8, 8), (1.0, 2.0)),  # residual sums, projection shortcut, decay 0.25, strict
])
def test_round_trip_matches_model(tmp_path, build, shape, gamma):
    torch.manual_seed(0)
    model = randomize_bn(build(), gamma=gamma)
    x = torch.rand(3, *shape)
    path = tmp_path / "net.nir"
    export_nir(model, x, path, dt=1e-3)
    graph = nir.read(str(path))
    assert float(graph.metadata["dt"]) == 1e-3
    T = int(graph.metadata["time_steps"])
    spikes, logits = _lif_spikes(model, x)
    assert all(0.1 < float(s.mean()) < 0.9 for s in spikes[:2])  # the neurons really fire (a test that can fail)
    n_lif = sum(isinstance(n, (nir.LIF, nir.IF)) for n in graph.nodes.values())
    assert n_lif == len(spikes)
    for b in range(x.shape[0]):
        frames = np.repeat(x[b].numpy()[None], T, axis=0)
        out, record = _simulate(graph, frames, float(graph.metadata["dt"]))
        # readout: the mean over time of the per-step output
        assert np.allclose(out.mean(0), logits[b].numpy(), atol=1e-4)
        first_lif = next(k for k, n in graph.nodes.items() if isinstance(n, (nir.LIF, nir.IF))
                         and all(isinstance(graph.nodes[a], (nir.Input, nir.Conv2d)) for a, c in graph.edges if c == k))
        assert np.array_equal(np.stack(record[first_lif]), spikes[0][:, b].numpy())


def test_residual_sum_is_two_edges():
    torch.manual_seed(1)
    graph = to_nir(randomize_bn(MSNet()), torch.rand(1, 2, 8, 8))
    into = {}
    for a, b in graph.edges:
        into.setdefault(b, []).append(a)
    # block2's input is the sum of block1's branch and its projection shortcut: a node with two incoming edges
    assert sorted(into["block2_lif1"]) == ["block1_conv2", "block1_shortcut_0"]


def test_refuses_max_pool_naming_the_layer(tmp_path):
    model = randomize_bn(small_cnn(pool=nn.MaxPool2d(2)))
    path = tmp_path / "net.nir"
    with pytest.raises(NIRExportError, match=r"layer '7'.*max pooling"):
        export_nir(model, torch.rand(1, 1, 8, 8), path)
    assert not path.exists()


def test_refuses_gate_and_soft_reset():
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.lif = LIF()

        def forward(self, x):
            return torch.sigmoid(x) * self.lif(x)

    model = randomize_bn(small_cnn())
    model.insert(4, Gate())
    with pytest.raises(NIRExportError, match="forward of '4'"):
        to_nir(model, torch.rand(1, 1, 8, 8))
    soft = randomize_bn(small_cnn(p=NeuronParams(decay=0.5, gain=1.0, reset="soft")))
    with pytest.raises(NIRExportError, match="layer '3'.*soft"):
        to_nir(soft, torch.rand(1, 1, 8, 8))


def test_lif_parameters_follow_the_documented_mapping():
    torch.manual_seed(2)
    graph = to_nir(randomize_bn(MSNet()), torch.rand(1, 2, 8, 8), dt=1e-3)
    n = graph.nodes["block1_lif1"]
    assert np.allclose(n.tau, 1e-3 / 0.75) and np.allclose(n.r, 1 / 0.75) and np.allclose(n.v_threshold, 0.5)
    # non-strict threshold (spiking MLP convention) becomes the float32 number just below
    g2 = to_nir(randomize_bn(small_cnn()), torch.rand(1, 1, 8, 8))
    thr = g2.nodes["3"].v_threshold
    assert np.all(thr < 1.0) and np.all(np.nextafter(thr, np.float32(2)) == np.float32(1.0))


@pytest.mark.parametrize("name,kwargs,shape", [
    ("ms_resnet20", {}, (3, 32, 32)),
    ("spiking_resnet20", {}, (3, 32, 32)),
    ("spiking_cnn_mini", {"pool": "avg"}, (1, 28, 28)),  # the quickstart network's NIR variant: flattened readout
])
def test_zoo_round_trip(tmp_path, name, kwargs, shape):
    from spikevision.models import create_model

    torch.manual_seed(3)
    model = randomize_bn(create_model(name, T=2, num_classes=10, **kwargs), gamma=(0.8, 1.6))
    x = torch.rand(1, *shape)
    export_nir(model, x, tmp_path / "m.nir")
    graph = nir.read(str(tmp_path / "m.nir"))
    spikes, logits = _lif_spikes(model, x)
    assert sum(float(s.mean()) > 0.01 for s in spikes) >= len(spikes) // 2
    out, _ = _simulate(graph, np.repeat(x[0].numpy()[None], 2, axis=0), float(graph.metadata["dt"]))
    assert np.allclose(out.mean(0), logits[0].numpy(), atol=1e-3)


def test_zoo_refusals_name_the_layer():
    from spikevision.models import create_model

    with pytest.raises(NIRExportError, match=r"stages\.0\.blocks\.0\.token.*transpose"):
        to_nir(create_model("mlp_spe_mini", T=2), torch.rand(1, 1, 28, 28))
    with pytest.raises(NIRExportError, match=r"layer 'stem\.conv'.*per-time-step"):
        to_nir(create_model("sresnet20", T=2), torch.rand(1, 3, 32, 32))
    with pytest.raises(NIRExportError, match=r"layer 'stages\.0\.pool'.*max pooling"):
        to_nir(create_model("spiking_cnn_mini"), torch.rand(1, 1, 28, 28))  # the quickstart default


def test_default_dt_is_what_the_clients_read_with(tmp_path):
    from spikevision.deploy.targets.nir import DEFAULT_DT

    torch.manual_seed(4)
    graph = export_nir(randomize_bn(MSNet()), torch.rand(1, 2, 8, 8), tmp_path / "m.nir")
    assert DEFAULT_DT == 1e-4 and float(nir.read(str(tmp_path / "m.nir")).metadata["dt"]) == 1e-4
    n = graph.nodes["block1_lif1"]
    assert np.allclose(n.tau, 1e-4 / 0.75) and np.allclose(n.r, 1 / 0.75)
    flat = [n for n in graph.nodes.values() if isinstance(n, nir.Flatten)]
    assert flat and all(n.start_dim < 0 and n.end_dim < 0 for n in flat)  # per-sample dims, counted from the end


def test_event_sequence_example_is_sliced_along_the_batch(tmp_path):
    from spikevision.models import create_model

    torch.manual_seed(5)
    model = randomize_bn(create_model("spiking_cnn_mini", T=3, in_chans=2, pool="avg"), gamma=(0.8, 1.6))
    events = (torch.rand(3, 4, 2, 28, 28) < 0.3).float()  # [T, B, C, H, W] event frames, fed past the encoder
    graph = export_nir(model, events, tmp_path / "ev.nir")
    assert tuple(graph.nodes["input"].input_type["input"]) == (2, 28, 28) and graph.metadata["time_steps"] == 3
    with torch.no_grad():
        logits = model(events)
    for b in range(events.shape[1]):
        out, _ = _simulate(graph, events[:, b].numpy(), float(graph.metadata["dt"]))
        assert np.allclose(out.mean(0), logits[b].numpy(), atol=1e-4)
    with pytest.raises(ValueError, match=r"\[T, B, C, H, W\]"):
        to_nir(model, events[0, 0])


# ---------------------------------------------------------------------------
# real NIR clients read the file spikevision writes, with their default dt
# ---------------------------------------------------------------------------

def _client_nets():
    from spikevision.models import create_model

    torch.manual_seed(6)
    return {
        "small_cnn": (randomize_bn(small_cnn(T=4), gamma=(2.5, 4.0)), torch.rand(3, 1, 8, 8)),
        "ms_net": (randomize_bn(MSNet(T=4), gamma=(1.0, 2.0)), torch.rand(3, 2, 8, 8)),
        "ms_resnet20": (randomize_bn(create_model("ms_resnet20", T=2, num_classes=10), gamma=(0.8, 1.6)),
                        torch.rand(3, 3, 32, 32)),
        "quickstart_avg": (randomize_bn(create_model("spiking_cnn_mini", T=2, pool="avg"), gamma=(0.8, 1.6)),
                           torch.rand(3, 1, 28, 28)),
    }


def _frames(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The per-step input ``[T, B, C, H, W]`` that the graph's Input receives (the direct encoding)."""
    T = next(m.T for m in model.modules() if hasattr(m, "T") and isinstance(m.T, int))
    return x.unsqueeze(0).expand(T, *x.shape).contiguous()


def _check_client(out_steps: torch.Tensor, logits: torch.Tensor) -> None:
    """The client's per-step outputs ``[T, B, K]``, averaged over time (the graph's readout), give our logits."""
    got = out_steps.detach().float().mean(0)
    assert got.shape == logits.shape
    torch.testing.assert_close(got, logits, atol=1e-4, rtol=1e-4)
    assert torch.equal(got.argmax(-1), logits.argmax(-1))


def _snntorch_steps(path, frames: torch.Tensor) -> torch.Tensor:
    """snnTorch 1.0 runs the file: its importer (dt fixed at 1e-4), hidden state kept in its neurons."""
    pytest.importorskip("snntorch")
    from snntorch import utils
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(nir.read(str(path)))
    utils.reset(net)  # its neurons hold the membrane between calls: start from zero
    with torch.no_grad():
        return torch.stack([net(x)[0] for x in frames])


def _spikingjelly_steps(path, frames: torch.Tensor) -> torch.Tensor:
    """SpikingJelly 2.0 runs the file: ``import_from_nir`` with its default dt (1e-4), explicit state."""
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    net = import_from_nir(str(path))
    state, outs = None, []
    with torch.no_grad():
        for x in frames:
            out, state = net(x, state)
            outs.append(out)
    return torch.stack(outs)


@pytest.mark.parametrize("client", ["snntorch", "spikingjelly"])
@pytest.mark.parametrize("net", ["small_cnn", "ms_net", "ms_resnet20", "quickstart_avg"])
def test_real_clients_reproduce_the_model(tmp_path, client, net):
    """The file as written by default (dt, Flatten dims) runs in the client, batch of 3, with our logits."""
    model, x = _client_nets()[net]
    path = tmp_path / "m.nir"
    export_nir(model, x, path)
    with torch.no_grad():
        logits = model(x)
    run = _snntorch_steps if client == "snntorch" else _spikingjelly_steps
    _check_client(run(path, _frames(model, x)), logits)


def test_real_clients_on_an_event_model(tmp_path):
    from spikevision.models import create_model

    torch.manual_seed(7)
    model = randomize_bn(create_model("spiking_cnn_mini", T=3, in_chans=2, pool="avg"), gamma=(0.8, 1.6))
    events = (torch.rand(3, 4, 2, 28, 28) < 0.3).float()
    export_nir(model, events, tmp_path / "ev.nir")
    with torch.no_grad():
        logits = model(events)
    _check_client(_snntorch_steps(tmp_path / "ev.nir", events), logits)
    _check_client(_spikingjelly_steps(tmp_path / "ev.nir", events), logits)


def test_spikingjelly_runs_if_neurons(tmp_path):
    """NIR's IF (dv/dt = r I) is exported with r = gain / dt, which SpikingJelly reads; snnTorch 1.0 cannot."""
    torch.manual_seed(8)
    model = randomize_bn(small_cnn(T=3, p=NeuronParams(decay=1.0, gain=1.0, v_th=1.0)), gamma=(2.5, 4.0))
    x = torch.rand(3, 1, 8, 8)
    export_nir(model, x, tmp_path / "if.nir")
    with torch.no_grad():
        logits = model(x)
    _check_client(_spikingjelly_steps(tmp_path / "if.nir", _frames(model, x)), logits)
