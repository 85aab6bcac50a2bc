"""The multiplication-free inference (MFI) audit: which layers still multiply, and why.

"Is this network multiplication-free?" has an honest answer only per layer.
:func:`audit_model` compiles the model to the integer engine
(:mod:`spikevision.deploy.engine`), runs it on a sample batch under an
:class:`~spikevision.deploy.engine.arithmetic.ArithmeticCounter`, and lists every layer with:

* what it is (conv/linear with BN folded, neuron, pooling, unfolded BN,
  float fallback, or a block's own forward code such as a residual sum);
* what its input was (``spikes``: only 0/1 values were seen; ``analog``);
* the operations it executed, by kind (add, shift, compare, select, mul, float, and
  unknown: an ATen operation nobody classified, which counts against MFI like a multiplication);
* whether it is multiplication-free, and if not, why.

The reasons are the ones the four architectures imply:

* the first layer reads analog pixels (every family);
* MS-ResNet's projection shortcuts convolve the real-valued membrane stream,
  not spikes (Hu et al., TNNLS 2024, arXiv 2112.08954; the released code in
  github.com/Ariande1/MS-ResNet does this, as its issue 4 discusses);
* GAC's gate multiplies the encoder's spikes by a sigmoid of attention maps
  (Qiu et al., AAAI 2024, arXiv 2308.06582);
* the spiking MLP's per-token BN normalises per token position, so it cannot
  be folded into the weights shared by all tokens (Li et al., TNNLS 2024,
  arXiv 2306.12465);
* S-ResNet adds the block's spikes to its input after the neuron, so the next
  block's first conv reads a non-binary sum, and its leak 0.8744 is no power
  of two (Vicente-Sola et al., NCE 2022, arXiv 2111.05955).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from spikevision.deploy.engine import (
    EngineConfig, FloatFallback, IntAffine, IntegerModel, IntNeuron, IntPool, IntSynapse, compile_integer,
)
from spikevision.deploy.engine.gac import IntGAC
from spikevision.deploy.engine.arithmetic import KINDS, NOT_MFI_KINDS, ArithmeticCounter
from spikevision.deploy.engine.fold import PerStepSynapse
from spikevision.deploy.engine.trace import ATOMIC_TYPES, batch_head, trace_model

__all__ = ["AuditRow", "AuditReport", "audit_model", "compare_models"]

_ENGINE_TYPES = (IntSynapse, IntAffine, IntPool, IntNeuron, IntGAC, FloatFallback)

_NET = "net."
# the engine's two interface conversions: scaling by 2^F moves the binary point (exponent), it is not a product
_INTERFACE = {
    "quantize": "interface: pixels to fixed point, x * 2^F (a binary-point shift; the ADC)",
    "dequantize": "interface: fixed point to logits, q / 2^F (a binary-point shift; argmax-invariant)",
}


@dataclass
class AuditRow:
    """One layer of the audit table."""

    layer: str
    what: str
    input: str
    ops: dict[str, int]
    mfi: bool
    note: str = ""


@dataclass
class AuditReport:
    """The audit table plus a summary.

    Attributes:
        rows: one per layer, in execution order.
        multiplication_free: True when no row multiplies.
        spike_driven: layers (conv/linear) that saw only binary spikes.
        config: the engine's number formats.
        folded: ``"layer <- bn"`` for every folded pair.
    """

    rows: list[AuditRow]
    config: dict
    folded: list[str] = field(default_factory=list)

    @property
    def multiplication_free(self) -> bool:
        return all(r.mfi for r in self.rows)

    @property
    def spike_driven(self) -> list[str]:
        return [r.layer for r in self.rows if r.what.startswith(("conv", "linear")) and r.input == "spikes"]

    @property
    def non_mfi(self) -> list[AuditRow]:
        return [r for r in self.rows if not r.mfi]

    def totals(self) -> dict[str, int]:
        out = dict.fromkeys(KINDS, 0)
        for r in self.rows:
            for k, v in r.ops.items():
                out[k] += v
        return out

    def to_dict(self) -> dict:
        return {
            "multiplication_free": self.multiplication_free,
            "spike_driven_layers": self.spike_driven,
            "non_mfi_layers": [r.layer for r in self.non_mfi],
            "totals": self.totals(),
            "config": self.config,
            "folded": self.folded,
            "rows": [asdict(r) for r in self.rows],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        """The table (ops per sample batch given to :func:`audit_model`) and a verdict line."""
        head = "| layer | what | input | add | shift | compare | select | mul | MFI | why not |\n"
        head += "|---|---|---|---:|---:|---:|---:|---:|---|---|\n"
        lines = []
        for r in self.rows:
            mul = sum(r.ops[k] for k in NOT_MFI_KINDS)
            lines.append(
                f"| `{r.layer or '(model)'}` | {r.what} | {r.input} | {r.ops['add']:,} | {r.ops['shift']:,} | "
                f"{r.ops['compare']:,} | {r.ops['select']:,} | {mul:,} | {'yes' if r.mfi else '**no**'} | {r.note} |"
            )
        bad = self.non_mfi
        verdict = (
            "**Multiplication-free: yes** (every layer adds, shifts, compares or selects)."
            if not bad else
            f"**Multiplication-free: no**: {len(bad)} of {len(self.rows)} layers multiply "
            f"({', '.join('`' + (r.layer or '(model)') + '`' for r in bad)}). "
            f"{len(self.spike_driven)} conv/linear layers are spike-driven (additions only)."
        )
        return head + "\n".join(lines) + "\n\n" + verdict + "\n"


def _input_kind(module: nn.Module) -> str:
    """``spikes``, ``analog``, ``mixed``, ``silent`` (only all-zero binary input: inconclusive) or ``-``."""
    seen = set(getattr(module, "inputs_seen", set()))
    if not seen:
        return "-"
    if seen == {"silent"}:
        return "silent"
    seen.discard("silent")
    return "spikes" if seen == {"spikes"} else ("analog" if seen == {"analog"} else "mixed")


def _describe(module: nn.Module, name: str, folded: set[str], producers: dict[str, str]) -> tuple[str, str]:
    """(what, note) for an engine module."""
    src = producers.get(name, "")
    if isinstance(module, IntSynapse):
        what = ("conv" if module.kind == "conv2d" else "linear") + (" + BN folded" if name in folded else "")
        if module.per_step:
            what += " (per-step weights)"
        note = ""
        if _input_kind(module) == "silent":
            note = "received no spike on the audit batch (inconclusive: audit a real batch)"
        elif _input_kind(module) != "spikes":
            note = "multiply-accumulate on real-valued input" + (f" from {src}" if src else "")
        return what, note
    if isinstance(module, IntAffine):
        note = ""
        if _input_kind(module) not in ("spikes", "silent"):
            note = ("per-token BN: scales the token axis, not the preceding layer's output axis, so it cannot "
                    "fold into shared weights" if module.token else "BN with no conv/linear directly before it")
        return "BN (kept)" + (" per token" if module.token else ""), note
    if isinstance(module, IntPool):
        if module.is_max:
            return "max-pool", ""
        return "avg-pool", (f"window of {module.last_window} is not a power of two: division"
                            if module.divides else "")
    if isinstance(module, IntNeuron):
        return f"neuron (decay {module.decay:.4g})", "; ".join(module.multiplies)
    if isinstance(module, IntGAC):
        return ("GAC encoder: TA, gate, select", "TA's mean and max of U, the gate's product TA x SCA and the "
                "sigmoid table's linear interpolation (integer multiplies); the spikes select the gate (no product)")
    if isinstance(module, FloatFallback):
        return f"float fallback ({type(module.module).__name__})", module.reason
    return type(module).__name__, ""


def audit_model(
    model: nn.Module,
    example: Tensor,
    cfg: EngineConfig = EngineConfig(),
    integer_model: IntegerModel | None = None,
) -> AuditReport:
    """Compile ``model``, run ``example`` through the integer engine and tabulate every layer.

    Args:
        model: the float model (trained; eval-mode statistics are used).
        example: a representative batch (firing and op counts come from it).
        cfg: engine number formats.
        integer_model: an already compiled model (skips compilation).

    Returns:
        The :class:`AuditReport`.
    """
    im = integer_model or compile_integer(model, batch_head(example, 2), cfg)
    for m in im.modules():
        if hasattr(m, "inputs_seen"):
            m.inputs_seen.clear()
    counter = ArithmeticCounter(im)
    with torch.no_grad(), counter:
        logits = im(example)
    counter.keep_reaching(logits)  # an input check, or anything else that never reaches the logits, is not counted
    folded = {p.layer for p in im.pairs}
    producers = _producers(im, batch_head(example, 1))
    engine_names = {n for n, m in im.named_modules() if isinstance(m, _ENGINE_TYPES)}
    groups: dict[str, list[str]] = {}  # row name -> counter keys, in execution order of first use
    for key in counter.counts:
        # the most specific engine layer running the op (GAC's encoder holds engine layers of its own)
        owner = max((n for n in engine_names if key == n or key.startswith(n + ".")), key=len, default=None)
        groups.setdefault(owner or key, []).append(key)
    rows = [row for name, keys in groups.items()
            if (row := _row(im, counter, name, keys, name in engine_names, folded, producers)) is not None]
    return AuditReport(rows, asdict(im.cfg), [f"{p.layer} <- {p.bn}" for p in im.pairs])


def _row(im: IntegerModel, counter: ArithmeticCounter, name: str, keys: list[str], is_layer: bool,
         folded: set[str], producers: dict[str, str]) -> AuditRow | None:
    """The audit row of one engine layer (or of a module's own forward code); None for pure data movement."""
    ops = counter.totals(keys)
    label = name[len(_NET):] if name.startswith(_NET) else ("" if name == "net" else name)
    if is_layer:
        module = im.get_submodule(name)
        what, note = _describe(module, label, folded, producers)
        inp = _input_kind(module)
    else:
        if not any(ops[k] for k in KINDS if k != "other"):
            return None  # pure data movement (encoder repeat, flatten)
        what, inp = ("input quantiser" if label == "quantize" else
                     "output scale" if label == "dequantize" else "forward code"), "-"
        ops_names = sorted(set().union(*(counter.ops.get(k, set()) for k in keys)))
        note = ""
        if any(ops[k] for k in NOT_MFI_KINDS):
            note = f"executes {', '.join(ops_names)} (e.g. the mean over time of the readout)"
    mfi = not any(ops[k] for k in NOT_MFI_KINDS)
    if label in _INTERFACE:
        mfi, note = True, _INTERFACE[label]
    return AuditRow(label, what, inp, ops, mfi, note)


def _producers(im: IntegerModel, example: Tensor) -> dict[str, str]:
    """For each engine layer, a description of what produced its input (from a trace of the float model)."""
    out: dict[str, str] = {}
    try:
        trace = trace_model(im.float_model, example, atomic=ATOMIC_TYPES + (PerStepSynapse,))
    except Exception:  # the description is a courtesy; never fail the audit for it
        return out
    for c in trace.calls:
        if c.kind == "module" and c.inputs and isinstance(c.inputs[0], int):
            src = trace.calls[c.inputs[0]]
            if src.kind == "glue":
                out[c.name] = f"`{src.owner or '(model)'}` ({src.name.strip('_')})"
            else:
                out[c.name] = f"`{src.name}`"
    return out


@torch.no_grad()
def compare_models(float_model: nn.Module, integer_model: nn.Module, batches, limit: int | None = None) -> dict:
    """Top-1 agreement and accuracies of a float and an integer model over ``(images, labels)`` batches.

    Args:
        float_model: the float model (eval mode is set).
        integer_model: the compiled model.
        batches: iterable of ``(x, y)``.
        limit: stop after this many samples.

    Returns:
        ``{"samples", "agreement", "float_accuracy", "integer_accuracy"}`` (fractions).
    """
    float_model.eval()
    n = agree = ok_f = ok_i = 0
    for x, y in batches:
        if limit is not None and n >= limit:
            break
        if limit is not None:
            x, y = x[: limit - n], y[: limit - n]
        pf = float_model(x).argmax(-1)
        pi = integer_model(x).argmax(-1)
        n += len(y)
        agree += int((pf == pi).sum())
        ok_f += int((pf == y).sum())
        ok_i += int((pi == y).sum())
    if n == 0:
        raise ValueError("compare_models got no samples")
    return {"samples": n, "agreement": agree / n, "float_accuracy": ok_f / n, "integer_accuracy": ok_i / n}

