"""The merge-method registry and the SuperMerger modes it adds (slerp, train difference, cosine A/B,
triple sum, sum twice): every key of real SD1.5 / SDXL layouts merged file to file, checked exactly
against formulas written here independently of merge/methods.py and merge/cosine.py."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from animekit.merge.checkpoint_merge import FileMergeConfig, merge_checkpoints
from animekit.merge.methods import METHODS, REGISTRY, MergeMethod, merge_values
from animekit.merge.presets import builtin_presets
from animekit.merge.weights import WeightChoice
from support.checkpoints import write_checkpoint
from support.merge_formulas import cos_stats, expected

LAYOUTS = {"sd15": 26, "sdxl": 20}
NEW = ("slerp", "train-difference", "cosine-a", "cosine-b", "triple-sum", "sum-twice")
T = lambda *v: torch.tensor(v, dtype=torch.float32)  # noqa: E731


@pytest.fixture(autouse=True)
def private_hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMEKIT_HASH_CACHE", str(tmp_path / "sha256-cache.json"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("method-inputs")
    return {
        (name, role): write_checkpoint(root / f"{name}-{role}.safetensors", name, seed=seed)
        for name in LAYOUTS for role, seed in (("a", 1), ("b", 2), ("c", 3))
    }


def block_index(name: str, key: str) -> int | None:
    """Index into the weight vector (BASE, IN.., M00, OUT..) of a key, None when it stays A's."""
    if "weight" not in key and "bias" not in key:
        return None
    if key.startswith(("cond_stage_model.", "conditioner.embedders.")):
        return 0
    n = 12 if name == "sd15" else 9
    m = re.match(r"model\.diffusion_model\.(\w+?)(?:\.(\d+))?\.", key)
    if m is None:
        return None
    part, index = m.groups()
    if part in ("time_embed", "label_emb"):
        return 1
    if part == "middle_block":
        return 1 + n
    if part == "out":
        return 2 * n + 1
    return 1 + int(index) if part == "input_blocks" else 2 + n + int(index)


def weights_for(name: str, seed: int) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    values = [round(v, 4) for v in torch.rand(LAYOUTS[name], generator=g).tolist()]
    values[2], values[4] = 0.0, 1.0
    return values


@pytest.mark.parametrize("arch", list(LAYOUTS))
@pytest.mark.parametrize("method_name", NEW)
def test_every_key_matches_its_formula(tmp_path, files, arch, method_name):
    method = MergeMethod(method_name, beta=0.3)
    weights = weights_for(arch, 5)
    config = FileMergeConfig(
        model_a=files[arch, "a"], model_b=files[arch, "b"],
        model_c=files[arch, "c"] if method.needs_base else None, output=tmp_path / "m.safetensors",
        weights=WeightChoice(weights=",".join(map(str, weights))), method=method,
    )
    result = merge_checkpoints(config)
    a, b, c = (load_file(files[arch, r]) for r in "abc")
    out = load_file(result.path)
    merged_keys = [k for k in a if block_index(arch, k) is not None]
    stats = None
    if method_name.startswith("cosine"):
        stats = cos_stats(((a[k].float(), b[k].float()) for k in merged_keys), method_name == "cosine-a")
    mismatched = []
    for key, value in out.items():
        index = block_index(arch, key)
        if index is None:
            assert torch.equal(value, a[key]), key
            continue
        want = expected(method_name, weights[index], a[key].float(), b[key].float(), c[key].float(), beta=0.3, stats=stats).half()
        if not torch.equal(value, want):
            mismatched.append(key)
    assert mismatched == [] and len(out) == len(a)
    recipe = json.loads(safe_open(result.path, "pt").metadata()["sd_merge_recipe"])
    assert (recipe["mode"], recipe["calcmode"]) == REGISTRY[method_name].supermerger
    assert recipe["beta"] == (0.3 if method_name in ("triple-sum", "sum-twice") else None)


