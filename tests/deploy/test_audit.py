"""The MFI audit table: which layers multiply, and why."""

from __future__ import annotations

import json
import weakref

import pytest
import torch
from torch import nn

from deploy_nets import MSNet, randomize_bn, small_cnn
from spikevision.deploy.audit import audit_model, compare_models
from spikevision.deploy.engine.arithmetic import ArithmeticCounter
from spikevision.models import create_model
from spikevision.deploy.engine import EngineConfig
from spikevision.neuron import NeuronParams


def test_ms_style_net_lists_analog_first_layer_projection_and_readout():
    torch.manual_seed(0)
    model = randomize_bn(MSNet())
    report = audit_model(model, torch.rand(4, 2, 8, 8))
    non_mfi = {r.layer: r for r in report.non_mfi}
    # the stem sees pixels, the projection shortcut the real-valued stream, the readout averages rates
    assert set(non_mfi) == {"stem", "block1.shortcut.0", "head", "head.fc"}
    assert non_mfi["stem"].input == "analog" and "encoder" in non_mfi["stem"].note
    assert "block1.shortcut.0" in report.to_markdown()
    assert set(report.spike_driven) == {"block1.conv1", "block1.conv2", "block2.conv1", "block2.conv2"}
    assert not report.multiplication_free
    rows = {r.layer: r for r in report.rows}
    assert rows["block1.conv1"].mfi and rows["block1.conv1"].ops["mul"] == 0 and rows["block1.conv1"].ops["add"] > 0
    assert rows["block1.conv1"].what == "conv + BN folded"
    data = json.loads(report.to_json())
    assert data["non_mfi_layers"] == [r.layer for r in report.non_mfi]
    assert "Multiplication-free: no" in report.to_markdown()


def test_non_power_of_two_leak_and_division_are_listed():
    torch.manual_seed(1)
    p = NeuronParams(decay=0.8744, gain=1.0, v_th=1.0, reset="soft", strict=True)
    model = randomize_bn(small_cnn(p=p, pool=nn.AvgPool2d(2)))
    x = torch.rand(2, 1, 8, 8)
    report = audit_model(model, x)
    rows = {r.layer: r for r in report.rows}
    assert not rows["3"].mfi and "0.8744" in rows["3"].note
    assert rows["7"].mfi  # 2x2 average = sum and a shift by 2
    shifted = audit_model(model, x, EngineConfig(leak="shift_add", shift_add_terms=4))
    assert {r.layer: r for r in shifted.rows}["3"].mfi
    # a 3x3 average divides by 9
    model9 = randomize_bn(small_cnn(pool=nn.AvgPool2d(3, stride=2, padding=1)))
    row = {r.layer: r for r in audit_model(model9, x).rows}["7"]
    assert not row.mfi and "9" in row.note


def test_compare_models_counts_and_limit():
    torch.manual_seed(2)
    model = randomize_bn(small_cnn())
    from spikevision.deploy.engine import compile_integer

    im = compile_integer(model, torch.rand(2, 1, 8, 8))
    batches = [(torch.rand(8, 1, 8, 8), torch.randint(0, 5, (8,))) for _ in range(3)]
    res = compare_models(model, im, batches, limit=20)
    assert res["samples"] == 20 and 0.0 <= res["float_accuracy"] <= 1.0 and res["agreement"] >= 0.9
    with pytest.raises(ValueError, match="no samples"):
        compare_models(model, im, [])


def test_layer_that_saw_no_spike_is_reported_inconclusive():
    model = randomize_bn(small_cnn())
    with torch.no_grad():
        model[2].bias.fill_(-100.0)  # the first LIF never fires: conv "4" sees only zeros
    report = audit_model(model, torch.rand(2, 1, 8, 8))
    row = {r.layer: r for r in report.rows}["4"]
    assert row.input == "silent" and "inconclusive" in row.note
    assert "4" not in report.spike_driven


