"""Speed and backward memory of the multi-step LIF kernel, side by side.

Four contenders run interleaved in one process on the same input
``[T, 32, 64, 16, 16]`` (``T`` in 4, 8, 16), forward + backward:

* ``spikevision``: :func:`spikevision.neuron.lif_multistep` as it runs by
  default: on CPU the C kernel, on CUDA the Triton kernels (one pass per
  direction, hand-written backward);
* ``spikevision-torch``: the same function with both switched off
  (``use_kernels(c=False, triton=False)``): the PyTorch
  kernel, which is what ``torch.compile`` traces;
* ``spikingjelly``: SpikingJelly 2.x ``LIFNode(step_mode="m")`` (on CPU a
  registered op with a hand-written backward; on CUDA the implementation named
  by ``--sj-backend``, e.g. ``triton`` or ``cuda``, through SpikingJelly's
  ``SJ_LIF_CUDA_IMPLEMENTATION``; an older SpikingJelly with a ``backend``
  argument gets it there, e.g. ``cupy``), same constants;
* ``naive``: a per-step Python loop differentiated by autograd, with a small
  straight-through spike function (what one writes by hand).

Two neuron configurations:

* ``sj-lif``: constants SpikingJelly supports identically (tau 2 with
  ``decay_input``, threshold 1, hard reset to 0, fire at ``H >= v_th``, sigmoid
  surrogate alpha 4, detached reset). The bench checks that spikevision and
  SpikingJelly agree (spikes equal, input gradients equal to round-off).
* ``ms-resnet``: the MS-ResNet neuron (decay 0.25, gain 1, threshold 0.5, fire
  at ``H > v_th``, hard reset to 0, rectangular surrogate of width 1, detached
  reset). SpikingJelly has no rectangular surrogate in its fused kernel, so its
  column here uses ``tau = 4/3, decay_input=False`` (same charge) with the
  sigmoid surrogate (alpha 4) and its ``>=`` threshold: close, not identical.
* ``sresnet``: the S-ResNet neuron (decay 0.8744, threshold 1, fire at ``H > v_th``,
  soft (subtractive) reset, triangle surrogate of width 2 and peak 0.3, detached
  reset). SpikingJelly's column: ``tau = 1 / (1 - 0.8744)``, ``decay_input=False``,
  ``v_reset=None`` (soft reset, same charge) with the sigmoid surrogate: close,
  not identical.

Reported per contender: median wall time of forward + backward over several
interleaved repetitions after warm-up, throughput in neuron-steps per second,
ratios (``x SJ`` = SJ time / this time, so > 1 is faster than SJ; from wall
time and from process CPU time, the latter being steadier when other jobs share
the machine), and the
bytes kept for backward per neuron-step, measured with
:func:`torch.autograd.graph.saved_tensors_hooks` as the sum of the unique
storages saved by the graph.

Run::

    python bench/neuron.py                 # full table
    python bench/neuron.py --reps 5 --T 4  # quicker
    python bench/neuron.py --device cuda --sj-backend triton   # on a GPU (bench/gpu_check.sh)

SpikingJelly is optional (``pip install spikingjelly``; it is not needed by the
library). When it is missing the bench says so and runs the other columns.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable

import torch

from spikevision.neuron import (
    NeuronParams, Rectangular, Sigmoid, Triangle, lif_multistep, native_status, triton_status, use_kernels,
)

SHAPE_REST = (32, 64, 16, 16)  # [B, C, H, W] after T (default; --shape changes it)

CONFIGS = {
    "sj-lif": dict(
        params=NeuronParams(decay=0.5, gain=0.5, v_th=1.0, v_reset=0.0, reset="hard", strict=False,
                            detach_reset=True, surrogate=Sigmoid(4.0)),
        sj=dict(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, alpha=4.0, detach_reset=True),
        sj_identical=True,
        input_mean=1.0,
    ),
    "ms-resnet": dict(
        params=NeuronParams(decay=0.25, gain=1.0, v_th=0.5, v_reset=0.0, reset="hard", strict=True,
                            detach_reset=True, surrogate=Rectangular(1.0)),
        sj=dict(tau=4.0 / 3.0, decay_input=False, v_threshold=0.5, v_reset=0.0, alpha=4.0, detach_reset=True),
        sj_identical=False,
        input_mean=0.3,
    ),
    "sresnet": dict(
        params=NeuronParams(decay=0.8744, gain=1.0, v_th=1.0, reset="soft", strict=True, detach_reset=True,
                            surrogate=Triangle(2.0, 0.3)),
        sj=dict(tau=1.0 / (1.0 - 0.8744), decay_input=False, v_threshold=1.0, v_reset=None, alpha=4.0,
                detach_reset=True),
        sj_identical=False,
        input_mean=0.3,
    ),
}


# ---------------------------------------------------------------------------
# contenders: each is a function x -> spikes that builds an autograd graph
# ---------------------------------------------------------------------------


class _SpikeFn(torch.autograd.Function):
    """Heaviside forward, surrogate gradient backward (the usual hand-written spike)."""

    @staticmethod
    def forward(ctx, u, p: NeuronParams):
        ctx.save_for_backward(u)
        ctx.p = p
        return (u > 0).to(u.dtype) if p.strict else (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad * ctx.p.surrogate.grad(u), None


def _torch_kernel(x: torch.Tensor, p: NeuronParams) -> torch.Tensor:
    with use_kernels(c=False, triton=False):
        return lif_multistep(x, p)


def naive_lif(x: torch.Tensor, p: NeuronParams) -> torch.Tensor:
    """Per-step loop: ``H = decay V + gain X``; spike; hard reset to 0 or soft reset, with detached spike."""
    if p.reset == "hard" and p.v_reset != 0.0:
        raise ValueError("naive_lif resets to 0 only")
    v = torch.zeros_like(x[0])
    spikes = []
    for t in range(x.shape[0]):
        h = v * p.decay + x[t] * p.gain
        s = _SpikeFn.apply(h - p.v_th, p)
        r = s.detach() if p.detach_reset else s
        v = h - r * p.v_th if p.reset == "soft" else h * (1.0 - r)
        spikes.append(s)
    return torch.stack(spikes)


def make_sj(cfg: dict, backend: str | None = None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    try:
        from spikingjelly.activation_based import functional as sj_functional
        from spikingjelly.activation_based import neuron as sj_neuron
        from spikingjelly.activation_based import surrogate as sj_surrogate
    except Exception as e:  # ImportError, or a broken install
        print(f"# SpikingJelly not available ({type(e).__name__}: {e}); "
              "its column is skipped. Install with: pip install spikingjelly")
        return None
    c = cfg["sj"]
    extra = {}
    if backend and "backend" in inspect.signature(sj_neuron.LIFNode).parameters:
        extra["backend"] = backend  # SpikingJelly 0.0.0.0.x: "torch" or "cupy" per neuron
    node = sj_neuron.LIFNode(tau=c["tau"], decay_input=c["decay_input"], v_threshold=c["v_threshold"],
                             v_reset=c["v_reset"], surrogate_function=sj_surrogate.Sigmoid(alpha=c["alpha"]),
                             detach_reset=c["detach_reset"], step_mode="m", **extra)

    def run(x: torch.Tensor) -> torch.Tensor:
        sj_functional.reset_net(node)  # SJ keeps the membrane between calls
        return node(x)

    return run


# ---------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------


def saved_bytes(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> int:
    """Bytes of the unique storages the autograd graph of ``fn(x)`` keeps for backward."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        storages[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(x)
    del out
    return sum(storages.values())


