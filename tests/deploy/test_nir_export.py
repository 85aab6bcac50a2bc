"""NIR export: write, read back with the nir package, simulate with an independent loop, compare."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from deploy_nets import MSNet, randomize_bn, small_cnn

nir = pytest.importorskip("nir")

from spikevision.deploy.nir_export import NIRExportError, export_nir, to_nir  # noqa: E402
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
