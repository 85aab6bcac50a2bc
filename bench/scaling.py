"""How training time and memory grow with T and depth, default vs memory-saving mode.

spikevision only. Two sweeps of one optimizer step (forward, label-smoothing
cross-entropy, backward, SGD; as in ``bench/train_step.py``), on CIFAR-shaped
input (32 px):

* **T sweep**: one model (default ``ms_resnet20``), ``T`` in 2, 4, 8, 16;
* **depth sweep**: ``ms_resnet20, 32, 44, 56, 110`` at one ``T`` (default 4).

Each configuration runs three modes of
:func:`spikevision.train.memory_saving.enable_memory_saving` interleaved in one
process: ``default`` (none), ``spikes`` (saved spikes as int8, exact, no
recomputation) and ``blocks`` (every residual block recomputed in backward); reported are the median
ms per step, the peak memory of a step above weights and optimizer state (gradients included; fresh
subprocess per row: resident-set high-water mark on CPU,
``max_memory_allocated`` on CUDA), the bytes autograd keeps for backward
(``saved_tensors_hooks``, load-free) and each mode's ratio to the default.

Run::

    python bench/scaling.py                                  # both sweeps
    python bench/scaling.py --sweep T --T 2 4 8 16 --batch 8
    python bench/scaling.py --sweep depth --depths 20 56 110 --reps 3
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from common import MIB, fmt_ratio, interleaved_times, machine_lines, markdown_table, median, spawn_worker
from train_step import build, make_batch, make_step, saved_bytes

MODES = {"default": "spikevision", "spikes": "spikevision-spikes", "blocks": "spikevision-mem"}  # -> contender
TRAIN_STEP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_step.py")


def measure(model: str, T: int, args: argparse.Namespace, device: torch.device) -> list[list[str]]:
    """Rows for one (model, T): both modes, with ratios to the default."""
    nets = {mode: build(c, model, T, args.seed, device) for mode, c in MODES.items()}
    x, y = make_batch(model, args.batch, args.size, args.seed, device)
    saved = {mode: saved_bytes(nets[mode], c, x) / MIB for mode, c in MODES.items()}
    steps = {mode: make_step(nets[mode], c, x, y) for mode, c in MODES.items()}
    times = interleaved_times(steps, reps=args.reps, warmup=args.warmup, device=device)
    del steps, nets
    peak = {}
    if not args.no_memory:
        for mode, c in MODES.items():
            peak[mode] = spawn_worker(TRAIN_STEP, dict(contender=c, model=model, T=T, batch=args.batch,
                                                       size=args.size, seed=args.seed, device=args.device,
                                                       threads=args.threads))["peak_bytes"] / MIB
    rows = []
    t0, p0, s0 = median(times["default"]), peak.get("default"), saved["default"]
    for mode in MODES:
        t, p, s = median(times[mode]), peak.get(mode), saved[mode]
        rows.append([model, T, args.batch, mode, f"{1000 * t:.1f}", fmt_ratio(t / t0),
                     "-" if p is None else f"{p:.0f}", fmt_ratio(p / p0 if p is not None and p0 else None),
                     f"{s:.1f}", fmt_ratio(s / s0)])
    print(f"done {model} T={T}", file=sys.stderr, flush=True)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", choices=("T", "depth", "both"), default="both")
    ap.add_argument("--model", default="ms_resnet20", help="model of the T sweep")
    ap.add_argument("--T", type=int, nargs="+", default=[2, 4, 8, 16], help="T values of the T sweep")
    ap.add_argument("--depths", type=int, nargs="+", default=[20, 32, 44, 56, 110], help="MS-ResNet CIFAR depths")
    ap.add_argument("--depth-T", type=int, default=4, help="T of the depth sweep")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-memory", action="store_true", help="skip the subprocess peak-memory runs")
    ap.add_argument("--keep-denormals", action="store_true",
                    help="do not flush denormal floats (CPU; flushed by default, as the engine does)")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(not args.keep_denormals)  # as the engine does (train.flush_denormal)
    device = torch.device(args.device)
    headers = ["model", "T", "B", "mode", "ms/step", "time x default", "peak MiB", "peak x default",
               "saved MiB", "saved x default"]
    if args.sweep in ("T", "both"):
        rows = [r for T in args.T for r in measure(args.model, T, args, device)]
        print(f"### T sweep ({args.model}, {args.size} px)\n")
        print(markdown_table(headers, rows) + "\n")
    if args.sweep in ("depth", "both"):
        rows = [r for d in args.depths for r in measure(f"ms_resnet{d}", args.depth_T, args, device)]
        print(f"### depth sweep (T={args.depth_T}, {args.size} px)\n")
        print(markdown_table(headers, rows) + "\n")
    print(f"Medians of {args.reps} interleaved rounds after {args.warmup} warm-up rounds; device {device}. "
          "peak MiB: one step above weights + optimizer state, gradients included, fresh process per row; "
          "saved MiB: activations kept for backward after the forward (saved_tensors_hooks; parameters not "
          "counted, block inputs counted in memory-saving mode).")
    print("\n".join(machine_lines(device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
