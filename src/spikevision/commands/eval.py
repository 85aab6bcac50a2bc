"""``spikevision eval RUN_DIR_or_CHECKPOINT``: test accuracy, loss and firing rate of a trained model.

Given a run directory it evaluates ``checkpoints/best.pt`` (or ``last.pt``
with ``--checkpoint last``) and writes ``eval.json`` beside it; given a
``.pt`` file it evaluates that. The model is rebuilt from the name and keyword
arguments stored in the checkpoint (:func:`spikevision.train.checkpoint.load_run`),
the data from its saved config.

The run directory is checked for writing before the evaluation (nothing is lost to a
read-only folder); progress goes to stderr (a bar on a terminal, plain lines in a log);
problems are one line ``spikevision eval: ...`` (exit statuses: :mod:`spikevision.commands`).
"""

from __future__ import annotations

import argparse
import json

from spikevision.commands import check_writable, positive_int, progress, user_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="run directory (runs/<name>) or checkpoint file (.pt)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="which checkpoint of a run directory (default best; last if there is no best)")
    parser.add_argument("--data-root", default=None, help="folder of the data set files (default: the run's)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="evaluation batch size (default: the run's)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: torch's)")


def run(args: argparse.Namespace) -> int:
    import torch

    from spikevision.data import build_loader
    from spikevision.train import checkpoint as ck
    from spikevision.train.engine import evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    with user_errors("eval"):
        loaded = ck.load_run(args.target, args.checkpoint)
    state, path, model = loaded.state, loaded.path, loaded.model.to(device)
    with user_errors("eval", "cannot load the run's test data"):
        fast_path = (loaded.config.get("data") or {}).get("fast_path", "auto") != "off"
        data_cfg = loaded.data_config(root=args.data_root, eval_batch_size=args.batch_size,
                                    device=device.type if fast_path else "cpu")
        loader = build_loader(data_cfg, "test")
    result_file = loaded.run_dir / "eval.json" if loaded.run_dir is not None else None
    if result_file is not None:
        check_writable("eval", result_file)
    amp = (torch.float16 if device.type == "cuda" else torch.bfloat16) if loaded.config["train"].get("amp") else None
    result = evaluate(model, progress(loader, len(loader), "eval"), device, amp_dtype=amp)
    params = sum(p.numel() for p in model.parameters())
    summary = {
        "checkpoint": str(path), "model": loaded.name, "data": data_cfg.name,
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
    if result_file is not None:
        with user_errors("eval", f"cannot write {result_file}; the results above are not saved"):
            result_file.write_text(json.dumps(summary, indent=2) + "\n")
    return 0
