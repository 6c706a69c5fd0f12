"""`animekit train CONFIG.toml [--resume DIR]` end to end on a tiny model and dataset."""

from __future__ import annotations

import csv
import sys

import pytest
import torch
from safetensors import safe_open

from animekit.__main__ import main
from support.optional import requires
from support.tiny_sd import make_dataset, make_model_folder

torch.set_num_threads(1)

CONFIG = """
seed = 5
[model]
path = "model"
[network]
rank = 4
alpha = 2
[optimizer]
lr = 1e-3
[schedule]
max_steps = {max_steps}
[save]
output_dir = "out"
name = "mini"
every_n_steps = 2
{extra}
[dataset]
batch_size = 2
[dataset.buckets]
resolution = 64
min_size = 64
max_size = 128
[[dataset.folders]]
path = "data"
"""


@pytest.fixture
def project(tmp_path):
    make_model_folder(tmp_path / "model", "sd15")
    make_dataset(tmp_path / "data", 4)
    return tmp_path


SAMPLES = """
[sample]
every_n_steps = 2
prompts = ["1girl, solo", "cat"]
steps = 2
[logging]
tensorboard = false
"""
TENSORBOARD = """
[logging]
tensorboard = true
"""
CSV_ONLY = """
[logging]
tensorboard = false
"""


def write_config(project, max_steps: int, extra: str = CSV_ONLY):
    path = project / "train.toml"
    path.write_text(CONFIG.format(max_steps=max_steps, extra=extra), encoding="utf-8")
    return path


def test_train_writes_lora_states_log_and_samples(project, capsys):
    config = write_config(project, 4, SAMPLES)
    assert main(["train", str(config)]) == 0
    out = project / "out"
    assert f"wrote {out / 'mini.safetensors'} after 4 steps" in capsys.readouterr().out
    with safe_open(str(out / "mini.safetensors"), framework="pt") as handle:
        meta = handle.metadata()
        keys = list(handle.keys())
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys
    assert meta["ss_output_name"] == "mini" and meta["ss_steps"] == "4"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert (out / "mini-step00000002.safetensors").is_file()
    assert sorted(p.name for p in out.glob("state-*")) == ["state-00000002", "state-00000004"]
    with open(out / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    assert all(float(r["loss"]) > 0 and float(r["lr_unet"]) == 1e-3 for r in rows)
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "mini-step00000002-00.png", "mini-step00000002-01.png", "mini-step00000004-00.png", "mini-step00000004-01.png",
    ]  # fmt: skip
    assert not (out / "tensorboard").exists()


@requires("tensorboard")
def test_train_writes_tensorboard_events(project):
    assert main(["train", str(write_config(project, 2, TENSORBOARD))]) == 0
    assert len(list((project / "out" / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_without_tensorboard_the_log_is_csv_only(project, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the package were absent
    with pytest.warns(UserWarning, match="tensorboard package is not installed; writing log.csv only"):
        assert main(["train", str(write_config(project, 2, TENSORBOARD))]) == 0
    assert not (project / "out" / "tensorboard").exists()
    with open(project / "out" / "log.csv", newline="") as handle:
        assert [r["step"] for r in csv.DictReader(handle)] == ["1", "2"]


def test_resume_continues_the_log_and_the_step_count(project, capsys):
    assert main(["train", str(write_config(project, 2))]) == 0
    assert main(["train", str(write_config(project, 4)), "--resume", str(project / "out")]) == 0
    assert "after 4 steps" in capsys.readouterr().out
    with open(project / "out" / "log.csv", newline="") as handle:
        assert [r["step"] for r in csv.DictReader(handle)] == ["1", "2", "3", "4"]


def test_check_validates_without_training(project, capsys):
    assert main(["train", str(write_config(project, 4)), "--check"]) == 0
    out = capsys.readouterr().out
    assert "dataset: 4 images (4 per epoch with repeats), 0 skipped" in out and out.rstrip().endswith("settings valid")
    assert "estimated peak GPU memory: " in out
    assert not (project / "out").exists()


def test_bad_config_is_a_clean_error(project, capsys):
    path = project / "bad.toml"
    path.write_text(CONFIG.format(max_steps=4, extra=CSV_ONLY).replace("rank = 4", "rnak = 4"), encoding="utf-8")
    assert main(["train", str(path)]) == 2
    assert "animekit train: error: unknown key 'network.rnak'; did you mean 'network.rank'?" in capsys.readouterr().err
    assert main(["train", str(project / "missing.toml")]) == 2
