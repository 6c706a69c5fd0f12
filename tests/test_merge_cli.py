"""`animekit merge` / `animekit merge-presets` end to end through the real entry point."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from animekit.__main__ import main
from support.checkpoints import write_checkpoint


@pytest.fixture(autouse=True)
def private_hash_cache(tmp_path, monkeypatch):
    """Remembered input hashes go to a per-test file, never the user's cache."""
    monkeypatch.setenv("ANIMEKIT_HASH_CACHE", str(tmp_path / "sha256-cache.json"))


@pytest.fixture(scope="module")
def xl(tmp_path_factory):
    root = tmp_path_factory.mktemp("xl")
    return {r: write_checkpoint(root / f"{r}.safetensors", "sdxl", seed=s) for r, s in (("a", 1), ("b", 2), ("c", 3))}


def test_merge_writes_the_file_and_explains(tmp_path, xl, capsys):
    out = tmp_path / "m.safetensors"
    code = main(["merge", str(xl["a"]), str(xl["b"]), "--preset", "HIGHRES_REPLACE", "--dtype", "fp32", "--explain-keys", "--quiet", "-o", str(out)])
    assert code == 0
    printed = capsys.readouterr()
    assert "SDXL, 20 blocks" in printed.out and "preset HIGHRES_REPLACE (mapped to SDXL by resolution level)" in printed.out
    assert "\nOUT06         1     12            352  weighted-sum\n" in printed.out  # block, weight, keys, params, method
    assert "model.diffusion_model.out.2.weight\tOUT08\t0" in printed.out
    assert f"wrote {out}" in printed.err
    merged, a, b = load_file(out), load_file(xl["a"]), load_file(xl["b"])
    key = "model.diffusion_model.output_blocks.7.0.out_layers.3.weight"  # OUT07: w = 1
    assert merged[key].dtype == torch.float32 and torch.equal(merged[key], b[key].float())


def test_add_difference_with_base_and_weights_list(tmp_path, xl):
    out = tmp_path / "m.safetensors"
    weights = ",".join(["0.5"] * 20)
    assert main(["merge", str(xl["a"]), str(xl["b"]), "--base", str(xl["c"]), "--weights", weights,
                 "--method", "add-difference", "--quiet", "-o", str(out)]) == 0
    merged, a, b, c = (load_file(p) for p in (out, xl["a"], xl["b"], xl["c"]))
    key = "model.diffusion_model.label_emb.0.2.weight"
    assert torch.equal(merged[key], (a[key].float() + (b[key].float() - c[key].float()) * 0.5).half())


def test_explain_alone_plans_without_writing(tmp_path, xl, capsys):
    assert main(["merge", str(xl["a"]), str(xl["b"]), "--preset", "LOWRES_REPLACE", "--explain"]) == 0
    assert "stayed model A's" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--weights", "1,2,3"], "SDXL needs 20 weights (BASE, IN00..IN08, M00, OUT00..OUT08)"),
        (["--preset", "NOPE"], "unknown preset 'NOPE'; known presets: HIGHRES_REPLACE, LOWRES_REPLACE"),
        (["--weights", "0,zero"], "weight 2 ('zero') is not a number"),
        (["--preset", "GRAD_V", "--method", "ties"], "the ties method needs a base model C (--base)"),
    ],
)
def test_bad_requests_exit_2_with_the_reason(tmp_path, xl, capsys, extra, message):
    out = tmp_path / "m.safetensors"
    assert main(["merge", str(xl["a"]), str(xl["b"]), *extra, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("animekit merge: error: ") and message in err
    assert list(tmp_path.iterdir()) == []


def test_output_is_required_unless_explaining(xl, capsys):
    assert main(["merge", str(xl["a"]), str(xl["b"]), "--preset", "GRAD_V"]) == 2
    assert "give -o OUTPUT.safetensors" in capsys.readouterr().err


def test_presets_command_lists_sdxl_values(capsys, tmp_path):
    user = tmp_path / "p.tsv"
    user.write_text("preset_name\tpreset_weights\nMINE\t" + ",".join(str(i) for i in range(26)) + "\n")
    assert main(["merge-presets", "--arch", "sdxl", "--presets", str(user)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# SDXL: BASE, IN00..IN08, M00, OUT00..OUT08")
    assert lines[1] == "HIGHRES_REPLACE\t0,0,1,1,0.67,0.67,0.33,0.33,0,0,0,0,0,0.33,0.33,0.67,0.67,1,1,0"
    assert lines[-1] == "MINE\t0,1,2,3,4,5,6,7,8,9,13,17,18,19,20,21,22,23,24,25"


def test_presets_arch_takes_the_canonical_name_and_the_old_sd1_alias(capsys):
    assert main(["merge-presets", "--arch", "sd15"]) == 0
    canonical = capsys.readouterr().out
    assert canonical.startswith("# SD1.x: BASE, IN00..IN11, M00, OUT00..OUT11")
    assert main(["merge-presets", "--arch", "sd1"]) == 0  # what the command accepted before
    assert capsys.readouterr().out == canonical
    assert main(["merge-presets"]) == 0
    assert capsys.readouterr().out == canonical
    with pytest.raises(SystemExit) as exit_:
        main(["merge-presets", "--arch", "sd2"])
    assert exit_.value.code == 2
    assert "--arch must be one of sd15, sdxl, got 'sd2'" in capsys.readouterr().err


def test_a_broken_preset_file_is_a_warning_and_the_rest_still_lists(capsys, tmp_path):
    user = tmp_path / "p.tsv"
    user.write_text("preset_name\tpreset_weights\nMINE\t" + ",".join(["1"] * 26) + "\nBAD\t1,2\n")
    assert main(["merge-presets", "--presets", str(user)]) == 0
    printed = capsys.readouterr()
    names = [line.split("\t")[0] for line in printed.out.splitlines()[1:]]
    assert names[:2] == ["HIGHRES_REPLACE", "LOWRES_REPLACE"] and names[-1] == "MINE" and "BAD" not in names
    assert printed.err == "warning: skipped in the preset file: p.tsv line 3 (BAD): a preset needs 26 values in the SD1.x layout (BASE, IN00..IN11, M00, OUT00..OUT11), got 2\n"


def test_merge_with_a_shipped_preset_works_beside_a_broken_preset_file(tmp_path, xl, capsys):
    user = tmp_path / "p.tsv"
    user.write_text("preset_name\tpreset_weights\nBAD\t1,2\n")
    args = ["merge", str(xl["a"]), str(xl["b"]), "--presets", str(user), "--explain", "--quiet"]
    assert main([*args, "--preset", "GRAD_V"]) == 0
    assert "p.tsv line 2 (BAD)" in capsys.readouterr().err
    assert main([*args, "--preset", "BAD"]) != 0
    assert "preset 'BAD' cannot be used: p.tsv line 2 (BAD): a preset needs 26 values" in capsys.readouterr().err
