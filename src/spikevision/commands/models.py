"""``spikevision models``: the model zoo as a table (name, family, paper, T, input, parameters, shipped weights, MACs).

Models are built on PyTorch's ``meta`` device (shapes only, no memory, no
arithmetic), so listing every ImageNet net needs no memory. The last column
is the dense MACs per time step at the default input size, from one
shape-only forward of batch 1 (an image, or event frames for event models:
the registry's ``modality``) with ``T = 1`` (or the default ``T``, divided
by ``T``, where a model needs more steps, e.g. GAC's temporal attention);
``--no-macs`` skips it (the whole zoo then lists in about 9.5 s instead of
about 27 on an idle 2-core CPU: building the models is the rest).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", default=None, help="only this family (e.g. ms_resnet, spiking_mlp, gac, sresnet)")
    parser.add_argument("--no-macs", dest="macs", action="store_false",
                        help="skip the dense MACs per time step (faster: no shape-only forward passes)")
    parser.add_argument("--weights", action="store_true",
                        help="instead, the shipped weights as a markdown table: accuracy, T, firing rate, energy, "
                             "recipe, budget and protocol, from their model cards")


def _meta_model(name: str, **kwargs):
    import torch

    from spikevision.models import create_model

    with torch.device("meta"):
        return create_model(name, **kwargs)


def model_macs_per_step(info) -> float:
    """Dense MACs per time step at ``info.input_size``, batch 1 (shape-only forward on ``meta``).

    The input is what the model takes (:meth:`ModelInfo.input_shape`): an
    image ``[1, C, H, W]`` or event frames ``[T, 1, C, H, W]``. Tries ``T = 1``,
    then the default ``T``.

    Raises:
        RuntimeError: no input form worked (the last error is chained).
    """
    import torch

    from spikevision.analysis.synops import dense_macs

    last: Exception | None = None
    for T in dict.fromkeys((1, info.T)):
        try:
            model = _meta_model(info.name, T=T).eval()  # eval: batch norm skips its batch statistics (3x faster)
            x = torch.empty(info.input_shape(1, T=T), device="meta")
            return sum(dense_macs(model, x).values()) / T
        except (ValueError, RuntimeError, TypeError, NotImplementedError) as e:
            last = e
    raise RuntimeError(f"could not count MACs of {info.name}: {last}") from last


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def run(args: argparse.Namespace) -> int:
    from spikevision.commands import user_errors
    from spikevision.models import list_models

    if args.weights:
        from spikevision.analysis.card import weights_table

        print(weights_table())
        return 0

    with user_errors("models"):
        infos = list_models(args.family)
    rows = []
    for info in infos:
        try:
            params = _human(sum(p.numel() for p in _meta_model(info.name).parameters()))
        except Exception as e:  # a builder that cannot run on meta: say so in the table, keep listing
            params = f"error: {type(e).__name__}"
        row = [info.name, info.family, info.paper_short, str(info.T), "x".join(map(str, info.input_size)),
               params, ",".join(info.pretrained) or "-"]
        if args.macs:
            try:
                row.append(_human(model_macs_per_step(info)))
            except RuntimeError as e:
                row.append("n/a")
                print(f"# {e}")
        rows.append(row)
    header = ["name", "family", "paper", "T", "input", "params", "weights"] + (["MACs/step"] if args.macs else [])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"{len(rows)} models" + ("; MACs: dense, per time step, batch 1, default input size" if args.macs else "")
          + "; weights: create_model(name, pretrained=<tag>)")
    return 0
