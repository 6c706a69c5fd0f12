"""Every key of real SD1.5 / SDXL layouts, merged file to file, checked exactly against its formula.

The expected values are computed here, independently of merge/methods.py (only DARE's mask comes
from the core, and is pinned in test_merge_methods), with each key's block taken from an
independent statement of the key -> block convention.
"""

from __future__ import annotations

import hashlib
import json
import math
import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from animekit.checkpoints.architecture import SD15, SDXL
from animekit.checkpoints.keys import comfy_name
from animekit.merge.checkpoint_merge import FileMergeConfig, merge_checkpoints
from animekit.merge.methods import MergeMethod, dare_keep_mask, key_seed
from animekit.merge.presets import builtin_presets, sd1_to_sdxl
from support.checkpoints import write_checkpoint

ARCHS = {"sd15": SD15, "sdxl": SDXL}


@pytest.fixture(autouse=True)
def private_hash_cache(tmp_path, monkeypatch):
    """Remembered input hashes go to a per-test file, never the user's cache."""
    monkeypatch.setenv("ANIMEKIT_HASH_CACHE", str(tmp_path / "sha256-cache.json"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge-inputs")
    made = {}
    for name in ARCHS:
        for role, seed in (("a", 1), ("b", 2), ("c", 3)):
            made[name, role] = write_checkpoint(root / f"{name}-{role}.safetensors", name, seed=seed)
    return made


def block_of(arch, key: str) -> str | None:
    """The block a key's weight comes from, or None when it must stay model A's."""
    if "weight" not in key and "bias" not in key:
        return None
    if key.startswith(("cond_stage_model.", "conditioner.embedders.")):
        return "BASE"
    match = re.match(r"model\.diffusion_model\.(\w+?)(?:\.(\d+))?\.", key)
    if match is None:
        return None  # VAE (kept unless asked)
    part, index = match.groups()
    if part in ("time_embed", "label_emb"):
        return "IN00"
    if part == "middle_block":
        return "M00"
    if part == "out":
        return "OUT11" if arch is SD15 else "OUT08"
    return f"{'IN' if part == 'input_blocks' else 'OUT'}{int(index):02d}"


def trim(x: torch.Tensor, density: float) -> torch.Tensor:
    k = math.ceil(density * x.numel())
    threshold = x.abs().flatten().sort(descending=True).values[k - 1]
    return torch.where(x.abs() >= threshold, x, torch.zeros_like(x))


def expected(method: MergeMethod, key: str, w: float, a, b, c) -> torch.Tensor:
    a, b = a.float(), b.float()
    c = c.float() if c is not None else None
    if method.name == "weighted-sum":
        value = a * (1 - w) + b * w
    elif method.name == "add-difference":
        value = a + (b - c) * w
    elif method.name == "dare":
        keep = dare_keep_mask(key_seed(method.seed, comfy_name(key)), 0, a.numel(), method.density).view(a.shape)
        value = a + torch.where(keep, (b - c) / method.density, torch.zeros_like(a)) * w
    else:
        ta, tb = trim(a - c, method.density), trim(b - c, method.density)
        agree = (torch.sign(tb) == torch.sign(ta + tb)) & (tb != 0)
        value = a + torch.where(agree, tb, torch.zeros_like(tb)) * w
    return value.half()


def custom_weights(count: int, seed: int) -> str:
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(count, generator=g).tolist()
    values[3] = 0.0
    values[5] = 1.0
    return ",".join(f"{v:.4f}" for v in values)


CASES = [
    ("HIGHRES_REPLACE", None, "weighted-sum"),
    ("LOWRES_REPLACE", None, "weighted-sum"),
    ("SMOOTHSTEP", None, "weighted-sum"),
    ("custom", 0, "weighted-sum"),
    ("HIGHRES_REPLACE", None, "add-difference"),
    ("custom", 1, "ties"),
    ("custom", 2, "dare"),
]


@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize(("preset", "weight_seed", "method_name"), CASES)
def test_every_key_matches_its_formula_with_its_block_weight(tmp_path, files, name, preset, weight_seed, method_name):
    arch = ARCHS[name]
    method = MergeMethod(method_name, density=0.4, seed=11)
    weights = custom_weights(arch.weight_count, weight_seed) if preset == "custom" else None
    config = FileMergeConfig(
        model_a=files[name, "a"], model_b=files[name, "b"], model_c=files[name, "c"] if method.needs_base else None,
        output=tmp_path / "merged.safetensors", weights=_choice(preset, weights), method=method,
    )
    result = merge_checkpoints(config)

    values = builtin_presets().get(preset) if preset != "custom" else [float(v) for v in weights.split(",")]
    if arch is SDXL and preset != "custom":
        values = sd1_to_sdxl(values)
    by_block = dict(zip(arch.blocks, values))
    a, b, c = (load_file(files[name, r]) for r in "abc")
    out = load_file(result.path)
    assert list(out) == list(a) or sorted(out) == sorted(a)
    merged = kept = 0
    for key, value in out.items():
        block = block_of(arch, key)
        if block is None:
            assert torch.equal(value, a[key]), key
            kept += 1
            continue
        want = expected(method, key, by_block[block], a[key], b[key], c[key])
        assert value.dtype == torch.float16 and torch.equal(value, want), f"{key} (block {block}, w={by_block[block]})"
        merged += 1
    # the explain plan agrees with the independent block assignment
    assert {item.key: item.block for item in result.plan.merged} == {k: block_of(arch, k) for k in out if block_of(arch, k)}
    assert kept == {"sd15": 249, "sdxl": 252}[name] and merged == len(out) - kept


def _choice(preset, weights):
    from animekit.merge.weights import WeightChoice

    return WeightChoice(preset=None if preset == "custom" else preset, weights=weights)


def test_metadata_records_the_recipe_and_the_inputs_sha256(tmp_path, files):
    config = FileMergeConfig(files["sdxl", "a"], files["sdxl", "b"], tmp_path / "m.safetensors", _choice("HIGHRES_REPLACE", None))
    result = merge_checkpoints(config)
    with safe_open(str(result.path), "pt") as handle:
        meta = handle.metadata()
    recipe = json.loads(meta["sd_merge_recipe"])
    sha = {r: hashlib.sha256(files["sdxl", r].read_bytes()).hexdigest() for r in "ab"}
    assert recipe["model_a"] == sha["a"] and recipe["model_b"] == sha["b"] and recipe["model_c"] is None
    assert recipe["mbw"] is True and recipe["mode"] == "Weight sum" and recipe["architecture"] == "sdxl"
    assert recipe["weights_alpha"] == "0,0,1,1,0.67,0.67,0.33,0.33,0,0,0,0,0,0.33,0.33,0.67,0.67,1,1,0"
    assert recipe["base_alpha"] == 0.0 and recipe["alpha_meaning"] == "fraction of model B (0 = A, 1 = B)"
    models = json.loads(meta["sd_merge_models"])
    assert models[sha["a"]]["name"] == "sdxl-a" and models[sha["b"]]["name"] == "sdxl-b"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base" and meta["modelspec.title"] == "m"
    assert meta["modelspec.sai_model_spec"] == "1.0.0" and meta["modelspec.resolution"] == "1024x1024"
    assert result.metadata == meta
