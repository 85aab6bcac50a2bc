"""One training step of MS-ResNet, spikevision vs SpikingJelly 2.x, side by side.

A step is forward, label-smoothing cross-entropy (0.1), backward, SGD
(momentum 0.9) and ``zero_grad(set_to_none=True)``; SpikingJelly's step also
calls its ``reset_net`` (its neurons keep state between calls). Contenders,
interleaved round by round in one process on the same input, batch and ``T``:

* ``spikevision``: ``create_model("ms_resnet18" | "ms_resnet20", T=T)``;
* ``spikevision-plain``: the same step with the training fast paths of issue 26
  ("Training speed") turned off by their switches (:func:`plain_path`): spikevision's step as it was
  before them, measured in the same run;
* ``spikevision-compile``: the same net wrapped in :func:`torch.compile` (default inductor backend; the
  compile happens in the warm-up rounds, its time is not in the table). Under tracing the spike
  convolutions take their dense fallback and the neuron's C kernel breaks the graph, so this measures
  whether inductor's fused elementwise code beats the hand-made path;
* ``spikevision-channels-last``: the same net and input in ``torch.channels_last`` memory format
  (:func:`spikevision.layers.memory_format.to_channels_last`: every map NHWC, no conversion between layers);
* ``spikevision-per-step``: the same built with ``stem_once=False`` (the stem's
  conv + BN run on all ``T`` repeated frames, as SpikingJelly runs them,
  instead of once per static image: isolates that optimisation);
* ``spikevision-spikes``: the same with ``enable_memory_saving(net, "spikes")``
  (saved spikes kept as int8, exact, no recomputation);
* ``spikevision-mem``: the same with :func:`spikevision.train.memory_saving.enable_memory_saving`
  (``mode="blocks"``: each residual block recomputed in backward);
* ``spikingjelly``: SpikingJelly's own ``activation_based.model.ms_resnet.MSResNet``
  class, with the neuron made faithful to the paper: its default surrogate,
  ``Rect(alpha=2)`` (window +-0.25, height 2), is replaced by ``Rect(alpha=1)``
  (window +-0.5, height 1, the paper's), and ``LIFNode(tau=4/3,
  decay_input=False, v_threshold=0.5, v_reset=0, detach_reset=True)``. For the
  CIFAR net (which SpikingJelly does not ship) the same class is built with
  ``layers=(3, 3, 3)``, widths 16/32/64, a 3x3/1 stem and stage-1 stride 1.
  The only remaining difference is SpikingJelly's ``>=`` threshold vs our
  strict ``>`` (a tie has probability ~0 with real-valued inputs).

``--models ms_resnet_mini,ms_resnet_mini_wide`` times the headline Fashion-MNIST recipes' nets (28 px, one
channel, widths 32/64/128 and 64/128/256; ``--optim adamw`` gives their optimiser), ``--models mlp_spe_mini``
the spiking MLP recipe's (dim 48); SpikingJelly has no counterpart for them, so their rows compare spikevision
with itself (``x plain``).

Before timing, the bench copies spikevision's weights into the SpikingJelly
net and checks the two give the same logits and gradients (printed as
"parity"), which proves the architectures and constants are the same.

Measured per contender: median ms per step and images/s (``B / t``), ratio to
SpikingJelly (``x SJ`` = SJ time / this time: > 1 is faster); peak memory of a
step above the steady state (CPU: resident-set high-water mark in a fresh
subprocess per configuration; CUDA: ``max_memory_allocated``), its ratio to
SJ (< 1 is leaner); and the activation bytes autograd keeps for backward
after the forward (``saved_tensors_hooks``, unique storages, parameters not
counted; deterministic, load-free). The peak includes the parameter
gradients (allocated in backward, ``set_to_none`` between steps) but not the
weights and momentum buffers that live across steps.

Run::

    python bench/train_step.py                                   # full table
    python bench/train_step.py --reps 3 --batch 4 --T 4 --models ms_resnet20   # quick
    python bench/train_step.py --models ms_resnet_mini,ms_resnet_mini_wide --T 2 --batch 128 --optim adamw \
        --contenders spikevision,spikevision-plain               # the headline recipes' step
    python bench/train_step.py --device cuda --batch 64          # on a GPU
    python bench/train_step.py --device cuda --sj-backend triton # SpikingJelly's Triton neurons

On CUDA spikevision's neurons run its Triton kernels (``spikevision version``
says so); ``--sj-backend`` picks SpikingJelly 2.x's CUDA implementation
(``triton``, ``cuda`` or ``torch``, through its ``SJ_LIF_CUDA_IMPLEMENTATION``),
default its own choice.

``pip install spikingjelly`` (2.x, ``--no-deps`` keeps your torch) is needed
for the SJ column only; without it the other columns still run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any, Callable

import torch
from torch import Tensor, nn

from common import (
    MIB, fmt_ratio, interleaved_times, machine_lines, markdown_table, measure_step_peak, median,
    spawn_worker, worker_entry,
)
from spikevision.models import create_model
from spikevision.layers.memory_format import to_channels_last
from spikevision.layers.spike_conv import spike_conv_status, use_spike_conv
from spikevision.layers.temporal import use_time_broadcast
from spikevision.neuron import native_status, triton_status, use_kernels
from spikevision.train.allocator import keep_freed_memory
from spikevision.train.memory_saving import SavedTensorMeter, enable_memory_saving

CONTENDERS = ("spikevision", "spikevision-plain", "spikevision-compile", "spikevision-channels-last",
              "spikevision-per-step", "spikevision-spikes", "spikevision-mem", "spikingjelly")
DEFAULT_SIZE = {"ms_resnet18": 64, "ms_resnet34": 64, "ms_resnet_mini": 28, "ms_resnet_mini_wide": 28,
                "mlp_spe_mini": 28}  # CIFAR: 32
NUM_CLASSES = {"ms_resnet18": 1000, "ms_resnet34": 1000}  # CIFAR nets and the Fashion-MNIST minis: 10
CIFAR_N = {"ms_resnet20": 3, "ms_resnet32": 5, "ms_resnet44": 7, "ms_resnet56": 9, "ms_resnet110": 18}
#: the Fashion-MNIST recipes' nets (28 px, one channel, no SpikingJelly counterpart): the headline
#: (configs/ms_resnet_mini_fashion_mnist.yaml), its wide variant, and the spiking MLP's recipe
RECIPE_NETS = {"ms_resnet_mini": {"widths": [32, 64, 128]}, "ms_resnet_mini_wide": {"widths": [64, 128, 256]},
               "mlp_spe_mini": {"dim": 48}}
LABEL_SMOOTHING = 0.1  # the paper's ImageNet loss, and the Fashion-MNIST recipes'
LR, MOMENTUM = 0.01, 0.9
ADAMW_LR, ADAMW_WEIGHT_DECAY = 3e-3, 0.02  # the Fashion-MNIST recipes' optimiser


def plain_path() -> contextlib.ExitStack:
    """Turn off the training fast paths added for issue 26 ("Training speed") for the calls inside: the
    ``spikevision-plain`` contender, spikevision's step as it was before them (event-driven spike convolutions,
    the neuron's time-broadcast input, frame-wise layers and batch norms run once on a time-broadcast input)."""
    stack = contextlib.ExitStack()
    stack.enter_context(use_spike_conv(False))
    stack.enter_context(use_kernels(broadcast=False))
    stack.enter_context(use_time_broadcast(False))
    return stack


