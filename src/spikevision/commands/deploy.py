"""``spikevision deploy SOURCE``: integer model, MFI audit and float-vs-integer agreement.

SOURCE is a run directory (its best/last checkpoint and data config), a
checkpoint ``.pt``, a ``.safetensors`` weights file, or a registered model name
(random weights unless ``--weights``, or the weights shipped with spikevision with
``--pretrained TAG``, which bring their card's data set and preprocessing). Writes,
into ``RUN_DIR/deploy/`` (or ``--out``):

* ``integer_model.safetensors``: the engine's integer weights, biases and
  constants (metadata: model name, kwargs, engine config);
* ``audit.md`` / ``audit.json``: the MFI audit table;
* ``agreement.json``: top-1 agreement of the integer and float models on the
  test set and both accuracies (when a data set is known).

The agreement over the test set is measured with the native event-driven runtime (the
model's C code compiled for this CPU, :mod:`spikevision.deploy.targets.native`) when a C
compiler exists (``--runtime auto``, the default, or ``native``): it first checks that the
runtime's logits equal the Python engine's (the reference) bit for bit on ``--check``
test images, then measures agreement over the test set and the speed of the runtime next
to the dense float model (batch 1 and batch 64, same threads), and writes
``native.json``. ``--runtime python`` measures everything with the Python engine
(minutes for 10,000 images, where the runtime needs seconds). With ``auto``, a model the
runtime cannot express or a missing compiler falls back to the Python engine with a
warning; with ``native`` it is a one-line error.

The output folder is checked for writing before any work; progress of the agreement
measurement goes to stderr (:func:`spikevision.commands.progress`); a problem with the
source, the data or the output folder is one line ``spikevision deploy: ...`` (exit
statuses: :mod:`spikevision.commands`).

Examples::

    spikevision deploy runs/quickstart
    spikevision deploy runs/quickstart --limit 2000 --leak shift_add
    spikevision deploy mlp_spe_mini --dataset fashion_mnist --limit 500
    spikevision deploy ms_resnet_mini --pretrained fashion_mnist
    spikevision deploy runs/quickstart --runtime python --limit 1000
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

from spikevision.commands import (EXIT_USAGE, DeprecatedAlias, check_writable, json_object, positive_int, progress,
                                  report_error, user_errors)

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="run directory, checkpoint .pt, weights .safetensors, or a model name")
    parser.add_argument("--weights", default=None, help="weights for a model name (.safetensors or state-dict .pt)")
    parser.add_argument("--pretrained", default=None, metavar="TAG",
                        help="a model name's weights shipped with spikevision (e.g. fashion_mnist)")
    parser.add_argument("--model-kwargs", type=json_object, default={},
                        help='JSON builder kwargs for a model name, e.g. \'{"T": 4}\'')
    dataset = parser.add_argument("--dataset", default=None, metavar="NAME",
                                  help="data set for the agreement check (default: the run's), e.g. fashion_mnist")
    parser.add_argument("--data", action=DeprecatedAlias, target=dataset)
    parser.add_argument("--data-root", default=None, help="folder of the data set files")
    parser.add_argument("--limit", type=positive_int, default=None, help="evaluate at most N test images (default: all)")
    parser.add_argument("--batch-size", type=positive_int, default=250, help="evaluation batch size (default 250)")
    parser.add_argument("--audit-batch", type=positive_int, default=16, help="images used for the audit's op counts")
    parser.add_argument("--weight-bits", type=int, default=None,
                        help="signed bits per weight, 2-24 (default: the shipped model card's verified "
                             "deploy.weight_bits, else 16)")
    parser.add_argument("--frac-bits", type=int, default=24, help="fixed-point fraction bits (default 24)")
    parser.add_argument("--leak", choices=("mul", "shift_add"), default="mul",
                        help="non-power-of-two leaks: exact multiply (default) or shift-add approximation")
    parser.add_argument("--out", default=None, help="output folder (default RUN_DIR/deploy or deploy/<model>)")
    parser.add_argument("--runtime", choices=("auto", "native", "python"), default="auto",
                        help="measure agreement with the native C runtime (auto: when a C compiler exists; the "
                             "default) or the Python integer engine (the reference; slow)")
    parser.add_argument("--check", type=positive_int, default=256,
                        help="native: images on which the runtime must equal the Python engine bit for bit")


def _timed(fn, x, reps: int = 7) -> float:
    """Median seconds of ``fn(x)`` after one warm-up call."""
    fn(x)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _agreement(float_model, model, loader, args: argparse.Namespace, runtime: str) -> dict:
    """Top-1 agreement of ``model`` with the float model over the test set (``--limit`` images), progress on stderr."""
    from spikevision.deploy.audit import compare_models

    total = len(loader)
    if args.limit is not None:
        total = min(total, math.ceil(args.limit / args.batch_size))
    start = time.perf_counter()
    result = compare_models(float_model, model, progress(loader, total, f"deploy: agreement ({runtime})"),
                            limit=args.limit)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def _sample_images(loader, example, n: int):
    """At least ``n`` test inputs (or the example batch when there is no data set), batch-first or time-major
    like the loader's batches."""
    import torch

    from spikevision.deploy.engine.trace import batch_size

    if loader is None:
        return example
    chunks, have = [], 0
    for x, _ in loader:
        chunks.append(x)
        have += batch_size(x)
        if have >= n:
            break
    return torch.cat(chunks, dim=1 if chunks[0].dim() == 5 else 0)


