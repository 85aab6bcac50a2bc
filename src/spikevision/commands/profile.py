"""``spikevision profile MODEL_or_RUN_DIR``: per-layer firing rates, ACs/MACs and energy, per sample.

Builds the registered model (or loads a run directory's checkpoint), runs one
forward pass on a seeded random batch at the model's default input size
(images ``N(0, 1)``; event models get Bernoulli(0.1) spike frames), and prints
:func:`spikevision.analysis.format_profile`: one row per conv/linear layer
(input kind binary/integer/real, input firing rate, dense MACs, ACs, MACs,
energy), one row per spiking layer, totals and the energy conventions.

An untrained model on random input gives the operation counts of that input,
not of a trained network on real data: profile a run directory for those.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="MODEL_or_RUN_DIR", help="registered model name or a run directory")
    parser.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), default=None,
                        help="input size (default: the model's)")
    parser.add_argument("--T", type=int, default=None, help="time steps (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=2, help="samples in the random batch (default 2)")
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--integer-inputs", choices=("mac", "repeated_ac"), default="mac",
                        help="count integer (non-binary) inputs as MACs (default) or as repeated ACs")
    parser.add_argument("--repeated-input-once", action="store_true",
                        help="count a layer whose input is the same at every step (direct-encoded stem) once")
    parser.add_argument("--e-mac", type=float, default=None, help="pJ per MAC (default 4.6, 45 nm)")
    parser.add_argument("--e-ac", type=float, default=None, help="pJ per AC (default 0.9, 45 nm)")
    parser.add_argument("--sram-pj", type=float, default=None,
                        help="pJ per 64-bit SRAM access for the memory-aware estimate (default 20, 32 KB)")
    parser.add_argument("--no-neurons", action="store_true", help="omit the spiking-layer rows")


def _load_run(path: Path, args: argparse.Namespace):
    try:
        from spikevision.train import checkpoint as ckpt  # written by the training part
    except ImportError:
        raise SystemExit(
            f"{path} is a directory, but loading run directories needs spikevision.train.checkpoint, which this "
            "installation does not have yet; profile a registered model name instead (see `spikevision models`)"
        ) from None
    loader = getattr(ckpt, "load_model_from_run", None)
    if loader is None:
        raise SystemExit(f"spikevision.train.checkpoint has no load_model_from_run(); cannot profile the run {path}")
    return loader(path)


def _random_input(model, info_input, args: argparse.Namespace):
    import torch

    gen = torch.Generator().manual_seed(args.seed)
    size = tuple(args.input_size) if args.input_size else tuple(info_input)
    T = getattr(model, "T", None) or args.T or 1
    image = torch.randn(args.batch_size, *size, generator=gen)
    try:
        with torch.no_grad():
            model.eval()(image[:1])
        return image, "random N(0,1) images"
    except ValueError:
        frames = (torch.rand(T, args.batch_size, *size, generator=gen) < 0.1).float()
        return frames, "random Bernoulli(0.1) event frames"


def run(args: argparse.Namespace) -> int:
    import torch

    from spikevision.analysis import EnergyModel, MemoryEnergyModel, format_profile, profile_model
    from spikevision.models import create_model, get_model_info

    if args.batch_size < 1:
        raise SystemExit(f"--batch-size must be >= 1, got {args.batch_size}")
    torch.manual_seed(args.seed)
    target = Path(args.target)
    if target.is_dir():
        model = _load_run(target, args)
        input_size = getattr(model, "input_size", None) or args.input_size
        if input_size is None:
            raise SystemExit("the run does not record its input size; pass --input-size C H W")
        name = str(target)
    else:
        info = get_model_info(args.target)
        model = create_model(args.target, T=args.T, num_classes=args.num_classes,
                             **({"in_chans": args.input_size[0]} if args.input_size else {}))
        input_size, name = info.input_size, info.name
    energy = EnergyModel(**{k: v for k, v in (("e_mac_pj", args.e_mac), ("e_ac_pj", args.e_ac)) if v is not None})
    memory = MemoryEnergyModel(compute=energy, **({"e_word_pj": args.sram_pj} if args.sram_pj is not None else {}))
    x, kind = _random_input(model, input_size, args)
    prof = profile_model(model, x, integer_inputs=args.integer_inputs,
                         repeated_input_once=args.repeated_input_once, energy=energy, memory_energy=memory)
    print(f"# {name}: input {list(x.shape)} ({kind}, seed {args.seed}), T={prof.T}, "
          f"untrained weights unless a run directory was given")
    print(format_profile(prof, show_neurons=not args.no_neurons))
    return 0
