"""Fashion-MNIST test accuracy against training time: the quickstart recipe, side by side.

Contenders train **step by step interleaved** in one process (a step of A, a
step of B, ...), each timing only its own steps, so machine load hits all of
them alike. They see identical batches in the same order (the recipe's
in-memory loader), start from identical weights (copied), and use the recipe's
optimiser and schedule. After every epoch each is evaluated on the whole test
set (not timed). Contenders:

* ``spikevision``: the recipe's model as the quickstart trains it
  (``spiking_cnn_mini``, first stage computed once per static image);
* ``spikevision-per-step``: the same with ``stem_once=False`` (every layer
  runs on all ``T`` repeated frames: isolates that optimisation);
* ``spikingjelly``: the same network written with SpikingJelly 2.x layers in
  multi-step mode: ``Conv2d -> BatchNorm2d -> MaxPool2d -> LIFNode`` twice,
  ``Flatten -> Linear``, logits averaged over ``T``, with the quickstart's
  neuron: ``LIFNode(tau=4/3, decay_input=False, v_threshold=0.5, v_reset=0,
  detach_reset=True, surrogate_function=Rect(alpha=1))`` (decay 0.25, gain 1,
  rectangular window of width 1) and ``reset_net`` after every batch. The only
  difference left is its ``>=`` threshold vs the strict ``>`` (a tie has
  probability ~0); a parity check on the initial weights prints the logit
  difference.

Printed: test top-1 after every epoch against cumulative training seconds,
and the training time each contender needs to reach 90% and 91%.

Run::

    python bench/time_to_accuracy.py                      # the recipe: 4 epochs
    python bench/time_to_accuracy.py --epochs 2 --contenders spikevision spikingjelly

``pip install --no-deps spikingjelly loguru`` for the SpikingJelly column;
without it the spikevision columns still run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from common import machine_lines, markdown_table
from spikevision.data import build_loader, set_loader_epoch
from spikevision.models import create_model
from spikevision.train.config import load_config
from spikevision.train.optim import build_optimizer, build_scheduler

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
CONTENDERS = ("spikevision", "spikevision-per-step", "spikingjelly")
THRESHOLDS = (90.0, 91.0)


def has_spikingjelly() -> bool:
    try:
        import spikingjelly.activation_based.neuron  # noqa: F401
    except ImportError:
        return False
    return True


class SJNet(nn.Module):
    """``spiking_cnn_mini`` (pool="max") in SpikingJelly 2.x multi-step layers; same parameter order."""

    def __init__(self, T: int, widths: tuple[int, ...], img_size: int, in_chans: int, num_classes: int) -> None:
        super().__init__()
        from spikingjelly.activation_based import functional, layer, neuron, surrogate

        self.T, self.functional = T, functional
        mods: list[nn.Module] = []
        for cin, cout in zip((in_chans, *widths[:-1]), widths):
            mods += [layer.Conv2d(cin, cout, 3, padding=1, bias=False), layer.BatchNorm2d(cout), layer.MaxPool2d(2),
                     neuron.LIFNode(tau=4.0 / 3.0, decay_input=False, v_threshold=0.5, v_reset=0.0,
                                    detach_reset=True, surrogate_function=surrogate.Rect(alpha=1.0))]
        side = img_size // 2 ** len(widths)
        mods += [layer.Flatten(), layer.Linear(widths[-1] * side * side, num_classes)]
        self.net = nn.Sequential(*mods)
        functional.set_step_mode(self.net, "m")

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x.unsqueeze(0).repeat(self.T, *([1] * x.dim()))).mean(0)
        self.functional.reset_net(self.net)
        return out


def build_contenders(names, cfg) -> dict[str, nn.Module]:
    kwargs = dict(cfg.model.kwargs)
    torch.manual_seed(cfg.train.seed)
    ref = create_model(cfg.model.name, num_classes=10, **kwargs)
    nets: dict[str, nn.Module] = {}
    for name in names:
        if name == "spikevision":
            nets[name] = ref
        elif name == "spikevision-per-step":
            nets[name] = create_model(cfg.model.name, num_classes=10, **{**kwargs, "stem_once": False})
        elif name == "spikingjelly":
            if not has_spikingjelly():
                print("# spikingjelly not installed: its column is skipped (pip install --no-deps spikingjelly loguru)")
                continue
            if ref.stages[0].pool.module.__class__ is not nn.MaxPool2d:
                raise SystemExit("the SpikingJelly twin is written for pool='max' (the recipe's)")
            nets[name] = SJNet(ref.T, tuple(s.conv.module.out_channels for s in ref.stages), ref.img_size,
                               ref.in_chans, 10)
        else:
            raise SystemExit(f"unknown contender {name!r}; choose from {', '.join(CONTENDERS)}")
    for name, net in nets.items():  # identical initial weights and BN state, in parameter order
        if net is not ref:
            src, dst = ref.state_dict(), net.state_dict()
            if [v.shape for v in src.values()] != [v.shape for v in dst.values()]:
                raise SystemExit(f"{name}: the architectures differ")
            net.load_state_dict(dict(zip(dst.keys(), src.values())))
    return nets


def parity(nets: dict[str, nn.Module], x: Tensor) -> list[str]:
    ref = nets["spikevision"].eval()
    lines = []
    with torch.no_grad():
        r = ref(x)
        for name, net in nets.items():
            if net is not ref:
                lines.append(f"- parity {name}: max |logit diff| {(net.eval()(x) - r).abs().max().item():.2e} "
                             f"(initial weights, {x.shape[0]} test images, eval mode)")
    return lines


def evaluate(net: nn.Module, loader) -> float:
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (net(x).argmax(-1) == y).sum().item()
            total += y.numel()
    return 100.0 * correct / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(RECIPE), help="recipe (default: configs/quickstart.yaml)")
    ap.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the engine does (train.flush_denormal)
    cfg = load_config(args.config, [f"train.epochs={args.epochs}"] if args.epochs else [])
    epochs = cfg.train.epochs
    train, test = build_loader(cfg.data, "train"), build_loader(cfg.data, "test")
    nets = build_contenders(args.contenders, cfg)
    notes = parity(nets, next(iter(test))[0][:256]) if "spikevision" in nets else []
    opts = {n: build_optimizer(m, cfg.optim) for n, m in nets.items()}
    scheds = {n: build_scheduler(opts[n], cfg.sched, cfg.optim.lr, len(train), epochs) for n in nets}
    clock = dict.fromkeys(nets, 0.0)
    history: dict[str, list[tuple[float, float]]] = {n: [] for n in nets}

    def step(name: str, x: Tensor, y: Tensor) -> None:
        net, opt = nets[name], opts[name]
        t = time.perf_counter()
        loss = F.cross_entropy(net(x), y, label_smoothing=cfg.train.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        scheds[name].step()
        clock[name] += time.perf_counter() - t

    for epoch in range(epochs):
        set_loader_epoch(train, epoch)
        for m in nets.values():
            m.train()
        for i, (x, y) in enumerate(train):
            order = list(nets) if i % 2 == 0 else list(reversed(nets))  # alternate who goes first
            for name in order:
                step(name, x, y)
        for name in nets:
            history[name].append((clock[name], evaluate(nets[name], test)))
        print(f"# epoch {epoch}: " + ", ".join(f"{n} {history[n][-1][1]:.2f}% after {clock[n]:.0f} s" for n in nets),
              flush=True)

    names = list(nets)
    rows = [[e] + [f"{history[n][e][0]:.0f} s: {history[n][e][1]:.2f}%" for n in names] for e in range(epochs)]
    print(f"\nFashion-MNIST test top-1 against cumulative training time ({cfg.model.name}, "
          f"T={nets[names[0]].T}, batch {cfg.data.batch_size}, {epochs} epochs, "
          f"{cfg.optim.name} lr {cfg.optim.lr}, {cfg.sched.name})\n")
    print(markdown_table(["epoch"] + names, rows))

    def reach(n: str, thr: float) -> float | None:
        return next((t for t, acc in history[n] if acc >= thr), None)

    print()
    base = "spikingjelly" if "spikingjelly" in nets else names[-1]
    rows = []
    for n in names:
        cells = [n]
        for thr in THRESHOLDS:
            t, tb = reach(n, thr), reach(base, thr)
            ratio = f" ({tb / t:.2f}x {base})" if t and tb and n != base else ""
            cells.append(f"{t:.0f} s{ratio}" if t else "not reached")
        cells.append(f"{history[n][-1][1]:.2f}%")
        rows.append(cells)
    print(markdown_table(["contender"] + [f"time to {t:.0f}%" for t in THRESHOLDS] + ["final top-1"], rows))
    print()
    for line in notes + machine_lines("cpu", ("torch", "spikevision", "spikingjelly")):
        print(line)
    print("- times: training steps only (forward, loss, backward, optimiser, schedule), summed per contender; "
          "evaluation not timed; contenders interleaved step by step")


if __name__ == "__main__":
    main()
