"""Memory-aware order of a program's operations, and the operations that may write over a dying input.

The traced order is the model's ``forward`` order, which can keep a large buffer alive needlessly: in an
MS-ResNet block the shortcut's convolution reads the block input after the whole residual branch, so the
block input (the largest map) lives through every op of the branch. :func:`hoist_last_readers` moves such
an op up to just after the last other reader of the buffers it is the last to read (and after the producers
of all its inputs), when the buffers it frees are at least as large as the one it makes. Every op only
writes its own fresh buffer, so any order that runs producers before readers computes the same values.

:func:`inplace_input` names the input whose memory an elementwise op may write its output into.

:func:`step_plan` says how the program runs one time step at a time, or which op prevents it: the C target's
step-at-a-time schedule (``generate_c(..., schedule="steps")``, where every neuron layer's membranes persist
at once) follows it; at the small ``T`` of the models here the layer-by-layer schedule needs less RAM
(docs/deploy.md, "Deploy to a microcontroller").
"""

from __future__ import annotations

from dataclasses import dataclass

from spikevision.deploy.ir.ops import Add, Affine, Buf, Gate, Mean, Neuron, Op, Program, Relu

__all__ = ["StepPlan", "hoist_last_readers", "inplace_input", "step_plan"]


def _bytes(b: Buf) -> int:
    """Bytes of a buffer before narrowing (spikes 1, values 8)."""
    return b.size * (1 if b.kind == "spike" else 8)


def _hoist_target(ops: list[Op], j: int, keep: set[str]) -> int | None:
    """Where op ``j`` should move (an index < j), or None to leave it."""
    op = ops[j]
    produced = {o.out.storage: i for i, o in enumerate(ops)}
    readers: dict[str, list[int]] = {}
    for i, o in enumerate(ops):
        for b in o.inputs:
            readers.setdefault(b.storage, []).append(i)
    kills = {b.storage: b for b in op.inputs if max(readers[b.storage]) == j and b.storage not in keep}
    if not kills or sum(_bytes(b) for b in kills.values()) < _bytes(op.out):
        return None
    after = [produced.get(b.storage, -1) for b in op.inputs]
    after += [i for s in kills for i in readers[s] if i != j]
    target = max(after) + 1
    return target if target < j else None


def hoist_last_readers(ops: list[Op], keep: set[str]) -> list[Op]:
    """``ops`` reordered so that an op freeing more memory than it takes runs as early as it can (see the
    module docstring); ``keep``: storages that must live to the end (the output)."""
    ops = list(ops)
    for j in range(len(ops)):
        target = _hoist_target(ops, j, keep)
        if target is not None:
            ops.insert(target, ops.pop(j))
    return ops


def inplace_input(op: Op) -> tuple[Buf, ...]:
    """The inputs whose memory ``op`` may write its output into when they die at it: those of an elementwise
    op (element ``i`` of the output is computed from element ``i`` of each input, read before it is written)
    holding as many elements as the output."""
    if isinstance(op, (Add, Relu)) or (isinstance(op, Affine) and op.x.kind != "spike"):
        return tuple(b for b in op.inputs if b.kind == op.out.kind and b.size == op.out.size)
    return ()


@dataclass(frozen=True)
class StepPlan:
    """How a program would run one time step at a time (:func:`step_plan`).

    Attributes:
        phase: per op index, ``"pre"`` (once, before the steps: it reads only the image), ``"step"`` (once per
            step) or ``"post"`` (once, after the steps: it reads a mean over time).
        blocker: why the program cannot run step by step (the op and the reason), or "" when it can.
    """

    phase: tuple[str, ...]
    blocker: str = ""


def step_plan(prog: Program) -> StepPlan:
    """Which ops of ``prog`` would run before, at every, and after the time steps in a step-at-a-time
    schedule (membranes persisting over the steps, activations holding one step), or what prevents it: an op
    whose step ``t`` reads other steps (GAC's gate: its TA's MLP mixes U over every step), or an op of the
    steps that reads a mean over time (it would need every step first)."""
    where = {prog.input.storage: "step" if prog.input.steps > 1 else "pre"}
    phases: list[str] = []
    for op in prog.ops:
        ins = {where.get(b.storage, "pre") for b in op.inputs}
        if isinstance(op, Gate):
            return StepPlan(tuple(phases), f"{op.layer!r} (GAC's gate: its TA mixes every step of U)")
        if isinstance(op, Mean) and op.over == "time":
            phase, out = "step", "post"
        elif isinstance(op, Neuron) or "step" in ins:
            if "post" in ins:
                return StepPlan(tuple(phases), f"{op.layer!r} reads a mean over time inside the steps")
            phase = out = "step"
        else:
            phase = out = "post" if "post" in ins else "pre"
        phases.append(phase)
        where[op.out.storage] = out
    return StepPlan(tuple(phases))