def has_spikingjelly() -> bool:
    try:
        import spikingjelly.activation_based.model.ms_resnet  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------


def build_spikevision(model: str, T: int, memory_saving: str = "none", stem_once: bool = True) -> nn.Module:
    if model == "mlp_spe_mini":  # no frame-wise stem to run once
        net = create_model(model, T=T, **RECIPE_NETS[model])
    elif model in RECIPE_NETS:
        net = create_model("ms_resnet_mini", T=T, num_classes=10, in_chans=1, stem_once=stem_once,
                           **RECIPE_NETS[model])
    else:
        net = create_model(model, T=T, num_classes=NUM_CLASSES.get(model, 10), stem_once=stem_once)
    enable_memory_saving(net, memory_saving)
    return net


def build_spikingjelly(model: str, T: int) -> nn.Module:
    """SpikingJelly's MSResNet class with the paper's neuron (see the module docstring)."""
    from spikingjelly.activation_based import surrogate
    from spikingjelly.activation_based.model.ms_resnet import MSResNet

    neuron_kwargs = dict(tau=4.0 / 3.0, decay_input=False, v_threshold=0.5, v_reset=0.0, detach_reset=True,
                         surrogate_function=surrogate.Rect(alpha=1.0))
    if model in ("ms_resnet18", "ms_resnet34"):
        layers = (2, 2, 2, 2) if model == "ms_resnet18" else (3, 4, 6, 3)
        return MSResNet(T=T, num_classes=NUM_CLASSES[model], layers=layers, **neuron_kwargs)
    if model in CIFAR_N:

        class _CifarMSResNet(MSResNet):
            _first_stage_stride = 1  # CIFAR nets: stage strides 1, 2, 2

        n = CIFAR_N[model]
        return _CifarMSResNet(T=T, num_classes=10, layers=(n, n, n), base_channels=16, stem_kernel_size=3,
                              stem_stride=1, stage_channels=(16, 32, 64), **neuron_kwargs)
    raise ValueError(f"no SpikingJelly counterpart for {model!r}; choose from ms_resnet18/34, {sorted(CIFAR_N)}")


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters and buffers in registration order (both nets register them alike)."""
    a, b = list(src.state_dict().items()), list(dst.state_dict().items())
    if len(a) != len(b):
        raise RuntimeError(f"state dicts differ in length: {len(a)} vs {len(b)}")
    with torch.no_grad():
        for (ka, va), (kb, vb) in zip(a, b):
            if va.shape != vb.shape:
                raise RuntimeError(f"shape mismatch {ka} {tuple(va.shape)} vs {kb} {tuple(vb.shape)}")
            vb.copy_(va)


def build(contender: str, model: str, T: int, seed: int, device: torch.device) -> nn.Module:
    """The contender's net, with weights drawn from ``seed`` by spikevision's initialiser (shared by all)."""
    torch.manual_seed(seed)
    mode = {"spikevision-mem": "blocks", "spikevision-spikes": "spikes"}.get(contender, "none")
    ours = build_spikevision(model, T, memory_saving=mode, stem_once=contender != "spikevision-per-step")
    if contender == "spikingjelly":
        sj = build_spikingjelly(model, T)
        copy_weights(ours, sj)
        ours = sj
    ours = ours.to(device).train()
    if contender == "spikevision-channels-last":
        to_channels_last(ours)
    return torch.compile(ours) if contender == "spikevision-compile" else ours


def make_optimizer(net: nn.Module, optim: str) -> torch.optim.Optimizer:
    if optim == "adamw":
        return torch.optim.AdamW(net.parameters(), lr=ADAMW_LR, weight_decay=ADAMW_WEIGHT_DECAY)
    return torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)


def make_step(net: nn.Module, contender: str, x: Tensor, y: Tensor, optim: str = "sgd") -> Callable[[], None]:
    opt = make_optimizer(net, optim)
    if contender == "spikevision-channels-last":
        x = x.contiguous(memory_format=torch.channels_last)
    reset = None
    if contender == "spikingjelly":
        from spikingjelly.activation_based import functional as sjf
        reset = sjf.reset_net

    def step() -> None:
        with plain_path() if contender == "spikevision-plain" else contextlib.nullcontext():
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(net(x), y, label_smoothing=LABEL_SMOOTHING)
            loss.backward()
            opt.step()
        if reset is not None:
            reset(net)

    return step


def make_batch(model: str, batch: int, size: int, seed: int, device: torch.device) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, 1 if model in RECIPE_NETS else 3, size, size, generator=g)
    y = torch.randint(0, NUM_CLASSES.get(model, 10), (batch,), generator=g)
    return x.to(device), y.to(device)


def saved_bytes(net: nn.Module, contender: str, x: Tensor) -> int:
    """Activation bytes autograd holds for backward after one forward (parameters not counted;
    block inputs counted in memory-saving mode)."""
    with SavedTensorMeter(net) as meter, plain_path() if contender == "spikevision-plain" else contextlib.nullcontext():
        out = net(x)
    del out
    if contender == "spikingjelly":
        from spikingjelly.activation_based import functional as sjf
        sjf.reset_net(net)
    return meter.bytes


def parity(model: str, T: int, size: int, seed: int, device: torch.device) -> tuple[float, float]:
    """Max |logit difference| and max relative gradient difference, spikevision vs SpikingJelly."""
    ours = build("spikevision", model, T, seed, device)
    for m in ours.modules():  # non-zero last-BN gammas so every layer carries gradient
        if isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 0.5)
    sj = build_spikingjelly(model, T).to(device).train()
    copy_weights(ours, sj)
    x, y = make_batch(model, 2, size, seed, device)
    outs = []
    for net in (ours, sj):
        logits = net(x)
        nn.functional.cross_entropy(logits, y).backward()
        outs.append(logits.detach())
    dlogit = (outs[0] - outs[1]).abs().max().item()
    rel = max(((p.grad - q.grad).norm() / p.grad.norm().clamp_min(1e-12)).item()
              for p, q in zip(ours.parameters(), sj.parameters()) if p.grad is not None)
    return dlogit, rel


def profile_table(step: Callable[[], None], rows: int = 15) -> str:
    """torch.profiler's ops by self CPU time over two (already warm) steps."""
    from torch.profiler import profile

    with profile() as prof:
        step()
        step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


