"""Issue 26 ("Training speed"): the time-broadcast neuron input, and the upper bound of fusing BN with the neuron.

Two parts, both interleaved in one process (medians over rounds; see ``common.interleaved_times``):

* ``steps``: one training step (forward, label-smoothing cross-entropy, backward, AdamW,
  ``zero_grad(set_to_none=True)``) of MS-ResNet models with the C kernel's time-broadcast input on
  (``broadcast``, the default: under ``stem_once`` the stem output ``u`` reaches the first neuron as
  ``u.expand(T, ...)`` and is read, and its gradient summed, without ``[T, ...]`` copies) and off
  (``plain``: ``use_kernels(broadcast=False)``, the input copied to ``[T, ...]`` first as before).
  Both contenders start from the same weights, on the same input.
  Besides the wall time, the process CPU time of each step (both threads) is reported: on a machine
  shared with other jobs it is less sensitive to time spent descheduled.
* ``bn``: the cost of each BN -> neuron pair of ``ms_resnet_mini`` (batch 128, T = 2) at its real shape
  (MSBlock's ``bn1 -> lif2``; the stem's BN feeds a time-broadcast neuron and the blocks' last BN
  an addition, so they are not such pairs): BatchNorm2d forward + backward in training mode, the
  neuron forward + backward, and one memory pass over the same tensor (``copy_`` into a
  preallocated buffer: a read and a write; and ``clone``: the same into a freshly allocated tensor,
  page faults included, as the activations of a step are). A fused BN + neuron saves at most about
  one read and one write per direction (BN's output and the neuron's input gradient are never
  written), i.e. about two fresh passes per pair per step: the upper bound of its gain.

Run::

    python bench/neuron_fusion.py                        # both parts, default models and rounds
    python bench/neuron_fusion.py --part steps --reps 15 --models ms_resnet_mini
"""

from __future__ import annotations

import argparse
import ctypes
import os
import time

import torch
from torch import nn

from common import interleaved_times, machine_lines, markdown_table, median

from spikevision.models import create_model
from spikevision.models.ms_resnet import MS_RESNET_NEURON
from spikevision.neuron import lif_multistep, use_kernels

#: model -> (create_model keywords, image size, batch, T)
CONFIGS = {
    "ms_resnet_mini": (dict(num_classes=10, in_chans=1), 28, 128, 2),
    "ms_resnet20": (dict(num_classes=10), 32, 32, 4),
    "ms_resnet18": (dict(num_classes=1000), 64, 8, 4),
}
#: ms_resnet_mini's BN -> neuron pairs (MSBlock bn1 -> lif2): [T*B, C, H, W] and how many of each
MINI_BN_LIF = {(256, 32, 14, 14): 2, (256, 64, 7, 7): 2, (256, 128, 4, 4): 2}


def step_fn(model: str, broadcast: bool, seed: int = 0):
    """One training step of ``model`` under ``use_kernels(broadcast=...)``, as a zero-argument callable."""
    kwargs, size, batch, T = CONFIGS[model]
    torch.manual_seed(seed)
    net = create_model(model, T=T, **kwargs).train()
    chans = kwargs.get("in_chans", 3)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, chans, size, size, generator=g)
    y = torch.randint(0, kwargs["num_classes"], (batch,), generator=g)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def step() -> None:
        with use_kernels(broadcast=broadcast):
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(net(x), y, label_smoothing=0.1)
            loss.backward()
            opt.step()

    return step


def with_cpu_time(fn, sink: list[float]):
    """``fn`` that also appends the process CPU time of each call (both threads) to ``sink``."""
    def timed() -> None:
        t0 = time.process_time()
        fn()
        sink.append(time.process_time() - t0)
    return timed


def bench_steps(models: list[str], reps: int, warmup: int) -> str:
    rows = []
    for model in models:
        cpu = {"broadcast": [], "plain": []}
        contenders = {name: with_cpu_time(step_fn(model, name == "broadcast"), cpu[name]) for name in cpu}
        times = interleaved_times(contenders, reps=reps, warmup=warmup)
        on, off = median(times["broadcast"]), median(times["plain"])
        cpu_on, cpu_off = (median(cpu[k][warmup:]) for k in ("broadcast", "plain"))
        _, size, batch, T = CONFIGS[model]
        rows.append([model, f"{size} px, B {batch}, T {T}", f"{off * 1e3:.1f}", f"{on * 1e3:.1f}",
                     f"{off / on:.3f}x", f"{cpu_off * 1e3:.1f}", f"{cpu_on * 1e3:.1f}", f"{cpu_off / cpu_on:.3f}x"])
        print(rows[-1], flush=True)
    return markdown_table(["model", "input", "plain ms", "broadcast ms", "speed-up", "plain CPU ms",
                           "broadcast CPU ms", "CPU-time ratio"], rows)


