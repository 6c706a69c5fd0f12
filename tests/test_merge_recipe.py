"""`animekit merge --save-recipe / --recipe`: a recipe file redoes the merge; a merged file's
sd_merge_recipe redoes it too, finding the inputs by sha256 in --models-dir."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from animekit.__main__ import main
from support.checkpoints import write_checkpoint


@pytest.fixture(autouse=True)
def private_hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMEKIT_HASH_CACHE", str(tmp_path / "sha256-cache.json"))


@pytest.fixture
def models(tmp_path):
    return {r: write_checkpoint(tmp_path / "in" / f"{r}.safetensors", "sd15", seed=s) for r, s in (("a", 1), ("b", 2), ("c", 3))}


def same(x, y) -> bool:
    a, b = load_file(x), load_file(y)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_saved_recipe_redoes_the_merge(tmp_path, models, capsys):
    first, again, recipe = tmp_path / "m1.safetensors", tmp_path / "m2.safetensors", tmp_path / "r.json"
    assert main(["merge", str(models["a"]), str(models["b"]), "--base", str(models["c"]), "--method", "sum-twice",
                 "--beta", "0.25", "--preset", "LOWRES_REPLACE", "--quiet", "--save-recipe", str(recipe), "-o", str(first)]) == 0
    saved = json.loads(recipe.read_text())
    assert saved["method"] == "sum-twice" and saved["beta"] == 0.25 and saved["preset"] == "LOWRES_REPLACE"
    assert len(saved["model_a"]["sha256"]) == 64
    assert main(["merge", "--recipe", str(recipe), "--quiet", "-o", str(again)]) == 0
    assert same(first, again)
    # the command line overrides the recipe
    other = tmp_path / "m3.safetensors"
    assert main(["merge", "--recipe", str(recipe), "--alpha", "1", "--method", "weighted-sum", "--quiet", "-o", str(other)]) == 0
    key = "model.diffusion_model.input_blocks.1.1.proj_in.weight"
    assert torch.equal(load_file(other)[key], load_file(models["b"])[key])


def test_merged_files_recipe_finds_inputs_by_hash(tmp_path, models, capsys):
    merged, again = tmp_path / "merged.safetensors", tmp_path / "again.safetensors"
    assert main(["merge", str(models["a"]), str(models["b"]), "--base", str(models["c"]), "--method", "train-difference",
                 "--weights", ",".join(["0.3"] * 26), "--quiet", "-o", str(merged)]) == 0
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "in", moved)
    shutil.rmtree(tmp_path / "in")
    assert main(["merge", "--recipe", str(merged), "--models-dir", str(moved), "--quiet", "-o", str(again)]) == 0
    assert same(merged, again)
    assert main(["merge", "--recipe", str(merged), "--models-dir", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "model A: no checkpoint with sha256" in capsys.readouterr().err


def test_recipe_errors_are_clear(tmp_path, models, capsys):
    (tmp_path / "bad.json").write_text("{}")
    assert main(["merge", "--recipe", str(tmp_path / "bad.json"), "-o", str(tmp_path / "o.safetensors")]) == 2
    assert "not an AnimeKit recipe" in capsys.readouterr().err
    assert main(["merge", str(models["a"]), "-o", str(tmp_path / "o.safetensors")]) == 2
    assert "give model A and model B (or --recipe FILE)" in capsys.readouterr().err
    assert main(["merge", str(models["a"]), str(models["b"]), "-o", str(tmp_path / "o.safetensors")]) == 2
    assert "give --preset NAME, --weights W[,W...] or --alpha W" in capsys.readouterr().err
    assert main(["merge", "--recipe", str(models["a"]), "-o", str(tmp_path / "o.safetensors")]) == 2
    assert "has no sd_merge_recipe metadata" in capsys.readouterr().err
