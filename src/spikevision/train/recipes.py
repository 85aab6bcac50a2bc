"""The recipes shipped with spikevision: the repository's ``configs/*.yaml``, installed with the package.

``src/spikevision/configs`` is a link to ``configs/`` (one copy of each recipe); a wheel
holds the files themselves (package data), so a pip-installed spikevision trains them
from any folder by name (``spikevision train quickstart``; ``spikevision recipes``
lists them). :func:`find_recipe` is the one rule from a word to a recipe file.
"""

from __future__ import annotations

import difflib
from pathlib import Path

__all__ = ["RECIPES_DIR", "list_recipes", "find_recipe", "recipe_title"]

RECIPES_DIR = Path(__file__).resolve().parent.parent / "configs"  # spikevision/configs: the shipped recipes


def recipe_title(path: str | Path) -> str:
    """The recipe's one-line title: its first comment line, without the ``#`` ("" when it opens with no comment)."""
    for line in Path(path).read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def list_recipes() -> dict[str, Path]:
    """Shipped recipe names (file stems, sorted) and their files."""
    if not RECIPES_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(RECIPES_DIR.glob("*.yaml"))}


def find_recipe(name_or_path: str | Path) -> Path:
    """The recipe file meant by a command-line word.

    An existing file is returned as given; otherwise a word of the form ``NAME``,
    ``NAME.yaml`` or ``configs/NAME.yaml`` names a shipped recipe, so the commands in
    the docs work from a pip install, outside a checkout.

    Example:
        >>> find_recipe("quickstart")  # .../spikevision/configs/quickstart.yaml

    Raises:
        FileNotFoundError: neither a file nor a shipped recipe (lists the closest names).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = list_recipes()
    if path.suffix in ("", ".yaml", ".yml") and path.parent.name in ("", "configs"):
        name = path.stem if path.suffix else path.name
        if name in shipped:
            return shipped[name]
        close = difflib.get_close_matches(name, list(shipped), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise FileNotFoundError(f"recipe {str(name_or_path)!r} not found: no such file and no shipped recipe of "
                                f"that name{hint} (`spikevision recipes` lists them)")
    raise FileNotFoundError(f"recipe file {path} not found; pass a YAML file or a shipped recipe name "
                            "(`spikevision recipes` lists them)")
