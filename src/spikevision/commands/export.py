"""``spikevision export SOURCE --format nir|safetensors|pretrained|c|onnx``: write a model for other tools.

* ``--format nir``: a NIR graph (HDF5) with BN folded, residual sums as
  edges and LIF neurons mapped by forward Euler (``--dt`` seconds per step);
  layers NIR cannot express are refused, naming the layer, before anything is
  written. See docs/deploy.md.
* ``--format safetensors``: the float weights with the model name and
  kwargs in the metadata (``--fold`` writes the BN-folded weights instead;
  ``--dtype float16`` stores them at half the size).
* ``--format pretrained`` (a run directory only): ``<model>.<tag>.safetensors``
  and its model card ``<model>.<tag>.json`` in the folder ``-o``, the card
  measured on the whole test set (:func:`spikevision.analysis.card.build_card`).
  With ``-o src/spikevision/weights`` the weights ship with the package and
  load with ``create_model(name, pretrained=tag)``. ``--dtype float16`` stores
  them at half the size; the card's accuracy is then that of the rounded weights.
  ``--seed-runs RUN2 RUN3`` adds the final-epoch accuracy of the same recipe's runs with other seeds
  (the card's ``seeds``: each seed's, their mean and standard deviation).
* ``--format c``: a standalone C99 library in the folder ``-o``: ``<name>.h``, ``<name>.c`` (integer
  inference, const weights, static buffers, no heap, no floating point) and an example ``main.c``
  reading raw images from stdin (:mod:`spikevision.deploy.targets.c.export`). Prints flash and RAM in bytes;
  refuses, naming the layer, what the C target cannot express.

* ``--format onnx``: an ONNX graph (batch dynamic) through ``torch.onnx``'s dynamo exporter, kept only if
  ONNX Runtime agrees with PyTorch on sample inputs (:mod:`spikevision.deploy.targets.onnx`; needs
  ``pip install '.[onnx]'``).

The output is checked for writing before any work. Exit statuses (as every command,
:mod:`spikevision.commands`): 1 for a source that cannot be read or rebuilt and for a
model the target cannot express (nothing written), 2 for invalid options.

Examples::

    spikevision export runs/quickstart --format safetensors -o quickstart.safetensors
    spikevision export ms_resnet20 --format nir -o ms_resnet20.nir
    spikevision export runs/ms_resnet_mini_fashion_mnist --format pretrained --tag fashion_mnist \
        --recipe configs/ms_resnet_mini_fashion_mnist.yaml -o src/spikevision/weights
    spikevision export runs/quickstart --format c -o quickstart_c --name quickstart
    spikevision export mlp_spe_mini --pretrained fashion_mnist --format c -o mlp_c
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from spikevision.commands import EXIT_USAGE, check_writable, json_object, report_error, user_errors

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="run directory, checkpoint .pt, weights .safetensors, or a model name")
    parser.add_argument("--format", choices=("nir", "safetensors", "pretrained", "c", "onnx"), required=True)
    parser.add_argument("-o", "--output", required=True, help="output file (pretrained, c: output folder)")
    parser.add_argument("--tag", default=None, help="pretrained: what the weights are called by (fashion_mnist)")
    parser.add_argument("--recipe", default=None, help="pretrained: the recipe file the run was trained from")
    parser.add_argument("--seed-runs", nargs="+", default=[], metavar="RUN",
                        help="pretrained: finished runs of the same recipe with other seeds; the card gets each "
                             "seed's final-epoch test top-1, their mean and standard deviation")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="last",
                        help="pretrained: which checkpoint of the run (default last: the final epoch)")
    parser.add_argument("--weights", default=None, help="weights for a model name (.safetensors or state-dict .pt)")
    parser.add_argument("--pretrained", default=None, metavar="TAG",
                        help="a model name's weights shipped with spikevision (e.g. fashion_mnist), with its card's "
                             "preprocessing")
    parser.add_argument("--model-kwargs", type=json_object, default={},
                        help='JSON builder kwargs for a model name, e.g. \'{"T": 4}\'')
    parser.add_argument("--dt", type=float, default=1e-4,
                        help="NIR: seconds per time step (default 1e-4, what snnTorch and SpikingJelly read with)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                        help="safetensors, pretrained: store floating-point tensors in this dtype (float16 "
                             "halves the file; a pretrained card measures the stored weights)")
    parser.add_argument("--fold", action="store_true", help="safetensors: write BN-folded weights")
    parser.add_argument("--name", default=None, help="c: C identifier prefix (default: the model name)")
    parser.add_argument("--weight-bits", type=int, default=None,
                        help="c: signed bits per weight, 2-24, stored as int8/int16/int32 (default: the shipped "
                             "model card's verified deploy.weight_bits, else 16)")
    parser.add_argument("--frac-bits", type=int, default=24, help="c: fixed-point fraction bits (default 24)")
    parser.add_argument("--leak", choices=("mul", "shift_add"), default="mul",
                        help="c: non-power-of-two leaks: integer multiply (default) or shift-add")


def _export_pretrained(args: argparse.Namespace) -> int:
    from spikevision.analysis.card import add_seed_runs, build_card
    from spikevision.deploy.weights import STORAGE_DTYPES, save_weights

    if not args.tag or not args.tag.replace("_", "").isalnum():
        return report_error("export", "--format pretrained needs --tag NAME (letters, digits, _), "
                                      "e.g. --tag fashion_mnist", EXIT_USAGE)
    if Path(args.source).is_file():
        return report_error("export", f"--format pretrained needs a run directory, got the file {args.source}",
                            EXIT_USAGE)
    missing = [run for run in args.seed_runs if not Path(run).is_dir()]
    if missing:
        return report_error("export", f"--seed-runs: {missing[0]} is not a run directory")
    out = Path(args.output)
    check_writable("export", out / f"{args.tag}.json")
    try:
        model, card = build_card(args.source, args.tag, which=args.checkpoint, recipe=args.recipe, dtype=args.dtype)
        if args.seed_runs:
            card = add_seed_runs(card, args.seed_runs)
    except (OSError, ValueError) as e:
        return report_error("export", str(e))
    weights, card_file = out / f"{card['model']}.{args.tag}.safetensors", out / f"{card['model']}.{args.tag}.json"
    with user_errors("export", f"cannot write into {out}"):
        save_weights(model, weights, model_name=card["model"], model_kwargs=card["model_kwargs"],
                     dtype=STORAGE_DTYPES[args.dtype])
        tmp = card_file.with_name(card_file.name + ".tmp")
        tmp.write_text(json.dumps(card, indent=1) + "\n")
        tmp.replace(card_file)
    size = weights.stat().st_size
    print(f"wrote {weights} ({size / 1e6:.2f} MB) and {card_file}: test top-1 {card['test_top1']:.2f}% "
          f"on {card['test_samples']} images, T={card['T']}, firing rate {card['firing_rate']:.3f}, "
          f"{card['energy_uj']:.3g} uJ per image")
    return 0


def _export_c(args: argparse.Namespace, src) -> int:
    from spikevision.deploy.targets.c.export import CExportError, export_c
    from spikevision.deploy.engine import EngineConfig
    from spikevision.deploy.source import example_input, resolve_weight_bits
    from spikevision.deploy.targets.c.export import check_c_name

    name = args.name or (src.name or "snn")
    try:
        check_c_name(name)
    except ValueError as e:
        return report_error("export", f"--name: {e}", EXIT_USAGE)
    check_writable("export", Path(args.output) / f"{name}.c")
    mean = std = None
    example = example_input(src, 16)
    if src.data is not None:  # the run's normalisation, and real test images for the audit
        import dataclasses

        from spikevision.data import build_loader
        from spikevision.data.transforms import resolve_mean_std

        mean, std = resolve_mean_std(src.data)
        try:
            data = dataclasses.replace(src.data, eval_batch_size=16, device="cpu", num_workers=0)
            example = next(iter(build_loader(data, "test")))[0]
        except (FileNotFoundError, ValueError) as e:
            log.warning("no test images for the audit (%s); auditing a zero image", e)
    bits = resolve_weight_bits(args.weight_bits, src)
    try:
        cfg = EngineConfig(weight_bits=bits, frac_bits=args.frac_bits, leak=args.leak)
    except ValueError as e:  # --weight-bits / --frac-bits out of range
        return report_error("export", str(e), EXIT_USAGE)
    try:
        exp = export_c(src.model, example, args.output, name=name, cfg=cfg, mean=mean, std=std,
                       header_lines=[f"Model: {src.name} from {src.origin}."])
    except CExportError as e:  # the model is fine, the C target cannot express it: say where, write nothing
        return report_error("export", f"cannot export {src.name} to C: {e}")
    except OSError as e:
        return report_error("export", f"cannot write into {args.output}: {e}")
    mfi = sum(ok for _, _, ok in exp.layers)
    print(f"wrote {', '.join(str(f) for f in exp.files)}")
    print(f"flash {exp.flash_bytes:,} bytes (weights {exp.weight_bytes:,}, int{bits}), "
          f"RAM {exp.ram_bytes:,} bytes (static state); {mfi} of {len(exp.layers)} layers "
          "multiplication-free")
    print(f"build: cc -std=c99 -O2 -o {name} {args.output}/main.c {args.output}/{name}.c")
    return 0


def run(args: argparse.Namespace) -> int:
    import torch

    from spikevision.deploy.source import example_input, load_source

    if args.format == "pretrained":
        return _export_pretrained(args)
    if args.dtype != "float32" and args.format in ("nir", "c", "onnx"):
        return report_error("export", f"--dtype {args.dtype} is for --format safetensors or pretrained; "
                                      f"--format {args.format} has its own number format", EXIT_USAGE)
    if args.seed_runs:
        return report_error("export", "--seed-runs is for --format pretrained (it adds to the model card)",
                            EXIT_USAGE)

    if not str(args.output).strip():
        return report_error("export", "-o is empty; name the output file or folder", EXIT_USAGE)
    with user_errors("export"):
        src = load_source(args.source, args.weights, args.model_kwargs, pretrained=args.pretrained)
    if args.format == "c":
        return _export_c(args, src)
    out = Path(args.output)
    check_writable("export", out)
    example = example_input(src, 1)
    if args.format == "nir":
        from spikevision.deploy.targets.nir import NIRExportError, export_nir

        try:
            graph = export_nir(src.model, example, out, dt=args.dt,
                               metadata={"model_name": src.name or "", "model_kwargs": json.dumps(src.kwargs)})
        except NIRExportError as e:  # the model is fine, NIR cannot express it: say where, write nothing
            return report_error("export", f"cannot export {src.name} to NIR: {e}")
        except OSError as e:
            return report_error("export", f"cannot write {out}: {e}")
        except ModuleNotFoundError as e:
            if e.name != "nir":
                raise
            return report_error("export", "--format nir needs the nir package: pip install 'spikevision[deploy]'")
        print(f"wrote {out}: {len(graph.nodes)} NIR nodes, {len(graph.edges)} edges, dt={args.dt} s")
        return 0
    if args.format == "onnx":
        from spikevision.deploy.targets.onnx import ONNXExportError, export_onnx

        try:
            res = export_onnx(src.model, example, out)
        except ONNXExportError as e:  # untraceable, a missing package, or a graph that disagrees: nothing written
            return report_error("export", f"cannot export {src.name} to ONNX: {e}")
        except OSError as e:
            return report_error("export", f"cannot write {out}: {e}")
        print(f"wrote {out}: input {res.input_name!r} (batch size dynamic), opset {res.opset}; ONNX Runtime agrees "
              f"with PyTorch on batches of {', '.join(str(b[0]) for b in res.checked_batches)} "
              f"(largest logit difference {res.max_abs_diff:.2g})")
        return 0
    from spikevision.deploy.engine.fold import fold_bn
    from spikevision.deploy.weights import STORAGE_DTYPES, save_weights

    model, kind = src.model, "float"
    if args.fold:
        with torch.no_grad():
            model, _ = fold_bn(src.model, example)
        kind = "folded"
    with user_errors("export", f"cannot write {out}"):
        save_weights(model, out, model_name=src.name, model_kwargs=src.kwargs, kind=kind,
                     dtype=STORAGE_DTYPES[args.dtype])
    print(f"wrote {out} ({kind} weights of {src.name})")
    return 0
