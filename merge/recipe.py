"""Merge recipes: a small JSON file that says how to redo a merge, and the `sd_merge_recipe` a merged
file carries (ours, or SuperMerger's shape), read back to redo that merge when its inputs are at hand.

A recipe file (``--save-recipe``)::

    {"animekit_recipe": 1, "model_a": {"path": "...", "sha256": null}, "model_b": {...}, "model_c": null,
     "preset": null, "weights": "0,0,1,...", "preset_file": null, "method": "weighted-sum",
     "density": 0.5, "seed": 0, "beta": 0.0, "dtype": "fp16", "vae": "keep"}

``--recipe FILE`` takes such a file, or a merged ``.safetensors``: its ``sd_merge_recipe`` gives the method
(by name, or by SuperMerger's mode / calcmode through the method registry), the weights and the input
hashes; each input is found by sha256 among the ``--models-dir`` folders' checkpoints (hashes are
remembered, files/hashing.py). What the command line gives explicitly wins over the recipe.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..files.atomic import atomic_output
from ..files.hashing import cached_sha256, remember_sha256, sha256_file
from .methods import REGISTRY

RECIPE_VERSION = 1
ROLES = ("model_a", "model_b", "model_c")
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")


@dataclass(frozen=True)
class Recipe:
    models: dict[str, str | None]  # role -> path (may be None when only a hash is known)
    hashes: dict[str, str | None]
    preset: str | None
    weights: str | None
    preset_file: str | None
    method: str
    density: float
    seed: int
    beta: float
    dtype: str
    vae: str


def recipe_of(config) -> dict:
    """A FileMergeConfig as a recipe dict (paths absolute, so it runs from anywhere)."""
    def model(path):
        return None if path is None else {"path": str(Path(path).resolve()), "sha256": cached_sha256(Path(path))}

    m = config.method
    return {
        "animekit_recipe": RECIPE_VERSION,
        **{role: model(getattr(config, role)) for role in ROLES},
        "preset": config.weights.preset, "weights": config.weights.weights, "preset_file": config.weights.preset_file,
        "method": m.name, "density": m.density, "seed": m.seed, "beta": m.beta, "dtype": config.dtype, "vae": str(config.vae),
    }


def save_recipe(config, path: str | os.PathLike) -> Path:
    if Path(path).suffix.lower() != ".json":
        raise ValueError(f"recipe file {str(path)!r} must end in .json")
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(recipe_of(config), indent=2) + "\n")
    return Path(path)


def _method_from_modes(mode: str | None, calcmode: str | None) -> str:
    for name, spec in REGISTRY.items():
        if spec.supermerger == (mode, calcmode or "normal"):
            return name
    raise ValueError(f"the recipe's merge mode {mode!r} / calcmode {calcmode!r} is not one AnimeKit can redo")


def _from_file_recipe(data: dict, where: str) -> Recipe:
    if data.get("animekit_recipe") != RECIPE_VERSION:
        raise ValueError(f"{where}: not an AnimeKit recipe (no \"animekit_recipe\": {RECIPE_VERSION})")
    models = {r: (data.get(r) or {}).get("path") for r in ROLES}
    hashes = {r: (data.get(r) or {}).get("sha256") for r in ROLES}
    return Recipe(models, hashes, data.get("preset"), data.get("weights"), data.get("preset_file"), data.get("method", "weighted-sum"),
                  float(data.get("density", 0.5)), int(data.get("seed", 0)), float(data.get("beta", 0.0)),
                  data.get("dtype", "fp16"), data.get("vae", "keep"))


def _from_merged_file(path: Path) -> Recipe:
    from .safetensors_stream import SafetensorsFile

    with SafetensorsFile(path, label="recipe file") as merged:
        text = merged.metadata.get("sd_merge_recipe")
    if not text:
        raise ValueError(f"{path.name} has no sd_merge_recipe metadata: nothing says how it was merged")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name}: its sd_merge_recipe is not JSON ({exc})") from None
    method = data.get("method") if data.get("method") in REGISTRY else _method_from_modes(data.get("mode"), data.get("calcmode"))
    weights = data.get("weights_alpha")
    if not weights:
        raise ValueError(f"{path.name}: its sd_merge_recipe has no weights_alpha")
    hashes = {r: data.get(r) for r in ROLES}
    vae = data.get("vae") or "keep"
    return Recipe({r: None for r in ROLES}, hashes, None, weights, None, method,
                  float(data.get("density") or 0.5), int(data.get("seed") or 0), float(data.get("beta") or 0.0),
                  data.get("dtype") or "fp16", vae if vae in ("keep", "merge") else "keep")


def read_recipe(path: str | os.PathLike) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {str(path)!r} does not exist")
    if path.suffix.lower() == ".safetensors":
        return _from_merged_file(path)
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"recipe {str(path)!r} is not JSON: {exc}") from None
    return _from_file_recipe(data, str(path))


def find_by_hash(digest: str, folders: list[str | os.PathLike], *, label: str) -> Path:
    """The checkpoint under `folders` whose sha256 is `digest` (remembered hashes first)."""
    candidates = [p for folder in folders for p in sorted(Path(folder).rglob("*")) if p.suffix.lower() in CHECKPOINT_SUFFIXES and p.is_file()]
    for path in candidates:
        if cached_sha256(path) == digest:
            return path
    for path in candidates:
        found = cached_sha256(path)
        if found is None:
            found = sha256_file(path)
            remember_sha256(path, found)
        if found == digest:
            return path
    where = ", ".join(str(f) for f in folders) or "(no --models-dir given)"
    raise FileNotFoundError(f"{label}: no checkpoint with sha256 {digest[:12]}... in {where}")


def resolve_models(recipe: Recipe, folders: list[str | os.PathLike]) -> dict[str, str | None]:
    """Each role's file: the recipe's path when it exists (and matches its hash), else found by hash."""
    needs_c = REGISTRY[recipe.method].needs_base
    found = {}
    for role in ROLES:
        if role == "model_c" and not needs_c:
            found[role] = None
            continue
        path, digest = recipe.models.get(role), recipe.hashes.get(role)
        label = {"model_a": "model A", "model_b": "model B", "model_c": "model C"}[role]
        if path and Path(path).is_file():
            found[role] = path
        elif digest:
            found[role] = str(find_by_hash(digest, folders, label=label))
        else:
            raise FileNotFoundError(f"{label}: the recipe names {path!r}, which does not exist, and no hash to search by")
    return found


def apply_recipe(args) -> None:
    """Fill the `animekit merge` arguments the command line left unset from `args.recipe`."""
    recipe = read_recipe(args.recipe)
    models = resolve_models(recipe, list(args.models_dir or []))
    for role in ROLES:
        if getattr(args, role) is None:
            setattr(args, role, models[role])
    if args.preset is None and args.weights is None and args.alpha is None:
        args.preset, args.weights = recipe.preset, recipe.weights
        args.preset_file = args.preset_file or recipe.preset_file
    for name, default in (("method", None), ("density", 0.5), ("seed", 0), ("beta", 0.0), ("dtype", "fp16"), ("vae", "keep")):
        if getattr(args, name) in (None, default):
            setattr(args, name, getattr(recipe, name))
