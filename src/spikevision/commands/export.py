"""``spikevision export SOURCE --format nir|safetensors``: write a model for other tools.

* ``--format nir``: a NIR graph (HDF5) with BN folded, residual sums as
  edges and LIF neurons mapped by forward Euler (``--dt`` seconds per step);
  layers NIR cannot express are refused, naming the layer, before anything is
  written. See docs/deploy.md.
* ``--format safetensors``: the float weights with the model name and
  kwargs in the metadata (``--fold`` writes the BN-folded weights instead).

Examples::

    spikevision export runs/quickstart --format safetensors -o quickstart.safetensors
    spikevision export ms_resnet20 --format nir -o ms_resnet20.nir
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="run directory, checkpoint .pt, weights .safetensors, or a model name")
    parser.add_argument("--format", choices=("nir", "safetensors"), required=True)
    parser.add_argument("-o", "--output", required=True, help="output file")
    parser.add_argument("--weights", default=None, help="weights for a model name (.safetensors or state-dict .pt)")
    parser.add_argument("--model-kwargs", default="{}", help='JSON builder kwargs for a model name, e.g. \'{"T": 4}\'')
    parser.add_argument("--dt", type=float, default=1e-3, help="NIR: seconds per time step (default 1e-3)")
    parser.add_argument("--fold", action="store_true", help="safetensors: write BN-folded weights")


def run(args: argparse.Namespace) -> int:
    import torch

    from spikevision.deploy.source import example_input, load_source

    src = load_source(args.source, args.weights, json.loads(args.model_kwargs))
    out = Path(args.output)
    example = example_input(src, 1)
    if args.format == "nir":
        from spikevision.deploy.nir_export import NIRExportError, export_nir

        try:
            graph = export_nir(src.model, example, out, dt=args.dt,
                               metadata={"model_name": src.name or "", "model_kwargs": json.dumps(src.kwargs)})
        except NIRExportError as e:  # the model is fine, NIR cannot express it: say where, write nothing
            print(f"error: cannot export {src.name} to NIR: {e}", file=sys.stderr)
            return 2
        print(f"wrote {out}: {len(graph.nodes)} NIR nodes, {len(graph.edges)} edges, dt={args.dt} s")
        return 0
    from spikevision.deploy.fold import fold_bn
    from spikevision.deploy.weights import save_weights

    model, kind = src.model, "float"
    if args.fold:
        with torch.no_grad():
            model, _ = fold_bn(src.model, example)
        kind = "folded"
    save_weights(model, out, model_name=src.name, model_kwargs=src.kwargs, kind=kind)
    print(f"wrote {out} ({kind} weights of {src.name})")
    return 0