def _speed(float_model, native, images) -> dict:
    """Median float and native times at batch 1 and 64, side by side."""
    import torch

    from spikevision.deploy.engine.trace import batch_head, batch_size

    speed = {}
    with torch.no_grad():
        for batch in (1, 64):
            xb = images
            while batch_size(xb) < batch:
                xb = torch.cat([xb, xb], dim=1 if xb.dim() == 5 else 0)
            xb = batch_head(xb, batch)
            t_float, t_native = _timed(float_model, xb), _timed(native, xb)
            speed[str(batch)] = {"float_ms": round(1e3 * t_float, 3), "native_ms": round(1e3 * t_native, 3),
                                 "speedup": round(t_float / t_native, 2)}
    return speed


def _build_native(im, example, args):
    """The native runtime, or None where ``--runtime auto`` falls back to the Python engine (logged)."""
    from spikevision.commands import fail
    from spikevision.deploy.ir import ProgramError
    from spikevision.deploy.targets.native import compile_native

    try:
        return compile_native(im, example)
    except ProgramError as e:
        why = f"the native runtime cannot express this model: {e}"
    except (OSError, RuntimeError) as e:  # no C compiler, or it failed
        why = f"the native runtime could not be built ({' '.join(str(e).split())[:300]})"
    if args.runtime == "native":
        raise fail("deploy", why + "; use --runtime python")
    log.warning("%s; measuring with the Python engine instead (slower)", why)
    return None


def _native(src, im, native, loader, example, args) -> dict:
    """Bit-exactness against the Python engine, agreement with float, and speed of the native runtime."""
    import torch

    from spikevision.deploy.engine.trace import batch_head

    out = {"build_seconds": native.build_seconds, "flash_bytes": native.source.flash_bytes,
           "weight_bytes": native.source.weight_bytes, "ram_bytes_per_thread": native.source.ram_bytes}
    images = _sample_images(loader, example, max(args.check, 64))
    check = batch_head(images, args.check)
    with torch.no_grad():
        exact = torch.equal(native.logits_q(check), im.forward_q(check))
    out["bit_exact"] = {"images": int(check.shape[1] if check.dim() == 5 else check.shape[0]), "equal": exact}
    if not exact:
        raise RuntimeError("the native runtime disagrees with the Python integer engine; please report this "
                           "(spikevision deploy --runtime python still works)")
    if loader is not None:
        out["agreement"] = _agreement(src.model, native, loader, args, "native")
    out["speed"] = _speed(src.model, native, images)
    out["threads"] = torch.get_num_threads()
    return out


def _loader(src, args):
    """(test loader or None, description)."""
    import dataclasses

    from spikevision.data import DataConfig, build_loader

    data = src.data
    if args.dataset is not None:
        data = DataConfig(name=args.dataset, root=args.data_root)
    elif data is not None and args.data_root is not None:
        data = dataclasses.replace(data, root=args.data_root)
    if data is None:
        return None, "no data set (pass --dataset to measure agreement)"
    data = dataclasses.replace(data, eval_batch_size=args.batch_size, device="cpu", num_workers=0)
    return build_loader(data, "test"), data.name


