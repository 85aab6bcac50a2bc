"""A train that fails before keeping a checkpoint leaves no run directory (nor the folders made for it)."""

import pytest

from spikevision.cli import main
from spikevision.train import checkpoint as ck

from train_support import tiny_overrides


def _nan_from(monkeypatch, epoch: int) -> None:
    """The training loss becomes NaN from ``epoch`` on (as a diverging run's would)."""
    from spikevision.train import engine

    real = engine._check_step
    monkeypatch.setattr(engine, "_check_step",
                        lambda tr, loss: real(tr, loss * float("nan") if tr.state.epoch >= epoch else loss))


@pytest.mark.parametrize("extra, message", [
    ({"data.root": "/nonexistent/data"}, "DatasetNotFoundError"),  # set-up fails
    ({"train.loss": "nan"}, "NonFiniteLossError"),  # NaN at step 1
    ({"data.batch_size": 100}, "no full batch"),  # found once the data is read
])
def test_failed_train_leaves_no_folder(fmnist_root, tmp_path, recipe, caplog, monkeypatch, extra, message):
    if extra.pop("train.loss", None):
        _nan_from(monkeypatch, 0)
    out = tmp_path / "runs" / "nested"
    assert main(["train", str(recipe), *tiny_overrides(fmnist_root, out, "failed", **extra)]) == 1
    assert message in caplog.text and "Traceback" not in caplog.text
    assert not (tmp_path / "runs").exists()


def test_nan_without_checkpoint_says_train_again(fmnist_root, tmp_path, recipe, caplog, monkeypatch):
    _nan_from(monkeypatch, 0)
    main(["train", str(recipe), *tiny_overrides(fmnist_root, tmp_path, "nan")])
    assert "then train again" in caplog.text and "--resume" not in caplog.text


def test_a_failure_after_a_checkpoint_keeps_the_run(fmnist_root, tmp_path, recipe, monkeypatch):
    _nan_from(monkeypatch, 1)
    assert main(["train", str(recipe), *tiny_overrides(fmnist_root, tmp_path, "kept")]) == 1
    assert (tmp_path / "kept" / ck.CHECKPOINT_DIR / ck.LAST).is_file()
    assert (tmp_path / "kept" / ck.CONFIG_FILE).is_file()