def _sync(x: torch.Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, g: torch.Tensor) -> tuple[float, float]:
    """Wall and process CPU seconds of one forward + backward (on CUDA, until the device is done)."""
    x.grad = None
    _sync(x)
    t0, c0 = time.perf_counter(), time.process_time()
    s = fn(x)
    s.backward(g)
    _sync(x)
    return time.perf_counter() - t0, time.process_time() - c0


def check_agreement(a, b, x: torch.Tensor, g: torch.Tensor) -> str:
    """Spikes equal and max |grad difference| between two contenders."""
    xa = x.detach().clone().requires_grad_(True)
    xb = x.detach().clone().requires_grad_(True)
    sa, sb = a(xa), b(xb)
    sa.backward(g)
    sb.backward(g)
    same = torch.equal(sa.detach(), sb.detach())
    diff = (xa.grad - xb.grad).abs().max().item()
    return f"spikes {'equal' if same else 'DIFFER'}, max |dgrad| = {diff:.2e}"


def bench_config(name: str, cfg: dict, Ts: list[int], reps: int, warmup: int, device: torch.device,
                 shape_rest: tuple[int, ...], sj_backend: str | None) -> list[dict]:
    p: NeuronParams = cfg["params"]
    sj_name = f"spikingjelly-{sj_backend}" if sj_backend else "spikingjelly"
    contenders: dict[str, Callable] = {
        "spikevision": lambda x: lif_multistep(x, p),
        "spikevision-torch": lambda x: _torch_kernel(x, p),
        sj_name: make_sj(cfg, sj_backend),
        "naive": lambda x: naive_lif(x, p),
    }
    contenders = {k: v for k, v in contenders.items() if v is not None}
    rows = []
    gen = torch.Generator().manual_seed(0)
    for T in Ts:
        shape = (T, *shape_rest)
        x = (torch.randn(shape, generator=gen) + cfg["input_mean"]).to(device).requires_grad_(True)
        g = torch.randn(shape, generator=gen).to(device)
        n = x.numel()
        checks = {"naive": check_agreement(contenders["spikevision"], contenders["naive"], x, g)}
        if sj_name in contenders and cfg["sj_identical"]:
            checks[sj_name] = check_agreement(contenders["spikevision"], contenders[sj_name], x, g)
        mem = {k: saved_bytes(fn, x) / n for k, fn in contenders.items()}
        times: dict[str, list[float]] = {k: [] for k in contenders}
        cpu: dict[str, list[float]] = {k: [] for k in contenders}
        for i in range(warmup + reps):
            # rotate the order each repetition so no contender always runs first
            order = list(contenders)[i % len(contenders):] + list(contenders)[: i % len(contenders)]
            for k in order:
                dt, dc = fwd_bwd(contenders[k], x, g)
                if i >= warmup:
                    times[k].append(dt)
                    cpu[k].append(dc)
        med = {k: statistics.median(v) for k, v in times.items()}
        mcpu = {k: statistics.median(v) for k, v in cpu.items()}

        def ratio(m: dict[str, float], ref: str, k: str) -> float:
            return m[ref] / m[k] if ref in m else math.nan

        for k in contenders:
            rows.append(dict(config=name, T=T, contender=k, ms=med[k] * 1e3, cpu_ms=mcpu[k] * 1e3,
                             spread=(min(times[k]) * 1e3, max(times[k]) * 1e3),
                             throughput=n / med[k], bytes=mem[k],
                             x_sj=ratio(med, sj_name, k), x_naive=ratio(med, "naive", k),
                             x_sj_cpu=ratio(mcpu, sj_name, k), x_naive_cpu=ratio(mcpu, "naive", k)))
        print(f"# {name} T={T}: " + "; ".join(f"{k} vs spikevision: {v}" for k, v in checks.items()),
              flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    print("| config | T | contender | wall ms (median) | wall min..max | CPU ms (median) | neuron-steps/s "
          "| x SJ wall / CPU | x naive wall / CPU | saved B per neuron-step |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")

    def f(v: float) -> str:
        return "n/a" if math.isnan(v) else f"{v:.2f}"

    def ms(v: float, digits: int) -> str:  # GPU times are fractions of a millisecond
        return f"{v:.{digits}f}" if v >= 10 else f"{v:.3g}"

    for r in rows:
        print(f"| {r['config']} | {r['T']} | {r['contender']} | {ms(r['ms'], 1)} | "
              f"{ms(r['spread'][0], 0)}..{ms(r['spread'][1], 0)} | {r['cpu_ms']:.1f} | {r['throughput'] / 1e6:.1f} M | "
              f"{f(r['x_sj'])} / {f(r['x_sj_cpu'])} | {f(r['x_naive'])} / {f(r['x_naive_cpu'])} | "
              f"{r['bytes']:.2f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--T", type=int, nargs="+", default=[4, 8, 16], help="time steps to measure")
    ap.add_argument("--reps", type=int, default=9, help="timed repetitions per contender (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed repetitions first")
    ap.add_argument("--config", choices=sorted(CONFIGS), nargs="+", default=list(CONFIGS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--shape", type=int, nargs="+", default=list(SHAPE_REST),
                    help="the input's dimensions after T (default: B C H W = 32 64 16 16)")
    ap.add_argument("--sj-backend", default=None,
                    help="SpikingJelly's implementation: 2.x on CUDA 'triton', 'cuda' or 'torch' "
                         "(SJ_LIF_CUDA_IMPLEMENTATION); 0.0.0.0.x 'cupy' or 'torch'")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    if args.sj_backend:  # read by SpikingJelly 2.x when it is imported, i.e. below
        os.environ["SJ_LIF_CUDA_IMPLEMENTATION"] = args.sj_backend

    try:
        import spikingjelly
        sj_version = getattr(spikingjelly, "__version__", None)
        if sj_version is None:
            from importlib.metadata import version
            sj_version = version("spikingjelly")
    except Exception:
        sj_version = "not installed"
    print("# command: python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]))
    print(f"# machine: {platform.machine()} {platform.processor() or ''} {platform.system()} "
          f"{platform.release()}; torch threads {torch.get_num_threads()}")
    print(f"# versions: python {platform.python_version()}, torch {torch.__version__}, "
          f"spikingjelly {sj_version}")
    print(f"# spikevision CPU neurons: {native_status()}")
    print(f"# spikevision CUDA neurons: {triton_status()}")
    if device.type == "cuda":
        print(f"# device: {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})")
    print(f"# input [T, {', '.join(map(str, args.shape))}] float32 on {device}, forward + backward, "
          f"median of {args.reps} interleaved reps after {args.warmup} warm-up")

    rows = []
    for name in args.config:
        rows += bench_config(name, CONFIGS[name], args.T, args.reps, args.warmup, device, tuple(args.shape),
                             args.sj_backend)
    print()
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
