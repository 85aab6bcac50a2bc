"""Inference speed: the multiplication-free integer engine vs the dense float model, same input.

The integer engine (:func:`spikevision.deploy.engine.compile_integer`) executes
what multiplication-free hardware would: spike-driven layers add the weight
columns of the active inputs only (event-driven, so their work scales with
the firing rate), neurons shift, compare and select. On a CPU it is a
simulation in PyTorch ops, so it is expected to be *slower* than the dense
float model, which runs each layer as one optimised dense kernel; this bench
says by how much, at the firing rates the model actually has on the input,
next to the operation counts that matter for hardware (ACs vs dense MACs).

Contenders, interleaved round by round in one process on the same batch:

* ``float``: the model in eval mode, ``torch.no_grad()``;
* ``float-folded``: the same with BN folded into the preceding conv/linear;
* ``integer``: the compiled integer engine (int16 weights, 24 fraction bits).

Run::

    python bench/inference.py                                   # untrained zoo models on random images
    python bench/inference.py --run runs/quickstart             # a trained run on its own test images
    python bench/inference.py --models ms_resnet20 --batch 16 --reps 5

Untrained models fire at whatever rate their initialisation gives; for the
numbers that matter, pass a trained run (``--run``): its test images are used.
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor, nn

from common import interleaved_times, machine_lines, markdown_table, median
from spikevision.analysis.monitors import FiringRateMonitor
from spikevision.analysis.ops import OpsCounter
from spikevision.deploy.engine import compile_integer
from spikevision.deploy.fold import fold_bn
from spikevision.models import create_model

# (name, kwargs, per-sample input) for the default, untrained models
ZOO = {
    "spiking_cnn_mini": ({}, (1, 28, 28)),
    "ms_resnet20": ({"T": 4}, (3, 32, 32)),
    "mlp_spe_mini": ({"T": 2}, (1, 28, 28)),
}


def _run_source(run: str, batch: int) -> tuple[str, nn.Module, Tensor]:
    from spikevision.data import build_loader
    from spikevision.deploy.source import load_source

    src = load_source(run)
    if src.data is None:
        raise SystemExit(f"{run}: no data config recorded; pass a run directory written by spikevision train")
    src.data.eval_batch_size = batch
    x, _ = next(iter(build_loader(src.data, "test")))
    return f"{src.name} ({run})", src.model.eval(), x[:batch]


def _zoo_source(name: str, batch: int) -> tuple[str, nn.Module, Tensor]:
    kwargs, shape = ZOO[name]
    torch.manual_seed(0)
    return f"{name} (untrained)", create_model(name, **kwargs).eval(), torch.rand(batch, *shape)


def _profile(model: nn.Module, x: Tensor) -> tuple[float, float, float]:
    """Mean firing rate, ACs and dense MACs per sample on ``x``."""
    with torch.no_grad(), FiringRateMonitor(model) as mon, OpsCounter(model) as ops:
        model(x)
    res = ops.result(samples=x.shape[0])
    return mon.mean_rate(), res.totals["acs"], res.totals["dense_macs"]


def bench(label: str, model: nn.Module, x: Tensor, reps: int, warmup: int) -> list[list[str]]:
    folded, _ = fold_bn(model, x[:1])
    integer = compile_integer(model, x[:1])
    with torch.no_grad():
        agree = (integer(x).argmax(-1) == model(x).argmax(-1)).float().mean().item()
    rate, acs, dense = _profile(model, x)

    def run(net):
        def call():
            with torch.no_grad():
                net(x)
        return call

    times = interleaved_times({"float": run(model), "float-folded": run(folded), "integer": run(integer)},
                              reps=reps, warmup=warmup)
    base = median(times["float"])
    rows = []
    for name, ts in times.items():
        t = median(ts)
        rows.append([label, name, x.shape[0], f"{1000 * t:.1f}", f"{x.shape[0] / t:.0f}", f"{base / t:.3f}x",
                     f"{rate:.3f}", f"{acs / 1e6:.2f}M / {dense / 1e6:.2f}M", f"{100 * agree:.1f}%"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", action="append", default=[], help="a trained run directory (repeatable)")
    ap.add_argument("--models", nargs="*", default=None, choices=sorted(ZOO),
                    help="untrained zoo models (default: all, unless --run is given)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sources = [_run_source(r, args.batch) for r in args.run]
    models = args.models if args.models is not None else ([] if args.run else sorted(ZOO))
    sources += [_zoo_source(m, args.batch) for m in models]
    rows = []
    for label, model, x in sources:
        rows += bench(label, model, x, args.reps, args.warmup)
        print(f"# done: {label}", flush=True)
    print()
    print(markdown_table(["model", "contender", "B", "ms/batch", "img/s", "speed x float", "firing rate",
                          "ACs / dense MACs per sample", "top-1 agreement"], rows))
    print()
    print(f"Medians of {args.reps} interleaved rounds after {args.warmup} warm-up; CPU, no autograd. "
          "firing rate: mean spikes per neuron per step on this batch; ACs: synaptic operations on spike "
          "inputs (what event-driven hardware executes), dense MACs: the float model's; agreement: same "
          "predicted class as the float model on this batch.")
    for line in machine_lines("cpu"):
        print(line)


if __name__ == "__main__":
    main()
