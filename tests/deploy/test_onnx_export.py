"""ONNX export: the dynamo exporter's graph agrees with PyTorch on unseen inputs and batch sizes, is refused
(nothing written) when it cannot be checked, and the TorchScript exporter's failure the docs warn about is real."""

import pytest
import torch

import spikevision

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from spikevision.deploy.targets.onnx import ONNXExportError, export_onnx  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return spikevision.create_model("spiking_cnn_mini", T=2, widths=[4, 8]).eval()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "cnn.onnx"
    return export_onnx(model, torch.randn(1, 1, 28, 28), path)


def test_export_matches_pytorch_on_other_batches(model, exported):
    import onnxruntime as ort

    assert exported.path.is_file() and exported.input_name == "x"
    assert exported.checked_batches == ((1, 1, 28, 28), (4, 1, 28, 28)) and exported.max_abs_diff < 1e-4
    session = ort.InferenceSession(str(exported.path))
    x = torch.randn(7, 1, 28, 28)
    got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    torch.testing.assert_close(got, model(x).detach(), atol=1e-4, rtol=1e-4)
    assert list(exported.path.parent.iterdir()) == [exported.path]  # no temporary file left


def test_a_graph_that_disagrees_is_not_written(model, tmp_path, monkeypatch):
    import numpy as np
    import onnxruntime as ort

    # a graph that answers zeros for every image, as the TorchScript exporter's effectively does
    monkeypatch.setattr(ort.InferenceSession, "run",
                        lambda self, names, feed, *a: [np.zeros((len(next(iter(feed.values()))), 10), np.float32)])
    with pytest.raises(ONNXExportError, match=r"disagrees with PyTorch on an input of shape \[2, 1, 28, 28\]"):
        export_onnx(model, torch.randn(2, 1, 28, 28), tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


def test_the_torchscript_exporter_writes_a_graph_without_inputs(model, tmp_path):
    """Why docs/deploy.md says never dynamo=False: the example is baked in, every image gets its answer."""
    import warnings

    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 1, 28, 28),), str(tmp_path / "legacy.onnx"), dynamo=False)
    assert list(onnx.load(str(tmp_path / "legacy.onnx")).graph.input) == []


def test_export_command_writes_a_checked_graph(tmp_path, capsys):
    from spikevision.cli import main

    out = tmp_path / "cnn.onnx"
    assert main(["export", "spiking_cnn_mini", "--model-kwargs", '{"T": 2, "widths": [4, 8]}', "--format", "onnx",
                 "-o", str(out)]) == 0
    line = capsys.readouterr().out
    assert out.is_file() and line.startswith(f"wrote {out}: input 'x' (batch size dynamic)"), line
    assert "ONNX Runtime agrees with PyTorch on batches of 1, 4" in line