def _print_summary(report, agreement, native, data_name: str, out: Path) -> None:
    print(report.to_markdown())
    if agreement is not None:
        print(f"agreement on {agreement['samples']} {data_name} test images: {agreement['agreement']:.2%} "
              f"(float top-1 {agreement['float_accuracy']:.2%}, integer top-1 {agreement['integer_accuracy']:.2%}; "
              f"{agreement['runtime']} runtime, {agreement['seconds']} s)")
    else:
        print(f"agreement: not measured ({data_name})")
    if native is not None:
        check = native["bit_exact"]
        print(f"native runtime: bit-exact with the Python engine on {check['images']} images; "
              f"flash {native['flash_bytes']:,} bytes (weights {native['weight_bytes']:,}), "
              f"RAM {native['ram_bytes_per_thread']:,} bytes per thread; built in {native['build_seconds']} s")
        for batch, t in native["speed"].items():
            print(f"  batch {batch:>2}: float {t['float_ms']:.2f} ms, native {t['native_ms']:.2f} ms "
                  f"({t['speedup']:.2f}x the float model; {native['threads']} threads)")
    print(f"wrote {out}/integer_model.safetensors, audit.md, audit.json" + (", agreement.json" if agreement else "")
          + (", native.json" if native else ""))


def _write_results(out: Path, src, im, report, agreement, native) -> None:
    import json as _json

    from spikevision.deploy.weights import save_weights

    with user_errors("deploy", f"cannot write the results into {out}"):
        out.mkdir(parents=True, exist_ok=True)
        extra = {"engine": report.config, "folded": report.folded, "opaque": im.opaque}
        save_weights(im, out / "integer_model.safetensors", model_name=src.name, model_kwargs=src.kwargs,
                     kind="integer", extra=extra)
        (out / "audit.md").write_text(f"# MFI audit: {src.name}\n\nSource: {src.origin}\n\n" + report.to_markdown())
        (out / "audit.json").write_text(report.to_json())
        if agreement is not None:
            (out / "agreement.json").write_text(_json.dumps(agreement, indent=2))
        if native is not None:
            (out / "native.json").write_text(_json.dumps(native, indent=2))


def _inputs(src, args):
    """(test loader or None, data set description, audit example batch)."""
    from spikevision.deploy.engine.trace import batch_head
    from spikevision.deploy.source import example_input

    with user_errors("deploy", "cannot load the test data"):
        loader, data_name = _loader(src, args)
        if loader is not None:
            x0, _ = next(iter(loader))
            return loader, data_name, batch_head(x0, args.audit_batch)
    with user_errors("deploy"):
        return None, data_name, example_input(src, args.audit_batch)


def run(args: argparse.Namespace) -> int:
    import torch

    from spikevision.deploy.audit import audit_model
    from spikevision.deploy.engine import EngineConfig, compile_integer
    from spikevision.deploy.engine.trace import batch_head, batch_size
    from spikevision.deploy.source import load_source, resolve_weight_bits

    try:  # checked before loading anything; the card's bits (if any) replace the default below
        EngineConfig(weight_bits=16 if args.weight_bits is None else args.weight_bits, frac_bits=args.frac_bits, leak=args.leak)
    except ValueError as e:  # --weight-bits / --frac-bits out of range
        return report_error("deploy", str(e), EXIT_USAGE)
    with user_errors("deploy"):
        src = load_source(args.source, args.weights, args.model_kwargs, pretrained=args.pretrained)
    cfg = EngineConfig(weight_bits=resolve_weight_bits(args.weight_bits, src), frac_bits=args.frac_bits,
                       leak=args.leak)
    loader, data_name, example = _inputs(src, args)
    out = Path(args.out) if args.out else (src.run_dir / "deploy" if src.run_dir else Path("deploy") / str(src.name))
    check_writable("deploy", out / "audit.json")

    log.info("model %s from %s", src.name, src.origin)
    log.info("compiling the integer model and auditing it on %d inputs", batch_size(example))
    agreement = native = None
    with torch.no_grad(), user_errors("deploy"):
        im = compile_integer(src.model, batch_head(example, 2), cfg)
        report = audit_model(src.model, example, cfg, integer_model=im)
        runtime = _build_native(im, example, args) if args.runtime != "python" else None
        if runtime is not None:
            native = _native(src, im, runtime, loader, example, args)
            agreement = native.pop("agreement", None)
        elif loader is not None:
            agreement = _agreement(src.model, im, loader, args, "python")
        if agreement is not None:
            agreement.update(data=data_name, runtime="native" if runtime is not None else "python")
    _write_results(out, src, im, report, agreement, native)
    _print_summary(report, agreement, native, data_name, out)
    return 0
