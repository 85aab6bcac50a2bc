"""Event-driven spike convolution (``spikevision.layers.spike_conv``) vs the dense one, per layer.

For every convolution of ``ms_resnet_mini`` (28x28, batch 128, T = 2, so N = 256)
and ``ms_resnet20`` (32x32, batch 64, T = 4, N = 256) that reads spikes, on a
random binary input at firing rates 0.05, 0.15 and 0.3, three jobs are timed,
each for two contenders run interleaved round by round in one process:

* ``fwd``: the forward pass: ``F.conv2d`` (oneDNN) vs :func:`spike_conv2d`
  (packing the spikes into bits included);
* ``wgrad``: the weight gradient alone: ``aten.convolution_backward`` with
  output mask ``(False, True, False)`` vs the event-driven kernel on the bits;
* ``fwd+bwd``: forward and backward of the layer with both gradients, as
  autograd runs it in training: ``F.conv2d`` vs :func:`spike_conv2d` (whose input
  gradient is the dense ``F.conv_transpose2d``).

Reported: median ms of each, and ``speed-up`` = dense / event-driven (> 1: the
event-driven path is faster), for 1 and 2 torch threads.

``--step`` adds the whole training step of the headline recipe's model
(``ms_resnet_mini``, 28x28, batch 128, T = 2, cross-entropy, AdamW, float32;
widths 32/64/128 and the wide recipe's 64/128/256):
the model as built (its block convs are ``SpikeConv2d``) with the switch on vs
off (``use_spike_conv(False)``: today's dense convolutions), interleaved; median
CPU time of the process (all threads) and wall time per step.

``--wgrad-split`` times the weight gradient of every spike-input conv of ``ms_resnet18`` (64x64) and
``ms_resnet20`` (32x32) at batch 8, T = 4 (N = 32; firing rate 0.15, channels-last, 2 threads) with the two
ways threads share it: split by input channel (one shared ``dW``; what the kernel does when ``dL/dY`` is
smaller than ``dW``) vs split by sample (a ``dW`` per thread, zeroed, then added up; the only way before).

Run::

    python bench/spike_conv.py                          # full table -> stdout
    python bench/spike_conv.py --wgrad-split            # the weight gradient's two thread splits, small batches
    python bench/spike_conv.py --reps 3 --rates 0.15    # quick
    python bench/spike_conv.py --step-only --reps 10    # the training step only
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from common import fmt_ratio, interleaved_times, machine_lines, markdown_table, median

from spikevision.layers import spike_conv
from spikevision.models import create_model


@dataclass(frozen=True)
class Layer:
    """One convolution: its model, channels in/out, input size and stride (3x3, padding 1)."""

    model: str
    cin: int
    cout: int
    size: int
    stride: int

    def __str__(self) -> str:
        return f"{self.model} {self.cin}->{self.cout} @{self.size} s{self.stride}"


N = 256  # batch x T: 128 x 2 (mini) and 64 x 4 (ms_resnet20)
LAYERS = (
    Layer("mini", 32, 32, 28, 2), Layer("mini", 32, 32, 14, 1), Layer("mini", 32, 64, 14, 2),
    Layer("mini", 64, 64, 7, 1), Layer("mini", 64, 128, 7, 2), Layer("mini", 128, 128, 4, 1),
    Layer("r20", 16, 16, 32, 1), Layer("r20", 16, 32, 32, 2), Layer("r20", 32, 32, 16, 1),
    Layer("r20", 32, 64, 16, 2), Layer("r20", 64, 64, 8, 1),
)


def _contenders(layer: Layer, rate: float) -> dict[str, dict[str, Callable[[], object]]]:
    """Job name -> {"dense": fn, "spike": fn}, on one random input of this rate."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(N, layer.cin, layer.size, layer.size, generator=g) < rate).float()
    w = torch.randn(layer.cout, layer.cin, 3, 3, generator=g) * 0.1
    s, p = (layer.stride, layer.stride), (1, 1)
    gy = torch.randn_like(F.conv2d(x, w, None, s, p))
    bits = spike_conv.pack_spikes(x)
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()

    def dense_step() -> None:
        F.conv2d(xg, wg, None, s, p).backward(gy)
        xg.grad = wg.grad = None

    def spike_step() -> None:
        spike_conv.spike_conv2d(xg, wg, s, p).backward(gy)
        xg.grad = wg.grad = None

    return {
        "fwd": {"dense": lambda: F.conv2d(x, w, None, s, p), "spike": lambda: spike_conv.spike_conv2d(x, w, s, p)},
        "wgrad": {"dense": lambda: torch.ops.aten.convolution_backward(gy, x, w, None, s, p, (1, 1), False, (0, 0),
                                                                        1, (False, True, False)),
                  "spike": lambda: spike_conv._sparse_weight_grad(bits, gy, w.shape, layer.size, layer.size, s, p)},
        "fwd+bwd": {"dense": dense_step, "spike": spike_step},
    }


