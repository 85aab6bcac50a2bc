"""Memory-aware order of a program's operations, and the operations that may write over a dying input.

The traced order is the model's ``forward`` order, which can keep a large buffer alive needlessly: in an
MS-ResNet block the shortcut's convolution reads the block input after the whole residual branch, so the
block input (the largest map) lives through every op of the branch. :func:`hoist_last_readers` moves such
an op up to just after the last other reader of the buffers it is the last to read (and after the producers
of all its inputs), when the buffers it frees are at least as large as the one it makes. Every op only
writes its own fresh buffer, so any order that runs producers before readers computes the same values.

:func:`inplace_input` names the input whose memory an elementwise op may write its output into.
"""

from __future__ import annotations

from spikevision.deploy.ir.ops import Add, Affine, Buf, Op, Relu

__all__ = ["hoist_last_readers", "inplace_input"]


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