def test_slerp_is_linear_for_parallel_vectors_and_spherical_otherwise():
    a = T(1, 0)
    assert torch.equal(merge_values(MergeMethod("slerp"), 0.25, a, T(3, 0)), T(1.5, 0))  # parallel: lerp
    half = merge_values(MergeMethod("slerp"), 0.5, T(1, 0), T(0, 1))
    assert torch.allclose(half, T(math.sqrt(0.5), math.sqrt(0.5)), atol=1e-7)  # on the unit circle, not (0.5, 0.5)
    assert torch.equal(merge_values(MergeMethod("slerp"), 0.0, T(1, 2), T(-2, 1)), T(1, 2))
    assert torch.equal(merge_values(MergeMethod("slerp"), 0.3, T(0, 0), T(2, 4)), T(0.6, 1.2))  # zero vector: lerp


def test_train_difference_by_hand():
    # A=0, B=2, C=1: |B-A|=2, |B-C|=1 -> ratio 2/3 -> 1.8*w*(B-C)*2/3; B == C adds nothing
    out = merge_values(MergeMethod("train-difference"), 0.5, T(0, 5), T(2, 3), T(1, 3))
    assert torch.allclose(out, T(0.9 * 2 / 3, 5), atol=1e-7)


def test_triple_sum_and_sum_twice_by_hand():
    a, b, c = T(1, 2), T(3, 4), T(5, 10)
    assert torch.equal(merge_values(MergeMethod("triple-sum", beta=0.25), 0.5, a, b, c), T(3.0, 5.0))
    assert torch.equal(merge_values(MergeMethod("sum-twice", beta=0.5), 0.5, a, b, c), T(3.5, 6.5))


def test_registry_describes_every_method_once():
    assert METHODS[:4] == ("weighted-sum", "add-difference", "ties", "dare")  # node values workflows bind to
    assert set(NEW) <= set(METHODS)
    for name, spec in REGISTRY.items():
        assert spec.name == name and spec.formula and callable(spec.function)
    assert [n for n, s in REGISTRY.items() if s.needs_base] == [
        "add-difference", "ties", "dare", "train-difference", "triple-sum", "sum-twice"]
    assert [n for n, s in REGISTRY.items() if not s.elementwise] == ["ties", "slerp", "cosine-a", "cosine-b"]
    assert MergeMethod("triple-sum", beta=0.2).formula.endswith("beta 0.2")
    with pytest.raises(ValueError, match="needs a third model C"):
        merge_values(MergeMethod("sum-twice"), 0.5, T(1), T(2))
    with pytest.raises(ValueError, match="cosine similarity range"):
        merge_values(MergeMethod("cosine-a"), 0.5, T(1), T(2))
    with pytest.raises(ValueError, match="beta must be a finite number"):
        MergeMethod("triple-sum", beta=float("nan"))


def test_cli_lists_the_new_modes_and_merges_with_beta(tmp_path, files, capsys):
    from animekit.__main__ import main

    out = tmp_path / "t.safetensors"
    assert main(["merge", str(files["sd15", "a"]), str(files["sd15", "b"]), "--base", str(files["sd15", "c"]),
                 "--method", "triple-sum", "--beta", "0.25", "--preset", "HIGHRES_REPLACE", "--quiet", "-o", str(out)]) == 0
    merged, a, b, c = (load_file(p) for p in (out, files["sd15", "a"], files["sd15", "b"], files["sd15", "c"]))
    key = "model.diffusion_model.input_blocks.2.1.proj_in.weight"  # IN02: HIGHRES_REPLACE weight 1
    w = builtin_presets().get("HIGHRES_REPLACE")[3]
    assert w == 1.0
    assert torch.equal(merged[key], (a[key].float() * (1 - w - 0.25) + b[key].float() * w + c[key].float() * 0.25).half())
    with pytest.raises(SystemExit):
        main(["merge", "a", "b", "--method", "nope", "--preset", "X"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
