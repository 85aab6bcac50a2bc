"""The run loader: find_checkpoint, load_run and run_data_config on real checkpoint files."""

import errno
import os

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
    with pytest.raises(ValueError, match="unknown key model_kwargs.depth for tiny_snn_test"):
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


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, bad):
    model = create_model("tiny_snn_test", num_classes=10, T=2)
    with torch.no_grad():
        model.fc.weight[3, 1] = bad
    path, _ = _save(tmp_path / "diverged.pt", model=model)
    for load in (ck.load_run, ck.load_checkpoint):
        with pytest.raises(ValueError, match=r"diverged.pt: model weights hold NaN or infinite values \(fc.weight\)"):
            load(path)


class Payload:  # what an untrusted file may carry: a class that unpickling would import and build
    pass


def test_a_pickled_object_is_refused_without_advice_to_load_it_unsafely(tmp_path):
    torch.save({"model": Payload()}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError) as e:
        ck.load_checkpoint(tmp_path / "foreign.pt")
    msg = str(e.value)
    assert "foreign.pt" in msg and "pickled Python objects, among them" in msg and "Payload" in msg
    (tmp_path / "noise.pt").write_bytes(b"\x80\x02" + bytes(range(256)) * 4)  # not a zip: torch's pickle path
    with pytest.raises(ValueError) as noise:
        ck.load_checkpoint(tmp_path / "noise.pt")
    for msg in (msg, str(noise.value)):
        for advice in ("weights_only", "Re-running", "safe_globals", "trust"):
            assert advice not in msg, msg
        assert "\n" not in msg and "cannot be loaded as a checkpoint" in msg


def _failing_save(exc, after_bytes=b"PK\x03\x04partial"):
    def save(obj, f, *a, **k):  # writes part of the file, then fails as a full disk does
        f.write(after_bytes)
        raise exc
    return save


@pytest.mark.parametrize("exc", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4480 vs 4374"),
], ids=["ENOSPC", "torch-unexpected-pos"])
def test_a_failed_write_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, exc):
    path, _ = _save(tmp_path / "checkpoints" / ck.LAST)
    good = path.read_bytes()
    monkeypatch.setattr(torch, "save", _failing_save(exc))
    with pytest.raises(ck.CheckpointWriteError) as e:
        _save(path)
    assert str(e.value) == (f"no space left on device writing {path}; last good checkpoint {path} kept; "
                            "free some space, then continue with --resume")
    assert e.value.errno == errno.ENOSPC and "enforce fail" not in str(e.value)
    assert path.read_bytes() == good and sorted(p.name for p in path.parent.iterdir()) == [ck.LAST]  # no temp file
    with pytest.raises(ck.CheckpointWriteError, match=r"writing .*best.pt; no earlier checkpoint"):
        _save(path.with_name(ck.BEST))
    assert sorted(p.name for p in path.parent.iterdir()) == [ck.LAST]


def test_other_write_errors_and_foreign_runtime_errors(tmp_path, monkeypatch):
    path, _ = _save(tmp_path / ck.LAST)
    monkeypatch.setattr(torch, "save", _failing_save(PermissionError(errno.EACCES, "Permission denied")))
    with pytest.raises(ck.CheckpointWriteError, match=rf"cannot write .*{ck.LAST} \(Permission denied\); last good"):
        _save(path)
    monkeypatch.setattr(torch, "save", _failing_save(RuntimeError("something else")))
    with pytest.raises(RuntimeError, match="something else"):  # not a write failure: not dressed up as one
        _save(path)
    assert [p.name for p in tmp_path.iterdir()] == [ck.LAST]


def test_run_lock_is_exclusive_and_released(tmp_path):
    run = tmp_path / "new" / "run"
    lock = ck.RunLock(run)
    assert lock.created and (run / ck.LOCK_FILE).read_text() == f"{os.getpid()}\n"
    with pytest.raises(ck.RunDirectoryBusyError, match=rf"run directory {run} is in use by another spikevision "
                                                       rf"run \(process {os.getpid()}\).*another run.name"):
        ck.RunLock(run)  # a second open file: flock refuses it even inside one process
    lock.release()
    lock.release()  # idempotent
    second = ck.RunLock(run)
    assert not second.created
    second.release(discard=True)  # not created by it: the directory stays
    assert (run / ck.LOCK_FILE).exists()
    fresh = ck.RunLock(tmp_path / "failed")
    fresh.release(discard=True)  # a set-up that failed in a directory it created: no trace left
    assert not (tmp_path / "failed").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"num_classes": 10, "T": 10 ** 9}, "needs about"),
    ({"num_classes": 10, "T": "two"}, "model_kwargs.T must be >= 1"),
    ({"num_classes": 10, "T": 2, "hidden": 10 ** 7}, "parameters"),
])
def test_load_run_checks_the_checkpoints_model_kwargs_before_building(tmp_path, kwargs, message):
    path, _ = _save(tmp_path / "x.pt", model=create_model("tiny_snn_test", num_classes=10, T=2))
    state = torch.load(path, weights_only=True)
    state[ck.MODEL_KWARGS_KEY] = kwargs  # a tampered file: building it would try to allocate terabytes
    torch.save(state, path)
    with pytest.raises(ValueError, match=f"x.pt: the checkpoint's .*{message}") as e:
        ck.load_run(path)
    assert "\n" not in str(e.value)


def test_format_1_files_keep_loading_with_the_weights_under_model_state(tmp_path):
    """Format 1 stored the weights under "model" (a name in model cards); they load under MODEL_KEY."""
    torch.manual_seed(0)
    path, model = _save(tmp_path / "old.pt")
    state = torch.load(path, weights_only=True)
    state[ck.LEGACY_MODEL_KEY] = state.pop(ck.MODEL_KEY)
    state[ck.VERSION_KEY] = 1
    torch.save(state, path)
    loaded = ck.load_checkpoint(path)
    assert ck.MODEL_KEY == "model_state" and ck.LEGACY_MODEL_KEY not in loaded
    assert torch.equal(loaded[ck.MODEL_KEY]["fc.weight"], model.fc.weight)
    assert torch.equal(ck.load_run(path).model.fc.weight, model.fc.weight)
