"""``spikevision deploy SOURCE``: integer model, MFI audit and float-vs-integer agreement.

SOURCE is a run directory (its best/last checkpoint and data config), a
checkpoint ``.pt``, a ``.safetensors`` weights file, or a registered model name
(random weights unless ``--weights``). Writes, into ``RUN_DIR/deploy/`` (or
``--out``):

* ``integer_model.safetensors``: the engine's integer weights, biases and
  constants (metadata: model name, kwargs, engine config);
* ``audit.md`` / ``audit.json``: the MFI audit table;
* ``agreement.json``: top-1 agreement of the integer and float models on the
  test set and both accuracies (when a data set is known).

Examples::

    spikevision deploy runs/quickstart
    spikevision deploy runs/quickstart --limit 2000 --leak shift_add
    spikevision deploy mlp_spe_mini --data fashion_mnist --limit 500
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="run directory, checkpoint .pt, weights .safetensors, or a model name")
    parser.add_argument("--weights", default=None, help="weights for a model name (.safetensors or state-dict .pt)")
    parser.add_argument("--model-kwargs", default="{}", help='JSON builder kwargs for a model name, e.g. \'{"T": 4}\'')
    parser.add_argument("--data", default=None, help="data set for the agreement check (default: the run's)")
    parser.add_argument("--data-root", default=None, help="folder of the data set files")
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most N test images (default: all)")
    parser.add_argument("--batch-size", type=int, default=250, help="evaluation batch size (default 250)")
    parser.add_argument("--audit-batch", type=int, default=16, help="images used for the audit's op counts")
    parser.add_argument("--weight-bits", type=int, default=16, help="signed bits per weight (default 16)")
    parser.add_argument("--frac-bits", type=int, default=24, help="fixed-point fraction bits (default 24)")
    parser.add_argument("--leak", choices=("mul", "shift_add"), default="mul",
                        help="non-power-of-two leaks: exact multiply (default) or shift-add approximation")
    parser.add_argument("--out", default=None, help="output folder (default RUN_DIR/deploy or deploy/<model>)")


def _loader(src, args):
    """(test loader or None, description)."""
    import dataclasses

    from spikevision.data import DataConfig, build_loader

    data = src.data
    if args.data is not None:
        data = DataConfig(name=args.data, root=args.data_root)
    elif data is not None and args.data_root is not None:
        data = dataclasses.replace(data, root=args.data_root)
    if data is None:
        return None, "no data set (pass --data to measure agreement)"
    data = dataclasses.replace(data, eval_batch_size=args.batch_size, device="cpu", num_workers=0)
    return build_loader(data, "test"), data.name


def run(args: argparse.Namespace) -> int:
    import torch

    from spikevision.deploy.audit import audit_model, compare_models
    from spikevision.deploy.engine import EngineConfig, compile_integer
    from spikevision.deploy.source import example_input, load_source
    from spikevision.deploy.weights import save_weights

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    cfg = EngineConfig(weight_bits=args.weight_bits, frac_bits=args.frac_bits, leak=args.leak)
    src = load_source(args.source, args.weights, json.loads(args.model_kwargs))
    loader, data_name = _loader(src, args)
    if loader is not None:
        x0, _ = next(iter(loader))
        example = x0[: args.audit_batch]
    else:
        example = example_input(src, args.audit_batch)
    out = Path(args.out) if args.out else (src.run_dir / "deploy" if src.run_dir else Path("deploy") / str(src.name))

    log.info("model %s from %s", src.name, src.origin)
    with torch.no_grad():
        im = compile_integer(src.model, example[:2], cfg)
        report = audit_model(src.model, example, cfg, integer_model=im)
        agreement = None
        if loader is not None:
            start = time.perf_counter()
            agreement = compare_models(src.model, im, loader, limit=args.limit)
            agreement["seconds"] = round(time.perf_counter() - start, 1)
            agreement["data"] = data_name

    out.mkdir(parents=True, exist_ok=True)
    extra = {"engine": report.config, "folded": report.folded, "opaque": im.opaque}
    save_weights(im, out / "integer_model.safetensors", model_name=src.name, model_kwargs=src.kwargs,
                 kind="integer", extra=extra)
    (out / "audit.md").write_text(f"# MFI audit: {src.name}\n\nSource: {src.origin}\n\n" + report.to_markdown())
    (out / "audit.json").write_text(report.to_json())
    if agreement is not None:
        (out / "agreement.json").write_text(json.dumps(agreement, indent=2))

    print(report.to_markdown())
    if agreement is not None:
        print(f"agreement on {agreement['samples']} {data_name} test images: {agreement['agreement']:.2%} "
              f"(float top-1 {agreement['float_accuracy']:.2%}, integer top-1 {agreement['integer_accuracy']:.2%}; "
              f"{agreement['seconds']} s)")
    else:
        print(f"agreement: not measured ({data_name})")
    print(f"wrote {out}/integer_model.safetensors, audit.md, audit.json" + (", agreement.json" if agreement else ""))
    return 0