def bn_pair_fns(shape: tuple[int, ...], T: int = 2):
    """(BN fwd+bwd, neuron fwd+bwd, one copy pass) at ``shape`` ``[T*B, C, H, W]``."""
    x = torch.randn(shape, requires_grad=True)
    bn = nn.BatchNorm2d(shape[1]).train()
    g = torch.randn(shape)
    seq = torch.randn((T, shape[0] // T, *shape[1:]), requires_grad=True)
    gs = torch.randn(seq.shape)
    buf = torch.empty(shape)
    src = torch.randn(shape)

    def bn_step() -> None:
        torch.autograd.backward(bn(x), g)

    def lif_step() -> None:
        torch.autograd.backward(lif_multistep(seq, MS_RESNET_NEURON), gs)

    def copy_pass() -> None:
        buf.copy_(src)

    def fresh_pass() -> None:
        src.clone()

    return {"bn": bn_step, "lif": lif_step, "copy": copy_pass, "fresh": fresh_pass}


def bench_bn(reps: int, warmup: int) -> str:
    rows, total = [], {"bn": 0.0, "lif": 0.0, "copy": 0.0, "fresh": 0.0}
    for shape, count in MINI_BN_LIF.items():
        times = interleaved_times(bn_pair_fns(shape), reps=reps, warmup=warmup)
        med = {k: median(v) for k, v in times.items()}
        for k in total:
            total[k] += count * med[k]
        rows.append([str(list(shape)), count, f"{med['bn'] * 1e3:.2f}", f"{med['lif'] * 1e3:.2f}",
                     f"{med['copy'] * 1e3:.2f}", f"{med['fresh'] * 1e3:.2f}", f"{2 * med['fresh'] * 1e3:.2f}"])
        print(rows[-1], flush=True)
    rows.append(["per step (sum)", sum(MINI_BN_LIF.values()), f"{total['bn'] * 1e3:.1f}", f"{total['lif'] * 1e3:.1f}",
                 f"{total['copy'] * 1e3:.1f}", f"{total['fresh'] * 1e3:.1f}", f"{2 * total['fresh'] * 1e3:.1f}"])
    return markdown_table(["shape [T*B, C, H, W]", "pairs", "BN fwd+bwd ms", "LIF fwd+bwd ms", "1 pass ms",
                           "1 pass, fresh output ms", "fusion saves <= ms"], rows)


def keep_freed_memory() -> None:
    """glibc: serve every block below 32 MiB from the heap and keep freed memory (no page faults per step)."""
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # malloc.h
    for option, value in ((m_mmap_threshold, 32 << 20), (m_trim_threshold, 1 << 30), (m_top_pad, 256 << 20)):
        if libc.mallopt(option, value) != 1:
            raise OSError(f"mallopt({option}, {value}) failed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("all", "steps", "bn"), default="all")
    ap.add_argument("--models", default="ms_resnet_mini,ms_resnet20,ms_resnet18")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep-freed-memory", action="store_true",
                    help="glibc mallopt: keep freed memory in the heap (removes the per-step page faults)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.keep_freed_memory:
        keep_freed_memory()
    out = [f"load average (1, 5, 15 min) before: {', '.join(f'{x:.1f}' for x in os.getloadavg())}", ""]
    if args.part in ("all", "steps"):
        out += ["## Training step, time-broadcast input on vs off", "",
                bench_steps(args.models.split(","), args.reps, args.warmup), ""]
    if args.part in ("all", "bn"):
        out += ["## ms_resnet_mini (B 128, T 2): BN -> neuron pairs, and one memory pass", "",
                bench_bn(args.reps * 3, args.warmup), ""]
    out += machine_lines("cpu")
    print("\n".join(out))


if __name__ == "__main__":
    main()
