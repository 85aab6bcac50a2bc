"""Channels-last training (``train.channels_last``) against the default NCHW step, per Fashion-MNIST recipe.

For each recipe, its model (``model:`` section, 10 classes) is built twice from the same weights: as it is,
and through :func:`spikevision.layers.memory_format.to_channels_last`. Both run the same training step (the
recipe's batch size, random 28 x 28 images, cross-entropy, AdamW, float32), interleaved round by round in one
process with ``train.keep_freed_memory``'s allocator setting, as the engine runs it. The table gives median ms
per step and the ratio; a ratio above 1 means channels-last is faster for that family. This is how the
recipes' ``train.channels_last`` setting was chosen.

Run on an idle machine::

    python bench/channels_last.py --out bench/channels_last.md
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch import nn

from common import interleaved_times, machine_lines, markdown_table, median
from spikevision.layers.memory_format import to_channels_last
from spikevision.train.allocator import keep_freed_memory
from spikevision.train.config import load_config
from spikevision.train.engine import build_model

RECIPES = ("quickstart", "ms_resnet_mini_fashion_mnist", "ms_resnet_mini_wide_fashion_mnist",
           "gac_ms_resnet_mini_fashion_mnist", "sresnet20_fashion_mnist", "mlp_spe_mini_fashion_mnist")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def step_fn(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", default=None, help="also write the table to this markdown file")
    args = ap.parse_args(argv)
    keep_freed_memory()
    torch.set_flush_denormal(True)
    rows = []
    for name in [r for r in args.recipes.split(",") if r]:
        cfg = load_config(str(CONFIGS / f"{name}.yaml"), [])
        torch.manual_seed(0)
        nchw, _ = build_model(cfg, 10)
        nchw.train()
        nhwc = to_channels_last(copy.deepcopy(nchw))
        g = torch.Generator().manual_seed(1)
        B = cfg.data.batch_size
        x, y = torch.randn(B, 1, 28, 28, generator=g), torch.randint(0, 10, (B,), generator=g)
        times = interleaved_times({"nchw": step_fn(nchw, x, y), "channels_last": step_fn(nhwc, x, y)},
                                  reps=args.reps, warmup=args.warmup)
        t0, t1 = median(times["nchw"]), median(times["channels_last"])
        rows.append([name, cfg.model.name, B, f"{1000 * t0:.1f}", f"{1000 * t1:.1f}", f"{t0 / t1:.2f}x",
                     "yes" if cfg.train.channels_last else "no"])
        print(f"done {name}", file=sys.stderr, flush=True)
    text = "\n".join([
        "# Channels-last training per Fashion-MNIST recipe: `bench/channels_last.py`", "",
        markdown_table(["recipe", "model", "batch", "NCHW ms/step", "channels-last ms/step", "speed-up",
                        "recipe sets train.channels_last"], rows), "",
        f"Medians of {args.reps} interleaved rounds after {args.warmup} warm-up rounds; float32, AdamW, the "
        "recipe's batch of random 28 x 28 images.", "",
        *machine_lines("cpu", ("torch", "spikevision")), ""])
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