def _check(layer: Layer) -> None:
    """The two paths agree before anything is timed."""
    x = (torch.rand(8, layer.cin, layer.size, layer.size) < 0.2).float()
    w = torch.randn(layer.cout, layer.cin, 3, 3)
    ref = F.conv2d(x, w, None, layer.stride, 1)
    got = spike_conv.spike_conv2d(x, w, (layer.stride,) * 2, (1, 1))
    if not torch.allclose(ref, got, rtol=1e-5, atol=1e-4):
        raise SystemExit(f"{layer}: event-driven and dense outputs differ by {(ref - got).abs().max():.3g}")


def _cpu_and_wall(contenders: dict[str, Callable[[], object]], reps: int, warmup: int) -> dict[str, list[tuple]]:
    """(process CPU seconds, wall seconds) of each call, interleaved round by round in a shuffled order.

    The CPU time (all threads of this process) is what a loaded machine inflates least: a thread
    waiting for a core adds wall time, not CPU time.
    """
    rng = random.Random(0)
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    out: dict[str, list[tuple]] = {name: [] for name in contenders}
    for _ in range(reps):
        for name in rng.sample(list(contenders), len(contenders)):
            c0, t0 = time.process_time(), time.perf_counter()
            contenders[name]()
            out[name].append((time.process_time() - c0, time.perf_counter() - t0))
    return out


def _step_rows(reps: int, warmup: int, threads: list[int], widths: tuple[int, ...]) -> list[list[str]]:
    """The headline training step with the event-driven convolutions on vs off, per thread count."""
    torch.manual_seed(0)
    model = create_model("ms_resnet_mini", T=2, widths=widths).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))

    def step(enabled: bool) -> None:
        with spike_conv.use_spike_conv(enabled):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    rows = []
    for n in threads:
        torch.set_num_threads(n)
        times = _cpu_and_wall({"dense": lambda: step(False), "spike": lambda: step(True)}, reps, warmup)
        (dc, dw), (sc, sw) = ([median([t[k] for t in times[c]]) * 1e3 for k in (0, 1)] for c in ("dense", "spike"))
        rows.append(["/".join(map(str, widths)), str(n), f"{dc:.0f} / {sc:.0f}", fmt_ratio(dc / sc),
                     f"{dw:.0f} / {sw:.0f}", fmt_ratio(dw / sw)])
        print(" | ".join(rows[-1]), flush=True)
    return rows


