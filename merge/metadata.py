"""Metadata written into a merged checkpoint, in the keys other tools already read.

- ``sd_merge_recipe``: JSON in SuperMerger's shape (type, weights_alpha, model_a/b/c hashes,
  base_alpha, mode, mbw, calcmode) plus our method/architecture/dtype details.
- ``sd_merge_models``: JSON ``{sha256: {name, legacy_hash, sd_merge_recipe}}`` as A1111's merger
  writes it, extended with the inputs' own merge history.
- ``modelspec.*``: the SAI model spec keys ComfyUI writes (architecture, title, date, ...).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass

from ..checkpoints.architecture import SD15, SDXL
from .methods import REGISTRY
from .plan import MergePlan

SUPERMERGER_MODES = {name: spec.supermerger[0] for name, spec in REGISTRY.items()}  # mode per method
MODELSPEC_IMPL = {
    SD15.name: "https://github.com/CompVis/stable-diffusion",
    SDXL.name: "https://github.com/Stability-AI/generative-models",
}


@dataclass(frozen=True)
class InputModel:
    role: str  # "model_a" | "model_b" | "model_c"
    name: str
    sha256: str
    legacy_hash: str
    metadata: dict


def merge_recipe(plan: MergePlan, inputs: list[InputModel], *, dtype: str, tool: str) -> dict:
    by_role = {m.role: m for m in inputs}
    return {
        "type": "animekit-block-merge",
        "tool": tool,
        "mbw": True,
        "mode": SUPERMERGER_MODES[plan.method.name],
        "calcmode": plan.method.spec.supermerger[1],
        "weights_alpha": plan.weights.as_text(),
        "weights_alpha_orig": plan.weights.source,
        "weights_beta": None,
        "base_alpha": plan.weights.of("BASE"),
        "model_a": by_role["model_a"].sha256 if "model_a" in by_role else None,
        "model_b": by_role["model_b"].sha256 if "model_b" in by_role else None,
        "model_c": by_role["model_c"].sha256 if "model_c" in by_role else None,
        "method": plan.method.name,
        "formula": plan.method.formula,
        "density": plan.method.density if plan.method.spec.uses_density else None,
        "seed": plan.method.seed if plan.method.spec.uses_seed else None,
        "beta": plan.method.beta if plan.method.spec.uses_beta else None,
        "alpha_meaning": "fraction of model B (0 = A, 1 = B)",
        "architecture": plan.arch.name,
        "blocks": list(plan.arch.blocks),
        "dtype": dtype,
        "vae": plan.vae_source if plan.vae_mode == "file" else plan.vae_mode,
    }


def merge_models(inputs: list[InputModel]) -> dict:
    models: dict = {}
    for model in inputs:
        history = model.metadata.get("sd_merge_models")
        if history:
            try:
                parsed = json.loads(history)
                if isinstance(parsed, dict):
                    models.update(parsed)
            except json.JSONDecodeError:
                pass
    for model in inputs:
        recipe = model.metadata.get("sd_merge_recipe")
        models[model.sha256] = {"name": model.name, "legacy_hash": model.legacy_hash, "sd_merge_recipe": recipe}
    return models


def checkpoint_metadata(
    plan: MergePlan, inputs: list[InputModel], *, title: str, dtype: str, tool: str, model_a_metadata: dict
) -> dict[str, str]:
    """All string metadata for the output file."""
    arch = plan.arch
    names = " + ".join(m.name for m in inputs)
    meta = {
        "sd_merge_recipe": json.dumps(merge_recipe(plan, inputs, dtype=dtype, tool=tool)),
        "sd_merge_models": json.dumps(merge_models(inputs)),
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": arch.modelspec,
        "modelspec.implementation": MODELSPEC_IMPL[arch.name],
        "modelspec.title": title,
        "modelspec.date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "modelspec.resolution": model_a_metadata.get("modelspec.resolution", f"{arch.resolution}x{arch.resolution}"),
        "modelspec.description": f"Block-weighted merge ({plan.method.name}, {plan.weights.source}) of {names}",
    }
    if "modelspec.predict_key" in model_a_metadata:
        meta["modelspec.predict_key"] = model_a_metadata["modelspec.predict_key"]
    return meta
