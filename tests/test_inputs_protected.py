"""Every input is protected and output problems are found before the work starts: no output may be
any file the command reads (VAE, preset file, hash cache, models), through symlinks and hard links
too; a folder, an unwritable place or too little space is refused before a tensor is read."""

from __future__ import annotations

import os

import pytest

from animekit.__main__ import main
from animekit.files import output_checks
from animekit.files.output_checks import check_output_path
from animekit.merge.safetensors_stream import SafetensorsFile
from support.checkpoints import write_checkpoint

WEIGHTS = ",".join(["0.5"] * 26)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("protect")
    return {name: write_checkpoint(root / f"{name}.safetensors", "sd15", seed=seed) for name, seed in (("a", 1), ("b", 2), ("vae", 3))}


@pytest.fixture
def no_reads(monkeypatch):
    monkeypatch.setattr(SafetensorsFile, "read_into", lambda *a, **k: pytest.fail("a tensor was read"))


def _snapshot(path):
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


@pytest.mark.parametrize("link", ["same name", "symlink", "hard link"])
def test_output_named_like_the_vae_file_is_refused(tmp_path, models, capsys, link, no_reads, monkeypatch):
    monkeypatch.setenv("ANIMEKIT_HASH_CACHE", str(tmp_path / "cache.json"))
    vae = tmp_path / "vae.safetensors"
    vae.write_bytes(models["vae"].read_bytes())
    out = {"same name": vae, "symlink": tmp_path / "link.safetensors", "hard link": tmp_path / "hard.safetensors"}[link]
    if link == "symlink":
        out.symlink_to(vae)
    elif link == "hard link":
        os.link(vae, out)
    before = _snapshot(vae)
    code = main(["merge", str(models["a"]), str(models["b"]), "--weights", WEIGHTS, "--vae", str(vae),
                 "--overwrite", "--quiet", "-o", str(out)])
    assert code == 2
    assert "is the VAE file; inputs are never overwritten" in capsys.readouterr().err
    assert _snapshot(vae) == before


def test_output_named_like_the_preset_file_is_refused(tmp_path, models, capsys, no_reads, monkeypatch):
    monkeypatch.setenv("ANIMEKIT_HASH_CACHE", str(tmp_path / "cache.json"))
    presets = tmp_path / "mine.safetensors"  # odd name, but it is what the user pointed at
    presets.write_text("MINE\t" + WEIGHTS + "\n")
    code = main(["merge", str(models["a"]), str(models["b"]), "--presets", str(presets), "--preset", "MINE",
                 "--overwrite", "--quiet", "-o", str(presets)])
    assert code == 2 and "is the preset file; inputs are never overwritten" in capsys.readouterr().err
    assert presets.read_text().startswith("MINE\t")


def test_output_that_is_a_folder_is_refused_before_work(tmp_path, models, capsys, no_reads, monkeypatch):
    monkeypatch.setenv("ANIMEKIT_HASH_CACHE", str(tmp_path / "cache.json"))
    folder = tmp_path / "merged.safetensors"
    folder.mkdir()
    code = main(["merge", str(models["a"]), str(models["b"]), "--weights", WEIGHTS, "--overwrite", "--quiet", "-o", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and "is a folder; give a file name" in err and "Traceback" not in err


def test_unwritable_folder_is_refused_naming_it(tmp_path, monkeypatch):
    # root ignores permission bits, so the check's own question is what the test controls
    monkeypatch.setattr(output_checks.os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match=r"cannot write in .* \(no write permission\) for output"):
        check_output_path(tmp_path / "x" / "out.safetensors", {}, overwrite=False)


def test_existing_output_names_the_overwrite_switch(tmp_path):
    out = tmp_path / "out.safetensors"
    out.write_text("old")
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        check_output_path(out, {}, overwrite=False)
    with pytest.raises(FileExistsError, match="pass overwrite=true"):
        check_output_path(out, {}, overwrite=False, overwrite_hint="overwrite=true")
    assert check_output_path(out, {"model A": tmp_path / "a.safetensors"}, overwrite=True) == out


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("full checkpoint", "is a full SD1.x checkpoint, not a VAE"),
        ("lora", "is a LoRA, not a VAE"),
        ("text encoder", "is text encoder(s) only (no UNet keys), not a VAE"),
    ],
)
def test_wrong_kind_of_file_as_vae_is_refused_by_name(tmp_path, models, capsys, kind, expected, no_reads, monkeypatch):
    import torch
    from safetensors.torch import save_file

    monkeypatch.setenv("ANIMEKIT_HASH_CACHE", str(tmp_path / "cache.json"))
    if kind == "full checkpoint":
        vae = models["vae"]  # a whole SD1.5 checkpoint, given where a VAE belongs
    else:
        vae = tmp_path / "wrong.safetensors"
        key = "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight" if kind == "lora" \
            else "cond_stage_model.transformer.text_model.final_layer_norm.weight"
        save_file({key: torch.zeros(4)}, vae)
    out = tmp_path / "out.safetensors"
    code = main(["merge", str(models["a"]), str(models["b"]), "--weights", WEIGHTS, "--vae", str(vae), "--quiet", "-o", str(out)])
    assert code == 2 and expected in capsys.readouterr().err
    assert not out.exists()
