"""Does bf16 autocast pay on this CPU? One training step in float32 vs under bf16 autocast.

A step is forward, cross-entropy, backward and an AdamW update at ``T = 2`` on 28 x 28 inputs (the
Fashion-MNIST recipes' setting). The two contenders alternate round by round in one process on the
same batch; each step is timed by the process's CPU time on one thread (``time.process_time``), which
a loaded machine inflates far less than wall time. A CPU without bf16 instructions (AVX512-BF16 or
AMX) emulates bf16, which is what ``train.amp: auto`` avoids.

Run::

    python bench/amp_cpu.py --out bench/amp_cpu.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine_lines, markdown_table, median  # noqa: E402

import spikevision  # noqa: E402
from spikevision.train.engine import cpu_has_bf16  # noqa: E402


def _step_fn(name: str, batch: int, amp: bool):
    torch.manual_seed(0)
    model = spikevision.create_model(name, T=2, in_chans=1, num_classes=10)
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def step() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="ms_resnet_mini,mlp_spe_mini")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.models.split(","):
        steps = {"float32": _step_fn(name, args.batch, False), "bf16 autocast": _step_fn(name, args.batch, True)}
        for fn in steps.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(args.reps):
            for k, fn in steps.items():
                t0 = time.process_time()
                fn()
                times[k].append(time.process_time() - t0)
        fp32, bf16 = median(times["float32"]), median(times["bf16 autocast"])
        rows.append([name, args.batch, f"{fp32:.3f}", f"{bf16:.3f}", f"{bf16 / fp32:.1f}x"])
    caps = (f"- CPU capability: {torch.backends.cpu.get_cpu_capability()}; bf16 instructions: "
            f"{'yes' if cpu_has_bf16() else 'no (bf16 is emulated)'}")
    text = "\n".join([
        "# bf16 autocast vs float32 on this CPU (one training step, T = 2, 28 x 28, AdamW)", "",
        markdown_table(["model", "batch", "float32 CPU s/step", "bf16 autocast CPU s/step", "bf16 / float32"], rows),
        "", f"Median of {args.reps} rounds, CPU time of the process on one thread.", "", caps,
        *machine_lines("cpu")]) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