# ---------------------------------------------------------------------------
# memory worker (fresh process per configuration)
# ---------------------------------------------------------------------------


def memory_worker(p: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(p["threads"])
    device = torch.device(p["device"])
    net = build(p["contender"], p["model"], p["T"], p["seed"], device)
    x, y = make_batch(p["model"], p["batch"], p["size"], p["seed"], device)
    step = make_step(net, p["contender"], x, y, p["optim"])
    for _ in range(2):  # allocate optimizer state, warm caches
        step()
    for q in net.parameters():  # gradients are part of the step's memory (they are freed by zero_grad)
        q.grad = None
    return {"peak_bytes": measure_step_peak(step, device)}


def step_memory(script: str, **payload: Any) -> float:
    return spawn_worker(script, payload)["peak_bytes"] / MIB


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="ms_resnet18,ms_resnet20",
                    help="comma list: ms_resnet18, ms_resnet34, ms_resnet20/32/44/56/110, ms_resnet_mini(_wide), mlp_spe_mini "
                         "(the Fashion-MNIST recipes' nets, 28 px, one channel; no SpikingJelly counterpart)")
    ap.add_argument("--T", type=int, nargs="+", default=[4, 6], help="time steps (several allowed)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=None, help="input pixels (default 64 ImageNet nets, 32 CIFAR)")
    ap.add_argument("--reps", type=int, default=5, help="timed rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--optim", choices=("sgd", "adamw"), default="sgd",
                    help="sgd: momentum 0.9, lr 0.01 (the paper's); adamw: lr 3e-3, weight decay 0.02 "
                         "(the Fashion-MNIST recipes')")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-memory", action="store_true", help="skip the subprocess peak-memory runs")
    ap.add_argument("--profile", action="store_true",
                    help="also print torch.profiler's table (self CPU time by op) of two steps of each contender")
    ap.add_argument("--keep-denormals", action="store_true",
                    help="do not flush denormal floats (CPU); by default they are flushed for every contender, "
                         "as spikevision's engine does (train.flush_denormal)")
    ap.add_argument("--default-allocator", action="store_true",
                    help="leave glibc's allocator as it starts; by default the timed process keeps freed memory "
                         "in its heap for every contender, as spikevision's engine does "
                         "(train.keep_freed_memory; the peak-memory subprocesses always start plain)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sj-backend", default=None,
                    help="SpikingJelly 2.x CUDA implementation: triton, cuda or torch (default: its own choice)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    worker_entry(memory_worker)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    # denormal gradients and momentum (zero-init BN, surrogate tails) make CPU float ops many times
    # slower; flushing is process-wide, so it applies to every contender alike
    torch.set_flush_denormal(not args.keep_denormals)
    # the engine's allocator setting (train.keep_freed_memory): freed activations stay in the heap instead of
    # being mapped afresh (page faults) every step; process-wide, so every contender runs under it alike
    kept = not args.default_allocator and keep_freed_memory()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    if args.sj_backend:  # read by SpikingJelly when it is imported (here and in the memory workers)
        os.environ["SJ_LIF_CUDA_IMPLEMENTATION"] = args.sj_backend
    contenders = [c for c in args.contenders.split(",") if c]
    unknown = set(contenders) - set(CONTENDERS)
    if unknown:
        raise SystemExit(f"unknown contenders {sorted(unknown)}; choose from {list(CONTENDERS)}")
    if "spikingjelly" in contenders and not has_spikingjelly():
        print("SpikingJelly not installed (pip install spikingjelly --no-deps); skipping its column", file=sys.stderr)
        contenders.remove("spikingjelly")
    script = os.path.abspath(__file__)
    rows, notes = [], []
    for model in [m for m in args.models.split(",") if m]:
        size = args.size or DEFAULT_SIZE.get(model, 32)
        for T in args.T:
            sj_here = "spikingjelly" in contenders and model not in RECIPE_NETS
            here = [c for c in contenders if c != "spikingjelly" or sj_here]
            if sj_here:
                dl, dg = parity(model, T, size, args.seed, device)
                notes.append(f"- parity {model} T={T}: max |logit diff| {dl:.2e}, max relative grad diff {dg:.2e}")
            nets = {c: build(c, model, T, args.seed, device) for c in here}
            x, y = make_batch(model, args.batch, size, args.seed, device)
            saved = {c: saved_bytes(nets[c], c, x) / MIB for c in here}
            steps = {c: make_step(nets[c], c, x, y, args.optim) for c in here}
            times = interleaved_times(steps, reps=args.reps, warmup=args.warmup, device=device)
            if args.profile:
                for c in here:
                    print(f"profile {model} T={T} {c}:\n{profile_table(steps[c])}", flush=True)
            del steps, nets
            mem = {}
            if not args.no_memory:
                for c in here:
                    mem[c] = step_memory(script, contender=c, model=model, T=T, batch=args.batch, size=size,
                                         seed=args.seed, device=args.device, threads=args.threads,
                                         optim=args.optim)
            t_sj = median(times["spikingjelly"]) if "spikingjelly" in times else None
            t_plain = median(times["spikevision-plain"]) if "spikevision-plain" in times else None
            for c in here:
                t = median(times[c])
                m = mem.get(c)
                m_sj = mem.get("spikingjelly")
                rows.append([model, size, T, args.batch, c, f"{1000 * t:.1f}", f"{args.batch / t:.1f}",
                             fmt_ratio(t_sj / t if t_sj else None), fmt_ratio(t_plain / t if t_plain else None),
                             "-" if m is None else f"{m:.0f}",
                             fmt_ratio(m / m_sj if m is not None and m_sj else None), f"{saved[c]:.0f}"])
            print(f"done {model} T={T}", file=sys.stderr, flush=True)
    headers = ["model", "px", "T", "B", "contender", "ms/step", "img/s", "speed x SJ", "x plain", "peak MiB", "mem x SJ",
               "saved MiB"]
    print(markdown_table(headers, rows))
    print()
    print(f"Medians of {args.reps} interleaved rounds after {args.warmup} warm-up rounds; device {device}; "
          f"optimiser {args.optim}.")
    print("speed x SJ = SJ time / this time (> 1 faster); x plain = spikevision-plain's time / this time "
          "(spikevision-plain: the issue-26 fast paths off); mem x SJ = this peak / SJ peak (< 1 leaner).")
    print("peak MiB: memory of one step above weights + optimizer state, gradients included (fresh process "
          "per row); saved MiB: activations kept for backward after the forward (saved_tensors_hooks, "
          "parameters not counted).")
    print("\n".join(notes))
    allocator = "freed memory kept in the heap, as the engine does" if kept else "glibc as it starts"
    print(f"- allocator (timed process, every contender): {allocator}")
    print(f"- spikevision neurons: CPU {native_status()}; CUDA {triton_status()}")
    print(f"- spikevision spike convolutions (training, CPU): {spike_conv_status()}")
    if "spikingjelly" in contenders:
        print(f"- SpikingJelly CUDA implementation: {args.sj_backend or 'its default'}")
    print("\n".join(machine_lines(device, ("torch", "spikevision", "spikingjelly"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
