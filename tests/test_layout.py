"""The shape of the code base: unique test-module basenames, no import cycles, size limits in src/."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80


def test_test_module_basenames_are_unique():
    # tests/ has no __init__.py files, so two test_x.py in different folders collide at collection
    # ("import file mismatch") and the whole run stops; conftest.py files are exempt (pytest keys them by path).
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name != "conftest.py" and "__pycache__" not in p.parts)
    assert [n for n, c in names.items() if c > 1] == []


def _modules() -> dict[str, Path]:
    mods = {}
    for path in (SRC / "spikevision").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


class _Imports(ast.NodeVisitor):
    """The spikevision modules a module imports, at any depth (a late import inside a function is an edge
    too), except under ``if TYPE_CHECKING:`` (never executed). ``from pkg import name`` points at the
    submodule ``pkg.name`` when there is one, else at ``pkg``."""

    def __init__(self, package: str, modules: dict[str, Path]) -> None:
        self.package, self.modules, self.targets = package, modules, set()

    def _add(self, name: str) -> None:
        while name and name not in self.modules:
            name = name.rpartition(".")[0]
        if name:
            self.targets.add(name)

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" not in ast.unparse(node.test):
            self.generic_visit(node)
        else:
            for child in node.orelse:
                self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")[: len(self.package.split(".")) - node.level + 1]
            base = ".".join(parts + ([node.module] if node.module else []))
        for alias in node.names:
            self._add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in self.modules else base)


def import_graph() -> dict[str, set[str]]:
    """``module -> the spikevision modules it imports`` (see :class:`_Imports`)."""
    mods = _modules()
    graph = {}
    for mod, path in mods.items():
        visitor = _Imports(mod if path.name == "__init__.py" else mod.rpartition(".")[0], mods)
        visitor.visit(ast.parse(path.read_text()))
        graph[mod] = visitor.targets - {mod}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_src_has_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_src_files_and_functions_are_short():
    long_files, long_functions = [], []
    for mod, path in _modules().items():
        text = path.read_text()
        if text.count("\n") > MAX_FILE_LINES:
            long_files.append(f"{mod} ({text.count(chr(10))} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{mod}.{node.name} ({n} lines)")
    assert long_files == [] and long_functions == []
