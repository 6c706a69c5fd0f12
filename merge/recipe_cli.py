"""`animekit merge --recipe FILE` / `--save-recipe FILE` / `--models-dir DIR` (merge/recipe.py)."""

from __future__ import annotations

import argparse

from .methods import WEIGHTED_SUM
from .recipe import apply_recipe, save_recipe

__all__ = ["add_recipe_arguments", "save_recipe", "use_recipe"]


def add_recipe_arguments(merge: argparse.ArgumentParser) -> None:
    merge.add_argument("--recipe", metavar="FILE",
                       help="redo a merge: a recipe .json (from --save-recipe) or a merged .safetensors whose sd_merge_recipe "
                       "is read (inputs found by sha256 in --models-dir); options given here override it")
    merge.add_argument("--save-recipe", metavar="FILE.json", help="also save this merge as a recipe file")
    merge.add_argument("--models-dir", action="append", metavar="DIR",
                       help="where --recipe looks for its inputs by sha256 (repeatable; searched recursively)")


def use_recipe(args: argparse.Namespace) -> None:
    """Apply --recipe, then require what a merge needs: models A and B and one weight choice."""
    if args.recipe:
        apply_recipe(args)
    if args.model_a is None or args.model_b is None:
        raise ValueError("give model A and model B (or --recipe FILE)")
    if args.preset is None and args.weights is None and args.alpha is None:
        raise ValueError("give --preset NAME, --weights W[,W...] or --alpha W (or --recipe FILE)")
    if args.method is None:
        args.method = WEIGHTED_SUM
