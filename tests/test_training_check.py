"""`animekit train CONFIG --check`: the model from its headers, the dataset, and the memory plan (pure tier).

Models are full-size real-layout headers over sparse files: nothing is read, nothing is held."""

from __future__ import annotations

import re

import pytest

from animekit.__main__ import main
from animekit.training.check import plan_memory
from animekit.training.config_toml import load_config
from animekit.training.memory_estimate import GIB
from animekit.training.model_facts import inspect_model
from support.tiny_sd import make_dataset
from support.tiny_single_file import write_header_only_checkpoint

CONFIG = """
[model]
path = "{model}"
{model_extra}
[network]
type = "{network}"
[optimizer]
type = "{optimizer}"
lr = {lr}
[precision]
mixed = "bf16"
gradient_checkpointing = true
{precision_extra}
[cache]
latents = "memory"
text_encoder_outputs = true
[schedule]
max_steps = 10
[save]
output_dir = "out"
[dataset.buckets]
resolution = 1024
[[dataset.folders]]
path = "data"
"""


def write(tmp_path, model="sdxl.safetensors", network="lora", optimizer="adamw8bit", lr="1e-4", model_extra="", precision_extra=""):
    path = tmp_path / "train.toml"
    path.write_text(
        CONFIG.format(model=model, network=network, optimizer=optimizer, lr=lr, model_extra=model_extra, precision_extra=precision_extra),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def project(tmp_path):
    write_header_only_checkpoint(tmp_path / "sdxl.safetensors", "sdxl", markers=("v_pred",))
    write_header_only_checkpoint(tmp_path / "sd15.safetensors", "sd15", dtype="BF16")
    make_dataset(tmp_path / "data", 3, size=(96, 64))
    return tmp_path


def test_check_prints_the_model_the_dataset_and_the_memory_plan(project, capsys):
    config = write(project)
    assert main(["train", str(config), "--check"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"model: {project / 'sdxl.safetensors'}"
    assert lines[1].startswith("  SDXL single-file (F16), v_prediction (v_pred key); parameters: unet 2567M, te1 123M, te2 695M, vae 84M")
    assert "dataset: 3 images (3 per epoch with repeats), 0 skipped, 1 buckets" in lines
    cfg = load_config(config)
    expected = plan_memory(cfg, inspect_model(cfg.model)).estimate()
    assert f"estimated peak GPU memory: {expected.total / GIB:.1f} GiB" in lines
    for part in ("  frozen weights ", "  trained weights + gradients + optimizer state ", "  activations ", "  overhead "):
        assert any(line.startswith(part) for line in lines), part
    assert re.search(r"for a smaller card: .*resolution = 768 \(-\d\.\d GiB\)", out)
    assert not (project / "out").exists()


def test_kohyas_documented_cards_are_accepted(project):
    """SDXL LoRA (rank 16, 8-bit AdamW, checkpointing, cached latents and text) on an 8 GB card; SDXL full
    fine-tune with Adafactor and bf16 weights on a 24 GB card."""
    lora = load_config(write(project))
    full = load_config(write(project, network="full", optimizer="adafactor", precision_extra="full_bf16 = true"))
    for cfg, card in ((lora, 8), (full, 24)):
        memory = plan_memory(cfg, inspect_model(cfg.model))
        assert memory.estimate().total < card * 10**9  # what the card's label says, in bytes
        memory.check(available=card * 10**9 - int(0.5 * GIB), device_name=f"{card} GB card")  # minus the CUDA context


def test_a_full_fine_tune_plan_counts_the_checkpoints_own_parameters(project):
    cfg = load_config(write(project, model="sd15.safetensors", network="full", optimizer="adafactor"))
    plan = plan_memory(cfg, inspect_model(cfg.model)).plan
    assert plan.params == {"unet": 859_520_964, "te1": 123_060_480, "vae": 83_653_863}
    assert (plan.trained_params, plan.full, plan.latents_cached, plan.text_cached) == (859_520_964, True, True, True)


def test_check_fails_on_a_missing_or_wrong_model(project, capsys):
    assert main(["train", str(write(project, model="missing.safetensors")), "--check"]) == 2
    err = capsys.readouterr().err
    assert f"model.path {str(project / 'missing.safetensors')!r} does not exist; expected an SD1.5 / SDXL single-file" in err
    (project / "notes.safetensors").write_bytes(b"\x04\x00\x00\x00\x00\x00\x00\x00{}  ")
    assert main(["train", str(write(project, model="notes.safetensors")), "--check"]) == 2
    assert "model.path 'notes.safetensors' is empty (no tensors); expected an SD1.x or SDXL checkpoint" in capsys.readouterr().err
    assert main(["train", str(write(project, model_extra='arch = "sd15"')), "--check"]) == 2
    assert "model.arch = 'sd15' but model.path" in capsys.readouterr().err


@pytest.mark.parametrize("lr", ["inf", "nan"])
def test_a_learning_rate_that_is_not_finite_fails_the_check(project, capsys, lr):
    assert main(["train", str(write(project, lr=lr)), "--check"]) == 2
    assert f"optimizer.lr must be a " in capsys.readouterr().err
