"""The example configs in training/examples are valid, and `--check` passes on them with real-layout
models (header-only sparse files) and a small dataset; the SDXL character LoRA plans under 8 GB."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from animekit.__main__ import main
from animekit.training.config_toml import load_config
from support.tiny_sd import make_dataset
from support.tiny_single_file import write_header_only_checkpoint

EXAMPLES = Path(__file__).resolve().parents[1] / "training" / "examples"
CASES = {"sd15-lora.toml": "sd15", "sdxl-character-lora.toml": "sdxl"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_configs_load(name):
    cfg = load_config(EXAMPLES / name)
    assert cfg.network.type == "lora" and cfg.precision.gradient_checkpointing
    assert Path(cfg.model.path).suffix == ".safetensors"  # a single file, as users have them


@pytest.mark.parametrize("name", sorted(CASES))
def test_examples_pass_the_check_with_real_layout_models(tmp_path, capsys, name):
    config = tmp_path / name
    shutil.copy(EXAMPLES / name, config)
    cfg = load_config(config)
    write_header_only_checkpoint(Path(cfg.model.path), CASES[name])
    make_dataset(Path(cfg.dataset.folders[0].path), 2, size=(128, 96))
    assert main(["train", str(config), "--check"]) == 0
    out = capsys.readouterr().out
    peak = float(re.search(r"estimated peak GPU memory: (\d+\.\d) GiB", out).group(1))
    if CASES[name] == "sdxl":
        assert peak < 8 * 10**9 / 2**30  # kohya's documented 8 GB card for an SDXL LoRA
    assert out.rstrip().endswith("settings valid")
