"""``spikevision profile MODEL_or_RUN_DIR``: per-layer firing rates, ACs/MACs and energy, per sample.

Builds the registered model (or loads a run directory's ``best.pt``/``last.pt``
or a checkpoint file with :func:`spikevision.train.checkpoint.load_run`), runs one forward pass on a seeded random
batch of what the model takes (its registry ``modality``: images ``N(0, 1)``;
event models get Bernoulli(0.1) spike frames) at its input size or, with
``--test-batch`` (formerly ``--data``), on the first test batch of
the run's own data set, and prints
:func:`spikevision.analysis.format_profile`: one row per conv/linear layer
(input kind binary/integer/real, input firing rate, dense MACs, ACs, MACs,
energy), one row per spiking layer, totals and the energy conventions.

An untrained model on random input gives the operation counts of that input,
not of a trained network on real data: profile a run directory for those.

Each stage (loading, the forward pass) is announced on stderr; problems are one line
``spikevision profile: ...`` (exit statuses: :mod:`spikevision.commands`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from spikevision.commands import DeprecatedAlias, fail, positive_int, user_errors

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="MODEL_or_RUN_DIR",
                        help="registered model name, run directory (runs/<name>) or checkpoint file (.pt)")
    parser.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), default=None,
                        help="input size (default: the model's)")
    parser.add_argument("--T", type=int, default=None, help="time steps (default: the model's)")
    parser.add_argument("--batch-size", type=positive_int, default=2,
                        help="samples in the random or test batch (default 2)")
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
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="which checkpoint of a run directory (default best, else last)")
    test_batch = parser.add_argument(
        "--test-batch", action="store_true",
        help="profile on the first test batch of the run's data set instead of random input")
    parser.add_argument("--data", action=DeprecatedAlias, target=test_batch)
    parser.add_argument("--data-root", default=None, help="data folder (default: the run's)")


def _data_batch(state: dict, args: argparse.Namespace):
    """The first test batch of the run's own data set (``--test-batch``)."""
    from spikevision.analysis.load import run_test_batches

    with user_errors("profile", "cannot load the run's test data"):
        batches, what = run_test_batches(state, batch_size=args.batch_size, data_root=args.data_root)
    return batches[0][0], what


def _random_input(name: str, kwargs: dict, model, args: argparse.Namespace):
    """A seeded random batch of what the model takes (registry ``modality``), at its input size or ``--input-size``."""
    import torch

    from spikevision.models import get_model_info

    info = get_model_info(name)
    shape = info.input_shape(args.batch_size, T=getattr(model, "T", None) or args.T, model_kwargs=kwargs)
    if args.input_size:
        shape = shape[:-3] + tuple(args.input_size)
    gen = torch.Generator().manual_seed(args.seed)
    if info.modality == "image":
        return torch.randn(shape, generator=gen), "random N(0,1) images"
    return (torch.rand(shape, generator=gen) < 0.1).float(), "random Bernoulli(0.1) event frames"


def run(args: argparse.Namespace) -> int:
    import torch

    from spikevision.analysis import EnergyModel, MemoryEnergyModel, format_profile, profile_model
    from spikevision.models import create_model, get_model_info
    from spikevision.models.arguments import check_model_kwargs
    from spikevision.train import checkpoint as ck

    torch.manual_seed(args.seed)
    state = None
    log.info("profile: loading %s", args.target)
    with user_errors("profile"):
        if Path(args.target).exists() or "/" in args.target or args.target.endswith(".pt"):
            loaded = ck.load_run(args.target, args.checkpoint)
            model, state, model_name, kwargs = loaded.model, loaded.state, loaded.name, loaded.kwargs
            name = f"{loaded.path} ({model_name}, trained {state[ck.STEP_KEY]} steps)"
        else:
            if args.test_batch:
                raise ValueError("--test-batch needs a run directory or checkpoint (it uses the run's saved data "
                                 "config)")
            get_model_info(args.target)  # unknown names raise with the closest matches
            kwargs = {"T": args.T, "num_classes": args.num_classes}
            if args.input_size:
                kwargs["in_chans"] = args.input_size[0]
            problems = check_model_kwargs(args.target, {k: v for k, v in kwargs.items() if v is not None},
                                          batch_size=args.batch_size)
            if problems:  # before anything is allocated (--T 100000 would die in the allocator)
                raise ValueError("; ".join(p.replace("model: ", "", 1).replace("model.", "--", 1) for p in problems))
            try:
                model = create_model(args.target, **kwargs)
            except (TypeError, RuntimeError) as e:
                raise ValueError(f"cannot build {args.target} with T={args.T}, num_classes={args.num_classes}, "
                                 f"input size {args.input_size} ({str(e).splitlines()[0]})") from None
            model_name = name = args.target
    energy = EnergyModel(**{k: v for k, v in (("e_mac_pj", args.e_mac), ("e_ac_pj", args.e_ac)) if v is not None})
    memory = MemoryEnergyModel(compute=energy, **({"e_word_pj": args.sram_pj} if args.sram_pj is not None else {}))
    x, kind = _data_batch(state, args) if args.test_batch else _random_input(model_name, kwargs, model, args)
    log.info("profile: one forward pass of %s on %s %s", model_name, kind, list(x.shape))
    try:
        prof = profile_model(model, x, integer_inputs=args.integer_inputs,
                             repeated_input_once=args.repeated_input_once, energy=energy, memory_energy=memory)
    except (ValueError, RuntimeError) as e:  # an input the model cannot take (its input check, or a shape clash)
        raise fail("profile", f"{model_name} cannot run on input {list(x.shape)} ({str(e).splitlines()[0]}); "
                              "check --input-size") from None
    weights = "trained weights" if state is not None else "untrained weights"
    print(f"# {name}: input {list(x.shape)} ({kind}, seed {args.seed}), T={prof.T}, {weights}")
    print(format_profile(prof, show_neurons=not args.no_neurons))
    return 0
