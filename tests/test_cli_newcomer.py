"""What a newcomer meets first on the command line (issue 15): the short explain, one weight for every
block, negative weights in both spellings, tags from a file or standard input, help that says things
once, advice worded for where it is read (CLI flags vs node inputs)."""

from __future__ import annotations

import io

import pytest
import torch
from safetensors.torch import load_file

from animekit.__main__ import build_parser, main
from animekit.merge.checkpoint_merge import FileMergeConfig, plan_checkpoint_merge
from animekit.merge.explain import explain
from animekit.merge.naming import CLI, NODES
from animekit.merge.weights import WeightChoice
from animekit.prompting.cli import read_tags
from support.checkpoints import layout, write_checkpoint

SD15_BLOCKS = 26


@pytest.fixture(autouse=True)
def private_hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMEKIT_HASH_CACHE", str(tmp_path / "sha256-cache.json"))


@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd15")
    return {r: write_checkpoint(root / f"{r}.safetensors", "sd15", seed=s) for r, s in (("a", 1), ("b", 2))}


def merge_args(models, *extra):
    return ["merge", str(models["a"]), str(models["b"]), *extra]


# --- the short explain ------------------------------------------------------------------------------

def test_explain_is_a_block_table_and_a_summary_and_says_nothing_was_written(sd15, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(merge_args(sd15, "--preset", "HIGHRES_REPLACE", "--explain")) == 0
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert len(lines) < 50  # not one line per key (1,131 keys in an SD1.5 checkpoint)
    header = lines.index("block    weight   keys         params  method")
    table = lines[header + 1 : header + 1 + SD15_BLOCKS]
    assert [row.split()[0] for row in table][:3] == ["BASE", "IN00", "IN01"] and table[-1].split()[0] == "OUT11"
    assert "OUT09         1     38            600  weighted-sum" in table
    assert "IN07          0     38            600  copy A" in table  # weight 0 leaves the block exactly A's
    assert "stayed model A's at weight 0: 500 keys (BASE, IN00, IN07, IN08, IN09, IN10, IN11, M00, OUT00, OUT01, OUT02, OUT03, OUT04, OUT11)" in lines
    assert "stayed model A's, never merged: 249 keys (9,211 parameters):" in lines
    assert any(line.startswith("  248 keys: the VAE stays A's (the default); e.g. first_stage_model.") for line in lines)
    assert "    (--vae merge merges it under BASE, --vae FILE.safetensors bakes a VAE file in)" in lines
    assert lines[-1] == "(the block and weight of every key: --explain-keys)"
    assert "vae=merge" not in printed.out and "vae = " not in printed.out
    assert printed.err == "animekit merge: nothing written (a plan only); add -o OUTPUT.safetensors to write the merge\n"
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file, not even a hash cache


def test_explain_keys_adds_one_line_per_key(sd15, capsys):
    assert main(merge_args(sd15, "--preset", "HIGHRES_REPLACE", "--explain-keys")) == 0
    out = capsys.readouterr().out
    per_key = out.split("\nkey\tblock\tweight\n", 1)[1].splitlines()
    assert len(per_key) == len(layout("sd15"))  # every key of model A, once
    assert "model.diffusion_model.out.2.weight\tOUT11\t0" in per_key
    assert "--explain-keys)" not in out


def test_written_merge_with_explain_prints_the_same_short_report(sd15, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(merge_args(sd15, "--preset", "HIGHRES_REPLACE", "--explain")) == 0
    planned = capsys.readouterr().out
    assert main(merge_args(sd15, "--preset", "HIGHRES_REPLACE", "--explain", "--quiet", "-o", str(out))) == 0
    printed = capsys.readouterr()
    assert printed.out == planned
    assert printed.err.startswith(f"wrote {out} (")


def test_nodes_get_the_same_report_in_node_input_words(sd15):
    config = FileMergeConfig(model_a=sd15["a"], model_b=sd15["b"], output="", weights=WeightChoice(preset="HIGHRES_REPLACE"))
    plan = plan_checkpoint_merge(config)
    for_cli, for_nodes = explain(plan, naming=CLI), explain(plan, naming=NODES)
    assert "(vae = 'merge (BASE weight)' merges it under BASE, vae = a file from models/vae bakes a VAE file in)" in for_nodes
    assert "--" not in for_nodes  # no CLI flag in a node's report
    # the same report otherwise: only the advice and the pointer to --explain-keys differ
    differing = set(for_cli.splitlines()) ^ set(for_nodes.splitlines())
    assert len(differing) == 3


def test_a_preset_name_given_as_weights_is_advised_in_each_callers_words(sd15, capsys):
    from animekit.checkpoints.architecture import SD15
    from animekit.merge.weights import resolve_weights

    assert main(merge_args(sd15, "--weights", "GRAD_V", "--explain")) == 2
    assert "'GRAD_V' is a preset name, not a list of weights: use --preset GRAD_V" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"^'GRAD_V' is a preset name, not a list of weights: use preset = GRAD_V$"):
        resolve_weights(SD15, weights="GRAD_V", naming=NODES)


# --- one weight for every block, negative weights ---------------------------------------------------

def test_one_weight_and_alpha_mean_every_block(sd15, tmp_path):
    outs = {}
    for name, flag in (("weights", ["--weights", "0.25"]), ("alpha", ["--alpha", "0.25"]), ("list", ["--weights", ",".join(["0.25"] * 26)])):
        outs[name] = tmp_path / f"{name}.safetensors"
        assert main(merge_args(sd15, *flag, "--dtype", "fp32", "--quiet", "-o", str(outs[name]))) == 0
    merged = {name: load_file(path) for name, path in outs.items()}
    a, b = load_file(sd15["a"]), load_file(sd15["b"])
    key = "model.diffusion_model.middle_block.1.proj_in.weight"
    assert torch.equal(merged["weights"][key], a[key].float() * 0.75 + b[key].float() * 0.25)
    assert all(torch.equal(merged["weights"][k], merged["alpha"][k]) and torch.equal(merged["weights"][k], merged["list"][k]) for k in a)


@pytest.mark.parametrize("spelling", ["space", "equals", "alpha"])
def test_negative_weights_parse_in_both_spellings(spelling):
    weights = "-1,0.5," + ",".join(["0"] * 24)
    argv = {
        "space": ["merge", "A", "B", "--weights", weights],
        "equals": ["merge", "A", "B", f"--weights={weights}"],
        "alpha": ["merge", "A", "B", "--alpha", "-0.5"],
    }[spelling]
    args = build_parser().parse_args(argv)
    assert (args.weights, args.alpha) == ((None, -0.5) if spelling == "alpha" else (weights, None))
    assert (args.model_a, args.model_b) == ("A", "B")


def test_a_negative_list_still_cannot_swallow_a_real_option(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["merge", "A", "B", "--weights", "--explain"])
    assert "--weights: expected one argument" in capsys.readouterr().err


# --- prompt tags from a file or standard input ------------------------------------------------------

def test_prompt_reads_tags_from_standard_input(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("1girl\nsmile, hat\n"))
    assert main(["prompt", "--profile", "sd15-anime", "-"]) == 0
    from_stdin = capsys.readouterr().out
    assert main(["prompt", "--profile", "sd15-anime", "1girl, smile, hat"]) == 0
    assert from_stdin == capsys.readouterr().out
    assert "1girl, smile, hat" in from_stdin


def test_prompt_reads_tags_from_a_file_beyond_the_argument_limit(tmp_path, capsys):
    path = tmp_path / "tags.txt"
    many = [f"tag_{i}" for i in range(20_000)]  # about 200 KB: more than Linux takes in one argument
    path.write_text("1girl, " + ", ".join(many), encoding="utf-8")
    assert path.stat().st_size > 128 * 1024
    assert main(["prompt", "--json", "--tags-file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1girl" in out and "tag 19999" in out


def test_prompt_tag_sources_are_exclusive_and_required(tmp_path, capsys):
    assert main(["prompt"]) == 2
    assert "no tags: give TAGS" in capsys.readouterr().err
    assert main(["prompt", "1girl", "--tags-file", str(tmp_path / "t.txt")]) == 2
    assert "either as TAGS or with --tags-file, not both" in capsys.readouterr().err
    assert main(["prompt", "--tags-file", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt" in capsys.readouterr().err
    assert read_tags("-", None, stdin=io.StringIO("cat")) == "cat"


# --- help texts -------------------------------------------------------------------------------------

def help_text(capsys, *argv) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())  # unwrapped


def test_merge_help_says_each_thing_once_and_documents_the_hash_cache(capsys):
    text = help_text(capsys, "merge")
    assert text.count("fraction of model B") == 1
    assert "one weight for every block (--alpha 0.3, or --weights 0.3)" in text
    assert "--weights -1,... and --weights=-1,... both work" in text
    assert "~/.cache/animekit/sha256.json" in text and "ANIMEKIT_HASH_CACHE=off" in text and "delete the file" in text
    assert "(size, modification time)" not in text and "(absolute path, size, modification time)" in text


def test_merge_presets_help_has_a_description_with_the_real_count(capsys):
    text = help_text(capsys, "merge-presets")
    assert "Built in: HIGHRES_REPLACE, LOWRES_REPLACE and SuperMerger's 38 presets." in text
    assert main(["merge-presets"]) == 0
    listed = capsys.readouterr().out.splitlines()[1:]
    assert len(listed) == 2 + 38


def test_an_existing_output_names_overwrite(sd15, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"mine")
    assert main(merge_args(sd15, "--alpha", "0.5", "--quiet", "-o", str(out))) == 2
    assert "exists; choose another name or pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"mine"
