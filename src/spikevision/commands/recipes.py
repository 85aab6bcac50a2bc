"""``spikevision recipes``: the recipes shipped with spikevision, each with its one-line title.

The recipes are the repository's ``configs/*.yaml``, installed with the package
(:mod:`spikevision.train.recipes`), so a pip-installed spikevision trains them from
any folder by name::

    spikevision recipes
    spikevision train quickstart train.epochs=1         # the same as configs/quickstart.yaml
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from spikevision.train.recipes import RECIPES_DIR, list_recipes, recipe_title

    recipes = list_recipes()
    width = max((len(n) for n in recipes), default=0)
    for name, path in recipes.items():
        print(f"{name.ljust(width)}  {recipe_title(path)}")
    print(f"{len(recipes)} recipes in {RECIPES_DIR}; train one with `spikevision train NAME [key=value ...]`")
    return 0