def test_zoo_audits_match_the_architectures():
    """MS-ResNet: projection shortcuts convolve the real-valued membrane stream, so they multiply (Hu et al.,
    arXiv 2112.08954); S-ResNet: the first conv of every block after the first reads the non-binary sum of
    spikes and block input (Vicente-Sola et al., arXiv 2111.05955)."""
    from spikevision.models import create_model

    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32)
    ms = audit_model(randomize_bn(create_model("ms_resnet20", T=2)), x)
    assert {r.layer for r in ms.non_mfi if r.what.startswith("conv")} == {
        "stem.0", "stages.1.0.shortcut.0", "stages.2.0.shortcut.0"}
    s = audit_model(randomize_bn(create_model("sresnet20", T=2), gamma=(1.5, 3.0)), x)
    convs = {r.layer for r in s.non_mfi if r.what.startswith("conv")}
    firsts = {f"stages.{i}.{j}.unit_a.conv" for i in range(3) for j in range(3)} - {"stages.0.0.unit_a.conv"}
    assert convs == {"stem.conv", "stages.1.0.shortcut.conv", "stages.2.0.shortcut.conv"} | firsts
    assert all("0.8744" in r.note for r in s.non_mfi if r.what.startswith("neuron"))


def test_model_row_counts_only_what_reaches_the_logits():
    """The model's input check (``torch.isfinite(x).all()``, in its own forward) never reaches the logits, so it
    is not the model's arithmetic: the ``(model)`` row is the readout's mean over time and nothing else
    (one division per logit of the 16 images: 160 multiplications, and the additions of the T = 2 steps)."""
    torch.manual_seed(0)
    model = create_model("spiking_cnn_mini").eval()
    x = torch.rand(16, 1, 28, 28)
    row = next(r for r in audit_model(model, x).rows if r.layer == "")
    assert row.ops["mul"] == 16 * 10 and row.ops["add"] == 16 * 10 * 2
    assert row.ops["compare"] == 0 and row.ops["unknown"] == 0 and row.ops["float"] == 0


class _ReusingAllocator:
    """Stands in for ``ArithmeticCounter._storage``: gives each storage a fake address, always the one freed last
    (the most eager reuse an allocator can make), so address reuse happens at every chance, not by heap luck."""

    def __init__(self) -> None:
        self.live: dict[int, tuple[weakref.ref, int]] = {}  # id(storage) -> (weak ref, fake address)
        self.freed: list[int] = []
        self.next = 1

    def __call__(self, t: torch.Tensor):
        storage = t.untyped_storage()
        entry = self.live.get(id(storage))
        if entry is not None and entry[0]() is storage:
            return entry[1], storage
        for key, (ref, address) in list(self.live.items()):
            if ref() is None:
                self.freed.append(address)
                del self.live[key]
        if self.freed:
            address = self.freed.pop()
        else:
            address, self.next = self.next, self.next + 1
        self.live[id(storage)] = (weakref.ref(storage), address)
        return address, storage


def test_freed_memory_reused_by_a_new_tensor_inherits_nothing(monkeypatch):
    """A value built outside the dispatcher (``torch.tensor`` in a neuron) lands in just-freed memory: the freed
    tensor's writers (here the input check's multiplication) must not flow into it. CI once saw this by heap
    luck; the allocator stand-in makes every reuse happen, and the counts must not change."""
    torch.manual_seed(0)
    model = create_model("spiking_cnn_mini").eval()
    x = torch.rand(16, 1, 28, 28)
    plain = audit_model(model, x)
    monkeypatch.setattr(ArithmeticCounter, "_storage", staticmethod(_ReusingAllocator()))
    reused = audit_model(model, x)
    assert [(r.layer, r.ops) for r in reused.rows] == [(r.layer, r.ops) for r in plain.rows]
    row = next(r for r in reused.rows if r.layer == "")
    assert row.ops["mul"] == 16 * 10 and row.ops["add"] == 16 * 10 * 2


def test_keep_reaching_drops_side_computations():
    """An op whose result the output never reads is dropped; one it reads through an in-place write is kept."""
    class Net(nn.Module):
        def forward(self, x):
            _unused = (x * 3.0).sum()  # computed, never returned
            out = torch.zeros_like(x)
            out.add_(x * 2.0)  # reaches the output through an in-place write
            return out

    net = Net()
    counter = ArithmeticCounter(net)
    x = torch.rand(4, 5)
    with counter:
        y = net(x)
    assert counter.totals()["mul"] == 40  # both products ran
    counter.keep_reaching(y)
    assert counter.totals()["mul"] == 20 and counter.totals()["add"] == 20
