"""``spikevision smoke``: build a small spiking CNN and push one batch through it.

A quick check that the installation works end to end (encoder, time-folded
conv, tdBN, fused LIF, head, backward) without any data set.
"""

import argparse
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--T", type=int, default=4, help="time steps (default 4)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import torch
    from torch import nn

    from spikevision.layers import DirectEncoder, TDBatchNorm2d, TimeFolded
    from spikevision.neuron import LIF, NeuronParams

    torch.manual_seed(args.seed)
    p = NeuronParams()
    net = nn.Sequential(
        DirectEncoder(args.T),
        TimeFolded(nn.Conv2d(1, 16, 3, padding=1, bias=False)),
        TDBatchNorm2d(16),
        LIF(p),
        TimeFolded(nn.AvgPool2d(2)),
        TimeFolded(nn.Flatten()),
        TimeFolded(nn.Linear(16 * 14 * 14, 10)),
    )
    x = torch.rand(args.batch_size, 1, 28, 28)
    start = time.perf_counter()
    logits_seq = net(x)  # [T, B, 10]
    logits = logits_seq.mean(0)
    logits.logsumexp(1).mean().backward()
    elapsed = time.perf_counter() - start
    spikes = net[3](net[2](net[1](net[0](x))))
    print(net)
    print(f"input {list(x.shape)} -> per-step logits {list(logits_seq.shape)} -> logits {list(logits.shape)}")
    print(f"mean firing rate of the LIF layer: {spikes.mean().item():.3f}")
    print(f"forward + backward: {elapsed * 1e3:.1f} ms; all gradients finite: "
          f"{all(torch.isfinite(q.grad).all().item() for q in net.parameters() if q.grad is not None)}")
    return 0
