"""Spiking models on an emulated Cortex-M: flash, RAM, instructions per image, bit-exactness.

Each model is exported as C (:func:`spikevision.deploy.export_c`, what ``spikevision export RUN
--format c`` runs), cross-compiled with the Cortex-M target's start-up code, linker script and
runner (:mod:`spikevision.deploy.targets.cortex_m`) for two QEMU board models, ``mps2-an386``
(Cortex-M4F) and ``mps2-an500`` (Cortex-M7), and run on the first ``--images`` Fashion-MNIST test
images read through semihosting. Per image, the logits the emulated core prints are compared bit
for bit with the Python integer engine (``IntegerModel.forward_q`` on the same quantised input), and
the class with the float model's.

Columns:

* flash: vector table, code, const data (weights and tables) and ``.data`` initialisers of the whole
  ELF (``arm-none-eabi-size -A``); RAM: ``.data + .bss`` (the network's static state and the
  runner's buffers) plus the stack's measured peak (painted at reset, scanned at the end);
* instructions per image: executed instructions counted by QEMU's ``-icount shift=0`` (1 ns of
  virtual time per instruction) through the board's 25 MHz timer, calibrated on a loop of known
  length (resolution 40 instructions). These are an emulator's instruction counts, not a chip's
  timing: QEMU models no caches, flash wait states, pipeline or bus; a real Cortex-M4 needs more
  cycles than instructions for loads and 64-bit arithmetic, a Cortex-M7 can dual-issue;
* audit additions and MACs per image: what the MFI audit counts in the Python engine (on the first 16
  images); dense MACs: the float model's conv/linear MACs at every time step.

Run (about 7 minutes on 2 busy cores, after the quickstart training: about 4 minutes on an idle machine)::

    spikevision train configs/quickstart.yaml run.name=mcu_quickstart run.out_dir=/tmp/mcu_runs
    spikevision train configs/ms_resnet_mini_fashion_mnist.yaml      # the narrow paper model, runs/...
    python bench/mcu.py --quickstart /tmp/mcu_runs/mcu_quickstart --narrow runs/ms_resnet_mini_fashion_mnist \
        --images 100 --out bench/mcu.md

The paper models are the shipped ``ms_resnet_mini`` Fashion-MNIST weights (its wide 64/128/256
variant, 94.45%) and the narrow default (32/64/128), the issue's memory goal: trained by
``configs/ms_resnet_mini_fashion_mnist.yaml`` (``--narrow RUN``); without a run it is built with
random weights for its memory only (two images run, for the stack's depth).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from common import machine_lines, markdown_table
from spikevision.analysis.synops import dense_macs
from spikevision.data.idx import read_idx
from spikevision.deploy import CExport, audit_model, export_c
from spikevision.deploy.engine import EngineConfig
from spikevision.deploy.ir.schedule import step_plan
from spikevision.deploy.targets.c.codegen import generate_c
from spikevision.deploy.targets.c.export import input_lut, lut_images
from spikevision.deploy.targets.cortex_m import BOARDS, DoesNotFitError, build_elf, memory_use, run_elf
from spikevision.models import create_model

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
KIB = 1024
# issue 23's goals: (RAM, flash) in bytes
GOAL_QUICKSTART = (64 * KIB, 128 * KIB)
GOAL_MS_RESNET_MINI = (256 * KIB, 1024 * KIB)
AUDIT_IMAGES = 16
QEMU_TIMEOUT_S = 3600.0  # catches a hang only


@dataclass
class Case:
    """One model to export: its float weights, normalisation, goal, and whether to run images."""

    label: str
    model: nn.Module
    mean: tuple[float, ...]
    std: tuple[float, ...]
    goal: tuple[int, int]
    run_images: bool = True


def test_images(root: Path, n: int) -> tuple[Tensor, Tensor]:
    """The first ``n`` test images ``[n, 1, 28, 28]`` uint8 and their labels."""
    images = read_idx(root / "t10k-images-idx3-ubyte.gz")[:n]
    labels = read_idx(root / "t10k-labels-idx1-ubyte.gz")[:n]
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def trained_case(run_dir: str, label: str, goal: tuple[int, int]) -> Case:
    """A trained run's model with its data normalisation; ``{name}`` in ``label`` is the model's name."""
    from spikevision.data.transforms import resolve_mean_std
    from spikevision.deploy.source import load_source

    src = load_source(run_dir)
    mean, std = resolve_mean_std(src.data)
    return Case(label.format(name=src.name), src.model.eval(), tuple(mean), tuple(std), goal)


def quickstart_case(run_dir: str) -> Case:
    return trained_case(run_dir, f"quickstart `{{name}}` ({Path(run_dir).name})", GOAL_QUICKSTART)


def ms_resnet_mini_cases(narrow_run: str | None) -> list[Case]:
    """The shipped wide model, and the narrow one: trained (``narrow_run``) or random weights for memory only."""
    wide = create_model("ms_resnet_mini", pretrained="fashion_mnist").eval()
    pre = wide.pretrained_cfg.preprocessing
    cases = [Case("`ms_resnet_mini` 64/128/256, pretrained fashion_mnist", wide, pre.mean, pre.std,
                  GOAL_MS_RESNET_MINI)]
    if narrow_run is None:
        torch.manual_seed(0)
        narrow = create_model("ms_resnet_mini", T=2).eval()
        return cases + [Case("`ms_resnet_mini` 32/64/128 (narrow default, random weights: memory only)", narrow,
                             pre.mean, pre.std, GOAL_MS_RESNET_MINI, run_images=False)]
    label = f"`ms_resnet_mini` 32/64/128 (narrow default, trained: {Path(narrow_run).name})"
    return cases + [trained_case(narrow_run, label, GOAL_MS_RESNET_MINI)]


def _version(tool: str) -> str:
    """First line of ``tool --version``."""
    return subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def _kib(n: int) -> str:
    return f"{n / KIB:,.1f}"


def _si(n: float) -> str:
    return f"{n / 1e6:,.2f} M"


def _vs_goal(value: int, goal: int) -> str:
    return "**fits**" if value <= goal else f"{value / goal:.1f}x"


MEMORY_HEADERS = ["model", "weights", "board (core)", "flash KiB", "RAM KiB (stack)", "RAM vs goal",
                  "flash vs goal", "network state KiB (schedule)", "network const KiB", "other schedule's state KiB"]
COST_HEADERS = ["model", "weights", "board (core)", "instructions / image (min-max)", "audit adds / image",
                "audit MACs / image", "dense MACs / image", "bit-exact", "class = float", "top-1", "QEMU s / image"]


def other_schedule_state(exp: CExport, case: Case, bits: int) -> str:
    """The state the schedule the export did not pick would need (layer by layer vs one time step at a time)."""
    other = "steps" if exp.schedule == "layers" else "layers"
    if other == "steps" and step_plan(exp.program).blocker:
        return f"not possible: {step_plan(exp.program).blocker}"
    src = generate_c(exp.program, "snn", bits, lut=input_lut(case.mean, case.std, exp.program.frac_bits),
                     schedule=other)
    return f"{other}: {_kib(src.ram_bytes)}"


def measure(case: Case, bits: int, u8: Tensor, labels: Tensor, out: Path,
            boards: list[str]) -> tuple[list[list[str]], list[list[str]]]:
    """Export ``case`` with ``bits``-bit weights into ``out``, build for each board, run, compare.

    Returns a memory row and (for a model with trained weights) a cost row per board.
    """
    x = lut_images(u8, case.mean, case.std)
    cfg = EngineConfig(weight_bits=bits)
    name = "snn"
    t0 = time.perf_counter()
    exp: CExport = export_c(case.model, x[:AUDIT_IMAGES], out / "c", name=name, cfg=cfg, mean=case.mean,
                            std=case.std)
    print(f"  exported int{bits} in {time.perf_counter() - t0:.0f} s: const {exp.flash_bytes:,} B, "
          f"state {exp.ram_bytes:,} B", file=sys.stderr, flush=True)
    audit = audit_model(case.model, x[:AUDIT_IMAGES], cfg, integer_model=exp.integer_model)
    n_audit = min(AUDIT_IMAGES, len(x))
    adds = sum(r.ops.get("add", 0) for r in audit.rows) / n_audit
    macs = sum(r.ops.get("mul", 0) for r in audit.rows) / n_audit
    dense = sum(dense_macs(case.model, x[:1]).values())
    images = u8 if case.run_images else u8[:2]  # random weights: run two images for the stack's depth only
    with torch.no_grad():
        ref = exp.integer_model.forward_q(x[:len(images)])
        float_pred = case.model(x[:len(images)]).argmax(-1)
    state = f"{_kib(exp.ram_bytes)} ({exp.schedule})"
    step_text = other_schedule_state(exp, case, bits)
    memory_rows, cost_rows = [], []
    for board_name in boards:
        board = BOARDS[board_name]
        head = [case.label, f"int{bits}", f"{board_name} ({board.core})"]
        t0 = time.perf_counter()
        try:
            elf = build_elf(out / "c", name, board, out / "build", timeout_s=QEMU_TIMEOUT_S)
        except DoesNotFitError as e:
            print(f"  {board_name}: {e}", file=sys.stderr, flush=True)
            over = ", ".join(f"{region} over by {_kib(n)} KiB" for region, n in e.overflow.items())
            memory_rows.append([*head, f"does not fit ({over})", "-", "-", "-", state,
                                _kib(exp.flash_bytes), step_text])
            continue
        print(f"  {board_name}: built in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        result = run_elf(elf, board, images.numpy(), timeout_s=QEMU_TIMEOUT_S)
        mem = memory_use(elf, stack_bytes=result.stack_bytes)
        exact = int((torch.from_numpy(result.logits).double() / exp.program.output.divisor == ref).all(-1).sum())
        memory_rows.append([*head, _kib(mem.flash), f"{_kib(mem.ram)} ({mem.stack:,} B)",
                            _vs_goal(mem.ram, case.goal[0]), _vs_goal(mem.flash, case.goal[1]),
                            state, _kib(exp.flash_bytes), step_text])
        print(f"  {board_name}: {len(images)} images in {result.wall_s:.0f} s, bit-exact {exact}/{len(images)}, "
              f"{result.instructions.mean() / 1e6:.2f} M instructions/image", file=sys.stderr, flush=True)
        if not case.run_images:
            continue
        classes = torch.from_numpy(result.classes)
        agree = int((classes == float_pred).sum())
        top1 = float((classes == labels).double().mean() * 100)
        ins = result.instructions
        cost_rows.append([*head, f"{_si(float(ins.mean()))} ({_si(float(ins.min()))}-{_si(float(ins.max()))})",
                          _si(adds), _si(macs), _si(dense), f"{exact}/{len(images)}", f"{agree}/{len(images)}",
                          f"{top1:.1f}%", f"{result.wall_s / len(images):.2f}"])
    return memory_rows, cost_rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quickstart", required=True, help="run directory of a trained configs/quickstart.yaml")
    ap.add_argument("--images", type=int, default=100, help="test images run through each board (default 100)")
    ap.add_argument("--data-root", type=Path, default=FASHION_MNIST, help="folder of the Fashion-MNIST IDX files")
    ap.add_argument("--boards", nargs="+", choices=sorted(BOARDS), default=sorted(BOARDS))
    ap.add_argument("--narrow", default=None,
                    help="run directory of a trained configs/ms_resnet_mini_fashion_mnist.yaml (the narrow paper "
                         "model); without it the narrow model has random weights and is measured for memory only")
    ap.add_argument("--skip-ms-resnet", action="store_true", help="the quickstart model only")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown here (e.g. bench/mcu.md)")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    u8, labels = test_images(args.data_root, args.images)
    cases = [(quickstart_case(args.quickstart), (16, 8))]
    if not args.skip_ms_resnet:
        wide, narrow = ms_resnet_mini_cases(args.narrow)
        cases += [(wide, (16, 8)), (narrow, (16, 8))]
    memory_rows, cost_rows = [], []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sv_mcu_") as tmp:
        for i, (case, widths) in enumerate(cases):
            for bits in widths:
                print(f"{case.label}, int{bits}", file=sys.stderr, flush=True)
                mem, cost = measure(case, bits, u8, labels, Path(tmp) / f"model{i}_int{bits}", args.boards)
                memory_rows += mem
                cost_rows += cost
    text = "\n".join([
        f"# Spiking models on an emulated Cortex-M ({args.images} Fashion-MNIST test images)", "",
        "## Memory", "",
        markdown_table(MEMORY_HEADERS, memory_rows), "",
        "flash and RAM of the whole ELF (`arm-none-eabi-size -A`; RAM with the stack's measured peak); network "
        "state and const: the export's own static state and const tables. Goals (issue 23): quickstart <= 64 KiB "
        "RAM and <= 128 KiB flash (int8 weights, a Cortex-M4 class part); `ms_resnet_mini` <= 256 KiB RAM and "
        "<= 1 MiB flash (a Cortex-M7 class part); \"vs goal\" gives the factor above it. The boards have 4 MiB "
        "of code and 4 MiB of data memory. Schedule: the export generates the network layer by layer (each op "
        "over all T steps) and one time step at a time (activations of one step, every neuron layer's membranes "
        "kept) and keeps the one with the smaller state; the other schedule's state is in the last column.", "",
        "## Cost and exactness", "",
        markdown_table(COST_HEADERS, cost_rows), "",
        "Instructions are QEMU's executed-instruction counts (`-icount shift=0`), not a chip's cycles. bit-exact: "
        "images whose logits equal the Python integer engine's; class = float: images whose class equals the "
        "float model's; top-1 of the exported model's classes on these images.", "",
        *(line for line in machine_lines("cpu", ("torch", "spikevision")) if not line.startswith("- command")),
        f"- toolchain: {_version('arm-none-eabi-gcc')} (-O2, C99, -mfloat-abi=hard), {_version('qemu-system-arm')}; "
        f"total {time.perf_counter() - start:.0f} s",
        f"- command: `python bench/mcu.py {shlex.join(argv if argv is not None else sys.argv[1:])}`", ""])
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
