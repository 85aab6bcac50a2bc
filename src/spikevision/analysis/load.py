"""Load what analysis needs from a trained run: the model from its checkpoint, batches of its test set.

Shared by ``spikevision profile`` and ``spikevision report``. A run directory
(``runs/<name>/``, written by :mod:`spikevision.train.engine`) holds
``checkpoints/best.pt`` and ``checkpoints/last.pt``; a checkpoint stores the
registered model name and keyword arguments, so the model is rebuilt with
:func:`spikevision.models.create_model` and its weights are loaded strictly.

Errors are ``FileNotFoundError`` (no run directory, no checkpoint, no data)
or ``ValueError`` (a damaged checkpoint, a bad data config) with a message
that says what to do; the commands turn them into a clean exit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from torch import Tensor, nn

__all__ = ["find_checkpoint", "load_checkpointed_model", "run_test_batches"]

Which = Literal["best", "last"]


def find_checkpoint(run_dir: str | Path, which: Which = "best") -> Path:
    """``run_dir/checkpoints/best.pt`` (else ``last.pt``) for ``which="best"``; ``last.pt`` for ``"last"``.

    Raises:
        FileNotFoundError: ``run_dir`` is not a directory or holds none of those files.
    """
    run_dir = Path(run_dir)
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} not found; pass runs/<name> of a training run")
    names = ["best.pt", "last.pt"] if which == "best" else ["last.pt"]
    found = [run_dir / "checkpoints" / n for n in names if (run_dir / "checkpoints" / n).is_file()]
    if not found:
        raise FileNotFoundError(f"{run_dir} has no {' or '.join(names)} in {run_dir / 'checkpoints'}; "
                                "is it a run directory? (train one with `spikevision train`)")
    return found[0]


def load_checkpointed_model(target: str | Path, which: Which = "best") -> tuple[nn.Module, dict[str, Any], Path]:
    """Model (weights loaded strictly), checkpoint state and checkpoint path from a run directory or ``.pt`` file.

    Args:
        target: a run directory (its checkpoint chosen by :func:`find_checkpoint`) or a checkpoint file.
        which: ``"best"`` (``best.pt``, else ``last.pt``) or ``"last"``; run directories only.

    Raises:
        FileNotFoundError: no such directory, checkpoint or file.
        ValueError: the file is not a (readable) spikevision checkpoint.
    """
    from spikevision.models import create_model
    from spikevision.train import checkpoint as ck

    target = Path(target)
    path = find_checkpoint(target, which) if target.is_dir() else target
    state = ck.load_checkpoint(path)
    model = create_model(state[ck.MODEL_NAME_KEY], **state[ck.MODEL_KWARGS_KEY])
    model.load_state_dict(state[ck.MODEL_KEY])
    return model, state, path


def run_test_batches(state: dict[str, Any], *, batch_size: int, batches: int = 1,
                     data_root: str | Path | None = None) -> tuple[list[tuple[Tensor, Tensor]], str]:
    """The first ``batches`` test batches of the run's own data set (test order, no shuffling) on the CPU.

    Args:
        state: a checkpoint dict (its saved config's ``data`` section is used).
        batch_size: samples per batch (replaces the run's ``eval_batch_size``).
        batches: how many batches (fewer when the test set is smaller).
        data_root: data folder; default the run's ``data.root``.

    Returns:
        the ``(x, y)`` batches and a description (``"first 2 test batches of mnist"``).

    Raises:
        FileNotFoundError: the data set is not found.
        ValueError: the saved data config is invalid, or ``batch_size``/``batches`` < 1.
    """
    import itertools

    from spikevision.data import DataConfig, build_loader
    from spikevision.train import checkpoint as ck

    if batch_size < 1 or batches < 1:
        raise ValueError(f"batch_size and batches must be >= 1, got {batch_size} and {batches}")
    data = dict(state[ck.CONFIG_KEY].get("data") or {})
    if not data:
        raise ValueError("the checkpoint's config has no data section; the run's test set is unknown")
    data.update(eval_batch_size=batch_size, device="cpu", num_workers=0)
    if data_root is not None:
        data["root"] = str(data_root)
    out = list(itertools.islice(iter(build_loader(DataConfig.from_dict(data), "test")), batches))
    if not out:
        raise ValueError(f"the test split of {data.get('name')} at {data.get('root')} is empty")
    what = "first test batch" if len(out) == 1 else f"first {len(out)} test batches"
    return out, f"{what} of {data.get('name')}"