def _wgrad_split_rows(reps: int, warmup: int) -> list[list[str]]:
    """Per distinct spike-input conv of two models at batch 8, T = 4: weight-gradient ms, split by channel vs
    by sample, and the per-step totals (each layer times the number of its calls)."""
    rows = []
    for name, size in (("ms_resnet18", 64), ("ms_resnet20", 32)):
        calls: list[tuple] = []
        model = create_model(name, T=4, num_classes=10).train()
        hooks = [m.register_forward_pre_hook(lambda m, inp: calls.append((tuple(inp[0].shape), tuple(m.weight.shape),
                                                                         m.stride, m.padding)))
                 for m in model.modules() if isinstance(m, spike_conv.SpikeConv2d)]
        with torch.no_grad():
            model(torch.randn(8, 3, size, size))
        for h in hooks:
            h.remove()
        totals = {"channel": 0.0, "sample": 0.0}
        gen = torch.Generator().manual_seed(0)
        for shape in dict.fromkeys(calls):
            xs, ws, stride, padding = shape
            x = (torch.rand(xs, generator=gen) < 0.15).float().contiguous(memory_format=torch.channels_last)
            bits = spike_conv.pack_spikes(x)
            out = [(s + 2 * p - k) // st + 1 for s, p, k, st in zip(xs[2:], padding, ws[2:], stride)]
            gy = torch.randn(xs[0], ws[0], *out, generator=gen).contiguous(memory_format=torch.channels_last)

            def run(by_channel: bool) -> Callable[[], object]:
                def go() -> object:
                    spike_conv._SPLIT_WGRAD_BY_CHANNEL = by_channel
                    try:
                        return spike_conv._sparse_weight_grad(bits, gy, torch.Size(ws), xs[2], xs[3], stride, padding)
                    finally:
                        spike_conv._SPLIT_WGRAD_BY_CHANNEL = True
                return go

            torch.testing.assert_close(run(True)(), run(False)(), rtol=1e-4, atol=1e-4)
            times = interleaved_times({"channel": run(True), "sample": run(False)}, reps=reps, warmup=warmup)
            ch, sa = median(times["channel"]) * 1e3, median(times["sample"]) * 1e3
            n = calls.count(shape)
            totals["channel"] += n * ch
            totals["sample"] += n * sa
            splits = gy.numel() < ws[1] * ws[2] * ws[3] * -(-ws[0] // 8) * 8
            rows.append([name, f"{ws[1]}->{ws[0]} @{xs[2]} s{stride[0]}", str(n), "yes" if splits else "no",
                         f"{ch:.2f} / {sa:.2f}", fmt_ratio(sa / ch)])
        rows.append([name, "**per step**", str(len(calls)), "", f"{totals['channel']:.1f} / {totals['sample']:.1f}",
                     fmt_ratio(totals["sample"] / totals["channel"])])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.15, 0.3])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--step", action="store_true", help="also time the ms_resnet_mini training step")
    ap.add_argument("--step-only", action="store_true", help="time the training step only")
    ap.add_argument("--step-widths", nargs="+", default=["32,64,128", "64,128,256"],
                    help="ms_resnet_mini widths to time the step for (default: the recipe's and the wide recipe's)")
    ap.add_argument("--wgrad-split", action="store_true",
                    help="only the weight gradient's two thread splits at batch 8 (2 threads)")
    args = ap.parse_args()
    if not spike_conv.spike_conv_available():
        raise SystemExit(spike_conv.spike_conv_status())
    if args.wgrad_split:
        torch.set_num_threads(2)
        rows = _wgrad_split_rows(args.reps, args.warmup)
        print(markdown_table(["model (B 8, T 4)", "layer", "calls", "splits channels", "wgrad ms channel / sample",
                              "speed-up"], rows))
        print()
        print("\n".join(machine_lines("cpu")))
        return
    if args.step or args.step_only:
        step = [row for w in args.step_widths
                for row in _step_rows(args.reps, args.warmup, args.threads, tuple(int(c) for c in w.split(",")))]
        print()
        print(markdown_table(["widths", "threads", "CPU ms dense / spike", "CPU speed-up", "wall ms dense / spike",
                              "wall speed-up"], step))
        print()
    if args.step_only:
        print("\n".join(machine_lines("cpu")))
        return
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for layer in LAYERS:
            _check(layer)
            for rate in args.rates:
                row = [str(threads), str(layer), f"{rate:.2f}"]
                for job, pair in _contenders(layer, rate).items():
                    times = interleaved_times(pair, reps=args.reps, warmup=args.warmup)
                    d, sp = median(times["dense"]) * 1e3, median(times["spike"]) * 1e3
                    row += [f"{d:.2f} / {sp:.2f}", fmt_ratio(d / sp)]
                rows.append(row)
                print(" | ".join(row), flush=True)
    headers = ["threads", "layer (N = 256)", "rate", "fwd ms dense / spike", "fwd speed-up",
               "wgrad ms dense / spike", "wgrad speed-up", "fwd+bwd ms dense / spike", "fwd+bwd speed-up"]
    print()
    print(markdown_table(headers, rows))
    print()
    print("\n".join(machine_lines("cpu")))


if __name__ == "__main__":
    main()
