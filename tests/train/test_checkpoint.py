"""The run loader: find_checkpoint, load_run and run_data_config on real checkpoint files."""

import pytest
import torch

from spikevision.models import create_model
from spikevision.train import checkpoint as ck


def _save(path, name="tiny_snn_test", kwargs=None, data=None, model=None, **extra):
    kwargs = {"num_classes": 10, "T": 2} if kwargs is None else kwargs
    model = model or create_model(name, **kwargs)
    state = {ck.VERSION_KEY: ck.FORMAT_VERSION, ck.MODEL_KEY: model.state_dict(), ck.MODEL_NAME_KEY: name,
             ck.MODEL_KWARGS_KEY: kwargs, ck.CONFIG_KEY: {"data": data or {"name": "mnist", "root": "/data/mnist"}},
             ck.EPOCH_KEY: 1, ck.STEP_KEY: 5, **extra}
    return ck.save_checkpoint(path, state), model


def test_load_run_from_a_run_directory_and_a_file(tmp_path):
    torch.manual_seed(0)
    run = tmp_path / "run"
    _, last = _save(run / ck.CHECKPOINT_DIR / ck.LAST)
    loaded = ck.load_run(run)  # no best.pt: falls back to last.pt
    assert loaded.path == run / ck.CHECKPOINT_DIR / ck.LAST and loaded.run_dir == run
    assert loaded.name == "tiny_snn_test" and loaded.kwargs == {"num_classes": 10, "T": 2}
    for a, b in zip(loaded.model.state_dict().values(), last.state_dict().values()):
        assert torch.equal(a, b)
    _, best = _save(run / ck.CHECKPOINT_DIR / ck.BEST)
    assert ck.load_run(run).path.name == ck.BEST and ck.load_run(run, "last").path.name == ck.LAST
    from_file = ck.load_run(run / ck.CHECKPOINT_DIR / ck.BEST)
    assert from_file.run_dir is None
    assert torch.equal(from_file.model.fc.weight, best.fc.weight)


def test_load_run_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="run directory .* not found"):
        ck.find_checkpoint(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no best.pt or last.pt"):
        ck.load_run(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    _save(tmp_path / "checkpoints" / ck.BEST)
    with pytest.raises(FileNotFoundError, match="no last.pt"):
        ck.load_run(tmp_path, "last")
    with pytest.raises(ValueError, match="'best' or 'last'"):
        ck.load_run(tmp_path, "first")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "checkpoints" / ck.BEST).read_bytes()[:100])
    with pytest.raises(ValueError, match="damaged"):
        ck.load_run(tmp_path / "cut.pt")
    # weights that no longer fit the builder (e.g. another spikevision version): a ValueError naming the model
    _save(tmp_path / "other.pt", kwargs={"num_classes": 10, "T": 2, "hidden": 8},
          model=create_model("tiny_snn_test", num_classes=10, T=2, hidden=4))
    with pytest.raises(ValueError, match=r"cannot rebuild tiny_snn_test\(num_classes=10, T=2, hidden=8\)"):
        ck.load_run(tmp_path / "other.pt")
    _save(tmp_path / "unknown.pt", kwargs={"num_classes": 10, "T": 2, "depth": 3},
          model=create_model("tiny_snn_test", num_classes=10, T=2))
    with pytest.raises(ValueError, match="unexpected keyword"):
        ck.load_run(tmp_path / "unknown.pt")


def test_run_data_config_overrides_and_event_frames(tmp_path):
    path, _ = _save(tmp_path / "a.pt", data={"name": "mnist", "root": "/data/mnist", "eval_batch_size": 64})
    run = ck.load_run(path)
    cfg = run.data_config(root=tmp_path, eval_batch_size=None, device="cpu")
    assert (cfg.name, cfg.root, cfg.eval_batch_size, cfg.device) == ("mnist", str(tmp_path), 64, "cpu")
    state = {**run.state, ck.MODEL_NAME_KEY: "ms_resnet20_dvs", ck.MODEL_KWARGS_KEY: {"T": 5},
             ck.CONFIG_KEY: {"data": {"name": "cifar10_dvs", "root": "/x"}}}
    assert ck.run_data_config(state).frames == 5  # event data: the model's T frames, as in training
    assert ck.run_data_config({**state, ck.MODEL_KWARGS_KEY: {}}).frames == 20  # the registered T
    with pytest.raises(ValueError, match="no data section"):
        ck.run_data_config({**state, ck.CONFIG_KEY: {}})
