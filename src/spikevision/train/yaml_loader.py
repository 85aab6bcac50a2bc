"""The one YAML reader of recipes, ``key=value`` overrides and studies: safe, and bounded before expanding.

:func:`yaml_load` parses with a :class:`yaml.SafeLoader` subclass that also reads
``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``) and refuses, while composing the
node graph and so before anything is expanded into Python objects:

- an alias cycle (``&a [*a]``: a node that contains itself), which would build a
  recursive list that every later step recurses into forever;
- alias expansion beyond :data:`MAX_NODES` nodes (the "billion laughs": nine
  levels of ten aliases each stand for 10**9 strings);
- nesting deeper than :data:`MAX_DEPTH` levels;
- text longer than :data:`MAX_CHARS` characters.

Each raises :class:`YAMLLimitError` (a :class:`yaml.YAMLError`, so callers that
report malformed YAML report these the same way) within milliseconds.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import AliasEvent
from yaml.nodes import Node

__all__ = ["yaml_load", "yaml_error_text", "YAMLLimitError", "MAX_DEPTH", "MAX_NODES", "MAX_CHARS"]

MAX_DEPTH = 64  # nesting levels; recipes use 3
MAX_NODES = 100_000  # nodes after alias expansion; the largest recipe has a few hundred
MAX_CHARS = 1 << 20  # 1 MiB of text; recipes are a few KiB


class YAMLLimitError(ComposerError):
    """A YAML document refused before expansion: an alias cycle, too many nodes or too deep."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with exponent floats and the limits of this module (one instance per document)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> its node count with aliases expanded, once composed
        self._total = 0  # nodes so far, aliases expanded

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)  # None: the composer reports the undefined alias
            if node is not None:
                if id(node) not in self._sizes:  # anchored, not yet complete: we are inside it
                    raise YAMLLimitError(None, None, f"alias *{event.anchor} refers to a value that contains it "
                                                     "(an alias cycle); write the value out", event.start_mark)
                self._count(self._sizes[id(node)], event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YAMLLimitError(None, None, f"nested deeper than {MAX_DEPTH} levels; flatten the value",
                                 self.peek_event().start_mark)
        start = self._total
        self._count(1, self.peek_event().start_mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._sizes[id(node)] = self._total - start
        return node

    def _count(self, n: int, mark: Any) -> None:
        self._total += n
        if self._total > MAX_NODES:
            raise YAMLLimitError(None, None, f"expands to more than {MAX_NODES} values (aliases repeating "
                                             "aliases: a 'billion laughs'); write the values out", mark)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


_BRACKET_RUN = re.compile(r"[\[{](?:\s*[\[{]){%d}" % MAX_DEPTH)


def yaml_load(text: str) -> Any:
    """Parse one YAML document safely within this module's limits (exponent floats without a dot).

    Raises:
        YAMLLimitError: an alias cycle, more than :data:`MAX_NODES` values after alias expansion,
            nesting deeper than :data:`MAX_DEPTH` or text longer than :data:`MAX_CHARS`.
        yaml.YAMLError: malformed YAML.
    """
    if len(text) > MAX_CHARS:
        raise YAMLLimitError(None, None, f"{len(text)} characters, more than the {MAX_CHARS} a recipe may have")
    if _BRACKET_RUN.search(text):  # refused up front: PyYAML's scanner is slow on long runs of '['
        raise YAMLLimitError(None, None, f"nested deeper than {MAX_DEPTH} levels; flatten the value")
    return yaml.load(text, Loader=_Loader)


def yaml_error_text(e: yaml.YAMLError) -> str:
    """One line for a YAML error: ``, line L, column C: not valid YAML (<what>)`` (PyYAML's snippet left out).

    A limit of this module reads ``refused (<what>)`` instead of ``not valid YAML (<what>)``.
    """
    mark = getattr(e, "problem_mark", None)
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    what = " ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
    kind = "refused" if isinstance(e, YAMLLimitError) else "not valid YAML"
    return f"{where}: {kind} ({' '.join(what.split())})"
