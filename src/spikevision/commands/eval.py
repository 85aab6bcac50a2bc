"""``spikevision eval RUN_DIR_or_CHECKPOINT``: test accuracy, loss and firing rate of a trained model.

Given a run directory it evaluates ``checkpoints/best.pt`` (or ``last.pt``
with ``--checkpoint last``) and writes ``eval.json`` beside it; given a
``.pt`` file it evaluates that. The model is rebuilt from the name and keyword
arguments stored in the checkpoint, the data from its saved config.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="run directory (runs/<name>) or checkpoint file (.pt)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="which checkpoint of a run directory (default best; last if there is no best)")
    parser.add_argument("--data-root", default=None, help="folder of the data set files (default: the run's)")
    parser.add_argument("--batch-size", type=int, default=None, help="evaluation batch size (default: the run's)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")


def _find_checkpoint(target: Path, which: str) -> tuple[Path, Path | None]:
    from spikevision.train.engine import BEST, LAST

    if target.is_dir():
        ckdir = target / "checkpoints"
        order = [BEST, LAST] if which == "best" else [LAST]
        for name in order:
            if (ckdir / name).is_file():
                return ckdir / name, target
        raise FileNotFoundError(f"{target} has no {' or '.join(order)} in {ckdir}; is it a run directory?")
    return target, None


def run(args: argparse.Namespace) -> int:
    import torch

    from spikevision.data import DataConfig, build_loader
    from spikevision.models import create_model
    from spikevision.train import checkpoint as ck
    from spikevision.train.engine import evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        path, run_dir = _find_checkpoint(Path(args.target), args.checkpoint)
        state = ck.load_checkpoint(path)
    except (FileNotFoundError, ValueError) as e:
        log.error(str(e))
        return 1
    cfg = state[ck.CONFIG_KEY]
    data = dict(cfg["data"])
    if args.data_root is not None:
        data["root"] = args.data_root
    if args.batch_size is not None:
        data["eval_batch_size"] = args.batch_size
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    data["device"] = device.type if data.get("fast_path", "auto") != "off" else "cpu"
    model = create_model(state[ck.MODEL_NAME_KEY], **state[ck.MODEL_KWARGS_KEY])
    model.load_state_dict(state[ck.MODEL_KEY])
    model.to(device)
    try:
        data_cfg = DataConfig.from_dict(data)
        if data_cfg.frames is None and getattr(model, "T", None) and data_cfg.name == "cifar10_dvs":
            data_cfg.frames = model.T
        loader = build_loader(data_cfg, "test")
    except (FileNotFoundError, ValueError) as e:
        log.error(str(e))
        return 1
    amp = (torch.float16 if device.type == "cuda" else torch.bfloat16) if cfg["train"].get("amp") else None
    result = evaluate(model, loader, device, amp_dtype=amp)
    params = sum(p.numel() for p in model.parameters())
    summary = {
        "checkpoint": str(path), "model": state[ck.MODEL_NAME_KEY], "data": data_cfg.name,
        "epoch": state[ck.EPOCH_KEY], "test_top1": result["top1"], "test_top5": result["top5"],
        "test_loss": result["loss"], "firing_rate": result["firing_rate"], "samples": result["samples"],
        "parameters": params, "train_time_s": state.get(ck.TRAIN_TIME_KEY),
    }
    print(f"checkpoint       {path} (after {state[ck.EPOCH_KEY]} epochs, step {state[ck.STEP_KEY]})")
    print(f"model            {summary['model']} ({params:,} parameters)")
    print(f"data             {data_cfg.name} test split, {result['samples']} images")
    print(f"test accuracy    top-1 {result['top1']:.2f}%   top-5 {result['top5']:.2f}%   loss {result['loss']:.4f}")
    print(f"mean firing rate {result['firing_rate']:.4f} spikes per neuron per time step")
    if summary["train_time_s"] is not None:
        print(f"training time    {summary['train_time_s']:.0f} s (wall clock, including per-epoch evaluation)")
    if run_dir is not None:
        (run_dir / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0
