"""safetensors round trip and the ``deploy`` / ``export`` commands end to end on tiny files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deploy_nets import randomize_bn
from spikevision.cli import main
from spikevision.data.idx import write_idx
from spikevision.deploy.weights import load_model, read_metadata, save_weights
from spikevision.models import create_model

TINY = {"T": 2, "dim": 6, "num_classes": 10}


def _tiny_model():
    torch.manual_seed(0)
    return randomize_bn(create_model("mlp_spe_mini", **TINY), gamma=(1.5, 3.0))


def test_safetensors_round_trip(tmp_path):
    model = _tiny_model()
    path = save_weights(model, tmp_path / "w.safetensors", model_name="mlp_spe_mini", model_kwargs=TINY)
    meta = read_metadata(path)
    assert meta["model_name"] == "mlp_spe_mini" and meta["model_kwargs"] == TINY and meta["kind"] == "float"
    loaded = load_model(path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    with pytest.raises(TypeError, match="JSON"):
        save_weights(model, tmp_path / "bad.safetensors", model_kwargs={"f": object()})
    assert not (tmp_path / "bad.safetensors").exists()


def test_half_precision_storage_rounds_floats_keeps_integers_and_refuses_overflow(tmp_path):
    from safetensors.torch import load_file

    model = _tiny_model()
    full = save_weights(model, tmp_path / "w32.safetensors", model_name="mlp_spe_mini", model_kwargs=TINY)
    half = save_weights(model, tmp_path / "w16.safetensors", model_name="mlp_spe_mini", model_kwargs=TINY,
                        dtype=torch.float16)
    stored = load_file(str(half))
    loaded = load_model(half)
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            assert stored[k].dtype == torch.float16
            # what loads is the float32 value rounded to the nearest float16, nothing else
            assert torch.equal(loaded.state_dict()[k], v.half().float()), k
        else:
            assert stored[k].dtype == v.dtype and torch.equal(stored[k], v), k
    floats = sum(v.numel() for v in model.state_dict().values() if v.is_floating_point())
    assert sum(t.nbytes for t in load_file(str(full)).values()) - sum(t.nbytes for t in stored.values()) == 2 * floats
    with torch.no_grad():
        model.state_dict()[next(k for k, v in model.state_dict().items() if v.is_floating_point())].view(-1)[0] = 1e6
    with pytest.raises(ValueError, match="beyond the range of torch.float16"):
        save_weights(model, tmp_path / "big.safetensors", dtype=torch.float16)
    save_weights(model, tmp_path / "big.safetensors", dtype=torch.bfloat16)  # bfloat16 has float32's range


def test_export_command_safetensors_and_nir(tmp_path, capsys, caplog):
    src = save_weights(_tiny_model(), tmp_path / "w.safetensors", model_name="mlp_spe_mini", model_kwargs=TINY)
    assert main(["export", str(src), "--format", "safetensors", "--fold", "-o", str(tmp_path / "f.safetensors")]) == 0
    assert read_metadata(tmp_path / "f.safetensors")["kind"] == "folded"
    with pytest.raises(ValueError, match="folded"):
        load_model(tmp_path / "f.safetensors")
    # the spiking MLP's axial token mixing permutes features: refused (exit status 1), nothing written
    assert main(["export", str(src), "--format", "nir", "-o", str(tmp_path / "m.nir")]) == 1
    assert "spikevision export: cannot export mlp_spe_mini to NIR" in caplog.text
    assert "stages.0.blocks.0.token" in caplog.text
    assert not (tmp_path / "m.nir").exists()
    assert main(["export", "ms_resnet20", "--model-kwargs", '{"T": 2}', "--format", "nir",
                 "-o", str(tmp_path / "ms.nir")]) == 0
    assert "NIR nodes" in capsys.readouterr().out and (tmp_path / "ms.nir").is_file()


def _run_dir(tmp_path, name: str, kwargs: dict, model):
    """A run directory (checkpoint + config) over tiny Fashion-MNIST IDX files."""
    from spikevision.train import checkpoint as ck
    from spikevision.train.config import config_from_dict

    rng = np.random.default_rng(0)
    data = tmp_path / "fmnist"
    data.mkdir(exist_ok=True)
    for prefix, n in (("train", 4), ("t10k", 12)):
        write_idx(data / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(data / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8))
    cfg = config_from_dict({"model": {"name": name, **kwargs},
                            "data": {"name": "fashion_mnist", "root": str(data), "batch_size": 4}})
    run = tmp_path / f"run_{name}"
    state = {ck.VERSION_KEY: ck.FORMAT_VERSION, ck.MODEL_KEY: model.state_dict(),
             ck.MODEL_NAME_KEY: name, ck.MODEL_KWARGS_KEY: kwargs, ck.CONFIG_KEY: cfg.to_dict(),
             ck.EPOCH_KEY: 1, ck.STEP_KEY: 1}
    ck.save_checkpoint(run / "checkpoints" / "last.pt", state)
    return run


def test_deploy_command_on_a_run_directory(tmp_path, capsys, caplog):
    run = _run_dir(tmp_path, "mlp_spe_mini", TINY, _tiny_model())
    assert main(["deploy", str(run), "--batch-size", "5", "--audit-batch", "2", "--limit", "11",
                 "--runtime", "python"]) == 0
    out = capsys.readouterr().out
    assert "Multiplication-free: no" in out and "channel.norm1" in out
    agreement = json.loads((run / "deploy" / "agreement.json").read_text())
    assert agreement["samples"] == 11 and agreement["agreement"] >= 0.9 and agreement["runtime"] == "python"
    audit = json.loads((run / "deploy" / "audit.json").read_text())
    assert "stages.0.blocks.0.channel.norm1" in audit["non_mfi_layers"]
    meta = read_metadata(run / "deploy" / "integer_model.safetensors")
    assert meta["kind"] == "integer" and meta["extra"]["engine"]["weight_bits"] == 16
    with pytest.raises(SystemExit, match="^spikevision deploy: .*has no best.pt or last.pt"):
        main(["deploy", str(tmp_path / "fmnist")])
    # the spiking MLP's token mixing (transposes) and concatenations are index maps: it exports to C
    assert main(["export", str(run), "--format", "c", "-o", str(tmp_path / "mlp_c")]) == 0
    assert {p.name for p in (tmp_path / "mlp_c").iterdir()} == {"mlp_spe_mini.c", "mlp_spe_mini.h", "main.c"}
    assert "data movement" in (tmp_path / "mlp_c" / "mlp_spe_mini.c").read_text()  # the transposes' comments


def test_native_runtime_and_c_export_commands(tmp_path, capsys):
    kwargs = {"widths": [4, 8]}
    torch.manual_seed(0)
    run = _run_dir(tmp_path, "spiking_cnn_mini", kwargs, randomize_bn(create_model("spiking_cnn_mini", **kwargs)))
    assert main(["deploy", str(run), "--runtime", "native", "--batch-size", "5", "--audit-batch", "2",
                 "--limit", "11", "--check", "12"]) == 0
    out = capsys.readouterr().out
    assert "bit-exact with the Python engine on 12 images" in out and "batch 64" in out
    native = json.loads((run / "deploy" / "native.json").read_text())
    assert native["bit_exact"] == {"images": 12, "equal": True} and native["weight_bytes"] > 0
    agreement = json.loads((run / "deploy" / "agreement.json").read_text())
    assert agreement["runtime"] == "native" and agreement["samples"] == 11
    out_dir = tmp_path / "c"
    assert main(["export", str(run), "--format", "c", "-o", str(out_dir), "--weight-bits", "8"]) == 0
    out = capsys.readouterr().out
    assert "flash" in out and "RAM" in out and "int8" in out
    assert {p.name for p in out_dir.iterdir()} == {"spiking_cnn_mini.c", "spiking_cnn_mini.h", "main.c"}
    assert "int spiking_cnn_mini_infer(const uint8_t *image, int64_t *logits);" in \
        (out_dir / "spiking_cnn_mini.h").read_text()


def _one_line(info: pytest.ExceptionInfo, command: str) -> str:
    message = str(info.value.code)
    assert message.startswith(f"spikevision {command}: ") and "\n" not in message, message
    return message


def test_deploy_and_export_refuse_bad_input_in_one_line(tmp_path, monkeypatch, caplog):
    """Failures on the deploy side end in one line and leave nothing behind: non-finite weights, a runtime that
    cannot be built (no working C compiler), an empty output folder, a C name that collides."""
    model = _tiny_model()
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.endswith("weight")).view(-1)[0] = float("nan")
    bad = save_weights(model, tmp_path / "nan.safetensors", model_name="mlp_spe_mini", model_kwargs=TINY)
    for command, extra in (("deploy", ["--out", str(tmp_path / "d")]), ("export", ["--format", "c", "-o", str(tmp_path / "c")])):
        with pytest.raises(SystemExit) as info:
            main([command, "mlp_spe_mini", "--weights", str(bad), "--model-kwargs", json.dumps(TINY), *extra])
        assert "NaN or infinite" in _one_line(info, command)
    assert not (tmp_path / "d").exists() and not (tmp_path / "c").exists()
    # no working C compiler: --runtime native says so in one line; auto falls back to the Python engine
    good = save_weights(_tiny_model(), tmp_path / "w.safetensors", model_name="mlp_spe_mini", model_kwargs=TINY)
    monkeypatch.setenv("CC", "false")
    monkeypatch.setenv("SPIKEVISION_CACHE_DIR", str(tmp_path / "cache"))  # nothing built before
    base = ["deploy", str(good), "--audit-batch", "2"]
    with pytest.raises(SystemExit) as info:
        main(base + ["--runtime", "native", "--out", str(tmp_path / "n")])
    assert "the native runtime could not be built" in _one_line(info, "deploy")
    assert main(base + ["--out", str(tmp_path / "auto")]) == 0
    assert "measuring with the Python engine instead" in caplog.text
    monkeypatch.delenv("CC")
    assert main(["export", str(good), "--format", "c", "-o", ""]) == 2
    assert main(["export", str(good), "--format", "c", "-o", str(tmp_path / "m"), "--name", "main"]) == 2
    assert "would overwrite the example main.c" in caplog.text and not (tmp_path / "m").exists()
