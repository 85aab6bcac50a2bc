"""Checking user-given values against type annotations: the one set of helpers every validator uses.

The recipe's sections (:mod:`spikevision.train.config`), the data section
(:mod:`spikevision.data.config`), studies (:mod:`spikevision.studies`) and a
model's builder arguments (:mod:`spikevision.models.arguments`) all check a
mapping of names to values against dataclass fields or a function signature and
collect every problem at once; these are the pieces they share: one "did you
mean", one test of a value against an annotation, one way to describe the
annotation in a message, one finite-number test. The module imports nothing of
spikevision, so every layer can use it.
"""

from __future__ import annotations

import collections.abc
import difflib
import math
import types
import typing
from typing import Any, Literal, Mapping, Sequence

__all__ = ["did_you_mean", "type_ok", "describe", "finite", "check_values"]

_SEQUENCES = (list, tuple, collections.abc.Sequence)
_MAPPINGS = (dict, collections.abc.Mapping)


def did_you_mean(key: object, valid: Sequence[str], cutoff: float = 0.5) -> str:
    """`` (did you mean 'x'?)`` for the valid name closest to ``key``, or ``""`` if none is close."""
    close = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


def type_ok(value: Any, hint: Any) -> bool:
    """Does ``value`` fit the annotation ``hint``? (The subset configs and builders use; others pass.)"""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None) or hint is None:
        return value is None
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in _SEQUENCES:
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(hint)
        if not args:
            return True
        if origin is not tuple or Ellipsis in args:
            return all(type_ok(v, args[0]) for v in value)
        return len(args) == len(value) and all(type_ok(v, a) for v, a in zip(value, args))
    if origin in _MAPPINGS or hint in _MAPPINGS:
        return isinstance(value, Mapping)
    if origin is type:
        args = typing.get_args(hint)
        return isinstance(value, type) and (not args or not isinstance(args[0], type) or issubclass(value, args[0]))
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def finite(value: Any) -> bool:
    """No NaN or infinity in ``value`` (a number, or a list/tuple/mapping of them); other values pass."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(finite(v) for v in value)
    if isinstance(value, Mapping):
        return all(finite(v) for v in value.values())
    return True


def describe(hint: Any) -> str:
    """The annotation in words for a message: ``'ce' | 'tet'``, ``a list of int``, ``int | null``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(describe(a) for a in args)
    if hint is type(None) or hint is None:
        return "null"
    if origin in _SEQUENCES:
        return f"a list of {describe(args[0])}" if args else "a list"
    if origin in _MAPPINGS or hint in _MAPPINGS:
        return "a mapping"
    if origin is type:
        return "a class"
    if hint is float:
        return "a number"
    return getattr(hint, "__name__", str(hint))


def check_values(raw: Mapping[str, Any], hints: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """Check each ``raw`` value against ``hints`` (name -> annotation); ``(accepted values, problems)``.

    Every problem names ``<where>.<key>``: an unknown key (with the nearest valid one), a value of
    the wrong type (saying what was expected), an empty value (``null`` where the annotation does
    not allow it) or a non-finite number. Keys of ``raw`` that pass go into the accepted dict.
    """
    accepted, errors = {}, []
    valid = list(hints)
    for key, value in raw.items():
        if key not in hints:
            errors.append(f"unknown key {where}.{key}{did_you_mean(key, valid)}")
        elif value is None and not type_ok(None, hints[key]):
            errors.append(f"{where}.{key} has no value; give {describe(hints[key])}")
        elif not type_ok(value, hints[key]):
            errors.append(f"{where}.{key} must be {describe(hints[key])}, got {_short(value)}")
        elif not finite(value):
            errors.append(f"{where}.{key} must be a finite number, got {_short(value)}")
        else:
            accepted[key] = value
    return accepted, errors


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (a message must stay one readable line)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
