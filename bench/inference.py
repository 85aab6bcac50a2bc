"""Inference speed: the native event-driven integer runtime vs the dense float model, side by side.

Contenders, interleaved round by round in one process, same threads, same images:

* ``float``: the model in eval mode, ``torch.no_grad()`` (PyTorch's dense kernels);
* ``float-folded``: the same with BN folded into the preceding conv/linear;
* ``native``: the native runtime (:func:`spikevision.deploy.targets.native.compile_native`): the
  model's integer program as C compiled for this CPU, int16 weights, spike-input layers
  accumulating weight columns over the active inputs only; bit-exact with the Python engine;
* ``native-int8``: the same with int8 weights;
* ``onnxruntime``: the float model exported to ONNX with ``torch.onnx.export(..., dynamo=True)``
  (:func:`spikevision.deploy.targets.onnx.export_onnx`, checked against PyTorch) and run by ONNX Runtime's
  CPU provider with as many intra-op threads as torch (``--threads``), one inter-op thread;
* ``python-engine`` (``--python-engine``): the Python integer engine, the reference (slow).

Each batch size is its own measurement: ``B = 1`` is latency (each timed call classifies
``--images-per-call`` images one at a time), ``B = 64`` throughput (one call, one batch).
A second table gives what each model executes per image: firing rate, accumulations on
spikes (what the event-driven layers execute) vs the float model's dense MACs, MACs left
on analog input (the first layer, projection shortcuts on a real-valued stream), weight bytes (float32, int16, int8) and the runtime's
state (every activation buffer, lifetime-shared, plus accumulators and membranes).

Run::

    python bench/inference.py --pretrained all --threads 1             # the four families' shipped models
    python bench/inference.py --run runs/quickstart                    # a trained run, its test images
    python bench/inference.py --run runs/quickstart --run runs/ms_resnet_mini_fashion_mnist --threads 2
    python bench/inference.py --models spiking_cnn_mini                 # untrained, random images

Agreement: top-1 agreement with the float model on ``--agree`` test images (default 2000).
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor, nn

from common import interleaved_times, machine_lines, markdown_table, median
from spikevision.analysis.monitors import FiringRateMonitor
from spikevision.analysis.synops import SynOpsCounter
from spikevision.deploy.engine import EngineConfig, compile_integer
from spikevision.deploy.engine.fold import fold_bn
from spikevision.deploy.targets.native import compile_native
from spikevision.models import create_model

#: one shipped model per family (``--pretrained all``)
FAMILIES = ("mlp_spe_mini", "ms_resnet_mini", "gac_ms_resnet_mini", "sresnet20")

# (name, kwargs, per-sample input) for the default, untrained models
ZOO = {
    "spiking_cnn_mini": ({}, (1, 28, 28)),
    "ms_resnet20": ({"T": 4}, (3, 32, 32)),
}


def _run_source(run: str, n: int) -> tuple[str, nn.Module, Tensor]:
    from spikevision.data import build_loader
    from spikevision.train.checkpoint import load_run

    try:
        loaded = load_run(run)
        data = loaded.data_config(eval_batch_size=n, device="cpu", num_workers=0)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"{run}: {e}") from None
    x, _ = next(iter(build_loader(data, "test")))
    return f"{loaded.name} ({run})", loaded.model.eval(), x


def _pretrained_source(spec: str, n: int) -> tuple[str, nn.Module, Tensor]:
    """``NAME`` or ``NAME:TAG`` (default tag ``fashion_mnist``): shipped weights and their card's test images."""
    import dataclasses

    from spikevision.data import build_loader
    from spikevision.deploy.source import load_source

    name, _, tag = spec.partition(":")
    try:
        src = load_source(name, pretrained=tag or "fashion_mnist")
        data = dataclasses.replace(src.data, eval_batch_size=n, device="cpu", num_workers=0)
    except (FileNotFoundError, ValueError, TypeError) as e:
        raise SystemExit(f"{spec}: {e}") from None
    x, _ = next(iter(build_loader(data, "test")))
    return f"{name} ({tag or 'fashion_mnist'})", src.model.eval(), x


def _onnx_runtime(model: nn.Module, x: Tensor, folder: str):
    """The float model through the dynamo exporter, run by ONNX Runtime (CPU, torch's thread count)."""
    import onnxruntime as ort

    from spikevision.deploy.targets.onnx import export_onnx

    path = f"{folder}/model.onnx"
    export_onnx(model, x[:2], path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = torch.get_num_threads(), 1
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(batch: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {name: batch.numpy()})[0])
    return run


def _zoo_source(name: str, n: int) -> tuple[str, nn.Module, Tensor]:
    kwargs, shape = ZOO[name]
    torch.manual_seed(0)
    return f"{name} (untrained)", create_model(name, **kwargs).eval(), torch.rand(n, *shape)


def _profile(model: nn.Module, x: Tensor) -> dict[str, float]:
    """Mean firing rate, accumulations on spikes, MACs on analog input and dense MACs per sample on ``x``."""
    with torch.no_grad(), FiringRateMonitor(model) as mon, SynOpsCounter(model) as ops:
        model(x)
    res = ops.result(samples=x.shape[0])
    return {"rate": mon.mean_rate(), "acs": res.totals["acs"], "macs": res.totals.get("macs", 0.0),
            "dense": res.totals["dense_macs"]}


