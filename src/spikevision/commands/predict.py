"""``spikevision predict IMAGE... --model NAME [--pretrained TAG] | [--run] RUN``: classify images.

Each ``IMAGE`` is a picture Pillow reads (PNG, JPEG, ...) or an IDX file of images
(``t10k-images-idx3-ubyte.gz``: every image in it, ``--limit`` the first N). The model
is shipped weights (``--model ms_resnet_mini --pretrained fashion_mnist``; the tag may be
left out when the model has one), a training run or checkpoint, or a folder written by
``spikevision.save_pretrained`` (``--run RUN``, or RUN among the arguments: the one folder or ``.pt``
file there). Images go through the model's eval
preprocessing (:func:`spikevision.create_transform`: its channels, size, mean and std),
so a picture in any mode or size is accepted; the model only knows its data set, though
(Fashion-MNIST: one centred object, light on black).

Prints the top ``--top`` classes with their probabilities per image, or with ``--json``
one JSON document: ``{"model": ..., "predictions": [{"image": ..., "top": [{"class",
"index", "probability"}, ...]}, ...]}``. Problems are one line ``spikevision predict: ...``
(exit statuses: :mod:`spikevision.commands`).

Examples::

    spikevision predict shirt.png --model ms_resnet_mini --pretrained fashion_mnist
    spikevision predict /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --limit 5 \\
        --model ms_resnet_mini --json
    spikevision predict shirt.png --run runs/quickstart
    spikevision predict shirt.png runs/quickstart
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from spikevision.commands import EXIT_USAGE, positive_int, report_error, user_errors

BATCH = 256  # images per forward pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files (PNG, JPEG, ...) or IDX image files; a folder or .pt among them is the RUN")
    parser.add_argument("--model", default=None, help="registered model name with shipped weights (ms_resnet_mini)")
    parser.add_argument("--pretrained", default=None,
                        help="tag of the shipped weights (fashion_mnist; default: the model's only tag)")
    parser.add_argument("--run", default=None,
                        help="a run directory, checkpoint .pt, or folder written by spikevision.save_pretrained")
    parser.add_argument("--top", type=positive_int, default=3, help="classes shown per image (default 3)")
    parser.add_argument("--limit", type=positive_int, default=None, help="IDX files: the first N images only")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")


def _load_model(args: argparse.Namespace):
    """(model in eval mode, its PretrainedCfg, a description) from ``--model``/``--pretrained`` or ``--run``."""
    from spikevision.hub import CONFIG_FILE, from_pretrained
    from spikevision.models import create_model
    from spikevision.pretrained import pretrained_cfg_from_card

    if args.run is None:
        model = create_model(args.model, pretrained=args.pretrained or True)
        return model.eval(), model.pretrained_cfg, f"{args.model} pretrained={model.pretrained_cfg.tag}"
    run = Path(args.run)
    if (run / CONFIG_FILE).is_file():
        model = from_pretrained(run)
        if model.pretrained_cfg is None:
            raise ValueError(f"{run} does not say which data set its model was trained on, so its preprocessing "
                             "is unknown; save it with a card that names the data set")
        return model.eval(), model.pretrained_cfg, str(run)
    from spikevision.train.checkpoint import load_run

    loaded = load_run(run)
    data = dict(loaded.config.get("data") or {})
    card = {"model": loaded.name, "tag": None, "model_kwargs": loaded.kwargs, "dataset": data.get("name"),
            "T": getattr(loaded.model, "T", None), "config": {"data": data}}
    return loaded.model.eval(), pretrained_cfg_from_card(card), str(loaded.path)


def _read_images(paths: list[str], limit: int | None) -> list[tuple[str, Any]]:
    """``(label, PIL image)`` for each picture, and for each image of each IDX file (``file[i]``)."""
    from PIL import Image, UnidentifiedImageError

    from spikevision.data.idx import read_idx

    out: list[tuple[str, Any]] = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"{p}: no such image file")
        if "idx" in path.name:
            arr = read_idx(path)
            if arr.ndim not in (3, 4) or arr.dtype.name != "uint8":
                raise ValueError(f"{p} holds {arr.dtype.name} of shape {list(arr.shape)}, not uint8 images "
                                 "[N, H, W] (an IDX labels file?)")
            out += [(f"{p}[{i}]", Image.fromarray(a)) for i, a in enumerate(arr[:limit])]
            continue
        try:
            with Image.open(path) as img:
                img.load()
                out.append((p, img.copy()))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"cannot read {p} as an image (PNG, JPEG, ... or an IDX file): {e}") from None
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from spikevision.pretrained import create_transform

    runs = [p for p in args.images if Path(p).is_dir() or p.endswith(".pt")]
    if runs and args.run is None and args.model is None and len(runs) == 1:  # `predict IMAGE... RUN`
        args.run, args.images = runs[0], [p for p in args.images if p != runs[0]]
        if not args.images:
            return report_error("predict", f"no image to classify with {runs[0]}; give image files too", EXIT_USAGE)
    if (args.run is None) == (args.model is None):
        return report_error("predict", "give the model: --model NAME [--pretrained TAG] (shipped weights) or "
                                       "--run RUN (a run, checkpoint or saved folder), not both", EXIT_USAGE)
    if args.pretrained is not None and args.run is not None:
        return report_error("predict", "--pretrained goes with --model, not --run", EXIT_USAGE)
    with user_errors("predict"):
        model, cfg, described = _load_model(args)
        images = _read_images(args.images, args.limit)
        transform = create_transform(cfg)
        x = torch.stack([transform(img) for _, img in images])
    with torch.no_grad():
        probs = torch.cat([model(x[i:i + BATCH]).softmax(-1) for i in range(0, len(x), BATCH)])
    k = min(args.top, probs.shape[-1])
    top_p, top_i = probs.topk(k, dim=-1)
    names = cfg.class_names
    results = [{"image": label, "top": [{"class": names[int(i)] if int(i) < len(names) else str(int(i)),
                                         "index": int(i), "probability": round(float(p), 4)}
                                        for p, i in zip(ps, idx)]}
               for (label, _), ps, idx in zip(images, top_p, top_i)]
    if args.json:
        print(json.dumps({"model": described, "predictions": results}, indent=1))
        return 0
    print(f"model {described} ({cfg.dataset}, T={getattr(model, 'T', cfg.T)})")
    for r in results:
        print(f"{r['image']}: " + ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in r["top"]))
    return 0
