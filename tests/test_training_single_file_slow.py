"""`animekit train` from a full-size single-file SD1.5 checkpoint of the real layout, offline, and
ComfyUI's own loaders on what it writes (host + slow tier: ~2 GB file, ~8 GB RAM, minutes on a CPU).

- a LoRA: ComfyUI's stock LoRA loader applies every key (no "lora key not loaded");
- a full fine-tune (of the text encoder, to keep the CPU's memory small): a single file that
  ComfyUI's checkpoint loader detects as SD1.5 again, every weight present.
"""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file

from animekit.__main__ import main
from support.checkpoints import write_checkpoint
from support.tiny_sd import make_dataset

pytestmark = [pytest.mark.host, pytest.mark.slow]

CONFIG = """
[model]
path = "sd15.safetensors"
[network]
{network}
[optimizer]
type = "adafactor"
lr = 1e-5
[schedule]
max_steps = 1
[save]
output_dir = "out"
name = "{name}"
save_state = false
[logging]
tensorboard = false
[dataset.buckets]
resolution = 64
min_size = 64
max_size = 64
[[dataset.folders]]
path = "data"
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd15_single")
    write_checkpoint(root / "sd15.safetensors", "sd15", full_size=True, dtype=torch.float16)
    make_dataset(root / "data", 2)
    return root


def run(project, monkeypatch, name: str, network: str):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(project)
    config = project / f"{name}.toml"
    config.write_text(CONFIG.format(network=network, name=name), encoding="utf-8")
    assert main(["train", str(config)]) == 0
    return project / "out" / f"{name}.safetensors"


def test_a_lora_from_a_real_layout_single_file_loads_fully_in_comfyui(comfy_host, project, monkeypatch, caplog):
    import comfy.sd

    lora_file = run(project, monkeypatch, "lora", 'type = "lora"\nrank = 4\ntrain_text_encoder = true')
    model, clip, _ = comfy.sd.load_checkpoint_guess_config(str(project / "sd15.safetensors"))[:3]
    lora = load_file(str(lora_file))
    with caplog.at_level(logging.WARNING):
        patched_model, patched_clip = comfy.sd.load_lora_for_models(model, clip, lora, 1.0, 1.0)
    assert not [r.message for r in caplog.records if "not loaded" in r.message.lower()]
    modules = {k.split(".")[0] for k in lora}
    assert len(patched_model.patches) + len(patched_clip.patcher.patches) == len(modules)
    assert any(k.startswith("lora_te_") for k in modules) and any(k.startswith("lora_unet_") for k in modules)


def test_a_full_fine_tune_of_a_single_file_is_the_same_architecture_in_comfyui(comfy_host, project, monkeypatch):
    import comfy.sd
    import comfy.supported_models

    output = run(project, monkeypatch, "full", 'type = "full"\ntrain_unet = false\ntrain_text_encoder = true')
    saved, source = load_file(str(output)), load_file(str(project / "sd15.safetensors"))
    assert set(saved) == set(source)
    model = comfy.sd.load_checkpoint_guess_config(str(output))[0]
    assert type(model.model.model_config) is comfy.supported_models.SD15