def _caller(fn, x: Tensor, batch: int, per_call: int):
    """One timed unit: ``fn`` on ``per_call`` batches of ``batch`` images (different images)."""
    chunks = [x[i * batch:(i + 1) * batch] for i in range(per_call)]

    def call():
        with torch.no_grad():
            for c in chunks:
                fn(c)
    return call


def bench(label: str, model: nn.Module, x: Tensor, args) -> tuple[list[list[str]], list[str]]:
    folded, _ = fold_bn(model, x[:1])
    contenders: dict[str, nn.Module] = {"float": model, "float-folded": folded}
    if args.onnx:
        contenders["onnxruntime"] = _onnx_runtime(model, x, args.tmp)
    natives = {}
    for name, bits in (("native", 16), ("native-int8", 8)):
        im = compile_integer(model, x[:2], EngineConfig(weight_bits=bits))
        natives[name] = compile_native(im, x)
        contenders[name] = natives[name]
        if bits == 16 and args.python_engine:
            contenders["python-engine"] = im
    agree_x = x[: args.agree]
    with torch.no_grad():
        ref = model(agree_x).argmax(-1)
        agreement = {name: (fn(agree_x).argmax(-1) == ref).float().mean().item() for name, fn in contenders.items()
                     if name != "python-engine"}
        if "python-engine" in contenders:
            n = min(len(agree_x), 256)
            agreement["python-engine"] = (contenders["python-engine"](agree_x[:n]).argmax(-1) == ref[:n]).float()
            agreement["python-engine"] = agreement["python-engine"].mean().item()
    rows = []
    for batch in args.batch:
        per_call = max(1, args.images_per_call // batch)
        calls = {name: _caller(fn, x, batch, per_call) for name, fn in contenders.items()}
        if batch > 1 and "python-engine" in calls:
            calls.pop("python-engine")  # seconds per batch: too slow to interleave at throughput sizes
        times = interleaved_times(calls, reps=args.reps, warmup=args.warmup)
        base = median(times["float"])
        for name, ts in times.items():
            t = median(ts) / (per_call * batch)  # seconds per image
            rows.append([label, name, batch, f"{1000 * t:.3f}", f"{1 / t:.0f}", f"{base / median(ts):.2f}x",
                         f"{100 * agreement[name]:.2f}%"])
    prof = _profile(model, x[: min(64, len(x))])
    n_float = sum(p.numel() for p in model.parameters()) * 4
    src16, src8 = natives["native"].source, natives["native-int8"].source
    info = [label, f"{prof['rate']:.3f}", f"{prof['acs'] / 1e6:.2f}M", f"{prof['macs'] / 1e6:.2f}M",
            f"{prof['dense'] / 1e6:.2f}M", f"{n_float / 1e3:.0f} kB", f"{src16.weight_bytes / 1e3:.0f} kB",
            f"{src8.weight_bytes / 1e3:.0f} kB", f"{src16.ram_bytes / 1e3:.0f} kB"]
    return rows, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", action="append", default=[], help="a trained run directory (repeatable)")
    ap.add_argument("--pretrained", action="append", default=[], metavar="NAME[:TAG]",
                    help="a shipped model (repeatable; 'all': every family's fashion_mnist weights)")
    ap.add_argument("--no-onnx", dest="onnx", action="store_false", help="leave ONNX Runtime out")
    ap.add_argument("--models", nargs="*", default=None, choices=sorted(ZOO),
                    help="untrained zoo models (default: all, unless --run is given)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64], help="batch sizes (default 1 64)")
    ap.add_argument("--images-per-call", type=int, default=64, help="images per timed call (B=1: one at a time)")
    ap.add_argument("--agree", type=int, default=2000, help="test images for the top-1 agreement")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--python-engine", action="store_true", help="also time the Python integer engine (slow)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = max(args.agree, max(args.batch) * max(1, args.images_per_call // max(args.batch)), args.images_per_call)
    import tempfile

    args.tmp = tempfile.mkdtemp(prefix="bench-onnx-")
    sources = [_run_source(r, n) for r in args.run]
    pretrained = [p for spec in args.pretrained for p in (FAMILIES if spec == "all" else [spec])]
    sources += [_pretrained_source(p, n) for p in pretrained]
    models = args.models if args.models is not None else ([] if args.run or pretrained else sorted(ZOO))
    sources += [_zoo_source(m, n) for m in models]
    rows, infos = [], []
    for label, model, x in sources:
        r, info = bench(label, model, x, args)
        rows += r
        infos.append(info)
        print(f"# done: {label}", flush=True)
    print()
    print(markdown_table(["model", "contender", "B", "ms/image", "img/s", "speed x float", "top-1 agreement"], rows))
    print()
    print(markdown_table(["model", "firing rate", "ACs on spikes", "MACs on analog input", "dense MACs (float)",
                          "weights float32", "int16", "int8", "runtime state (RAM)"], infos))
    print()
    print(f"Medians of {args.reps} interleaved rounds after {args.warmup} warm-up, {torch.get_num_threads()} threads; "
          f"B=1: {args.images_per_call} images one at a time per timed call. Per image: firing rate (mean spikes per "
          "neuron per step), accumulations on spike inputs (what the event-driven layers execute), MACs on analog "
          "input (the first layer, and any layer reading a real-valued stream), the float model's dense MACs. Agreement: same class as the float model on "
          f"{min(args.agree, n)} test images.")
    for line in machine_lines("cpu"):
        print(line)


if __name__ == "__main__":
    main()
