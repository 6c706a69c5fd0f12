"""`model.path` = a single-file SD1.5 / SDXL checkpoint, offline (pure tier).

Header facts are checked on full-size real-layout headers (sparse files: nothing is read or held);
loading and training on tiny checkpoints in the real key layout, with the tiny component configs
handed to the loader in place of the shipped real ones.
"""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from animekit.__main__ import main
from animekit.checkpoints.architecture import SD15, SDXL
from animekit.training import model_facts
from animekit.training.adapters import single_file
from animekit.training.config import ModelConfig
from animekit.training.config_toml import config_from_dict
from animekit.training.model_facts import inspect_model
from animekit.training.run import train
from support.tiny_sd import make_dataset
from support.tiny_single_file import make_single_file, make_tiny_vocab, tiny_configs, write_header_only_checkpoint

torch.set_num_threads(1)

REAL_PARAMS = {
    "sd15": {"unet": 859_520_964, "te1": 123_060_480, "vae": 83_653_863},
    "sdxl": {"unet": 2_567_463_684, "te1": 123_060_480, "te2": 694_659_841, "vae": 83_653_863},
}


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
@pytest.mark.parametrize("dtype", ["F16", "BF16", "F32"])
def test_header_facts_of_real_layouts(tmp_path, arch, dtype):
    path = write_header_only_checkpoint(tmp_path / "model.safetensors", arch, dtype=dtype)
    facts = inspect_model(ModelConfig(path=str(path)))
    assert (facts.kind, facts.arch, facts.dtype) == ("single-file", arch, dtype)
    assert (facts.prediction, facts.zero_terminal_snr) == ("epsilon", False)
    assert facts.params == REAL_PARAMS[arch]


def test_v_prediction_markers_and_metadata(tmp_path):
    noob = write_header_only_checkpoint(tmp_path / "noob.safetensors", "sdxl", markers=("v_pred", "ztsnr"))
    facts = inspect_model(ModelConfig(path=str(noob)))
    assert (facts.prediction, facts.prediction_source, facts.zero_terminal_snr) == ("v_prediction", "v_pred key", True)
    assert facts.describe().startswith("SDXL single-file (F16), v_prediction (v_pred key), zero terminal SNR; parameters: unet 2567M")
    spec = write_header_only_checkpoint(tmp_path / "v.safetensors", "sd15", metadata={"modelspec.prediction_type": "v"})
    assert inspect_model(ModelConfig(path=str(spec))).prediction == "v_prediction"


def test_bad_model_paths_name_the_path_and_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model.path '.*missing.safetensors' does not exist; expected an SD1.5 / SDXL"):
        inspect_model(ModelConfig(path=str(tmp_path / "missing.safetensors")))
    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(lora))
    with pytest.raises(ValueError, match=r"model.path 'lora.safetensors' is a LoRA, not a checkpoint; expected an SD1.x or SDXL"):
        inspect_model(ModelConfig(path=str(lora)))
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"pickled .ckpt / .pt files are not loaded"):
        inspect_model(ModelConfig(path=str(ckpt)))
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileNotFoundError, match=r"is a folder but not a diffusers model \(no unet/\)"):
        inspect_model(ModelConfig(path=str(tmp_path / "folder")))
    sd15 = write_header_only_checkpoint(tmp_path / "sd15.safetensors", "sd15")
    with pytest.raises(ValueError, match=r"model.arch = 'sdxl' but model.path .* holds an sd15 model"):
        inspect_model(ModelConfig(path=str(sd15), arch="sdxl"))


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """Tiny real-layout files load with tiny configs; HF_HUB_OFFLINE proves nothing is fetched."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(single_file, "reference_config", tiny_configs)
    monkeypatch.setattr(
        model_facts, "detect_architecture", lambda shapes, name: SDXL if any("label_emb" in k for k in shapes) else SD15
    )
    make_dataset(tmp_path / "data", 4)
    make_tiny_vocab(tmp_path / "vocab")
    return tmp_path


CONFIG = """
[model]
path = "{model}"
tokenizer = "vocab"
[network]
rank = 4
alpha = 2
{network}
[schedule]
max_steps = 2
[save]
output_dir = "out"
name = "single"
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


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_cli_trains_a_lora_from_a_single_file_offline(tiny, capsys, arch):
    make_single_file(tiny / "model.safetensors", arch, dtype=torch.bfloat16)
    config = tiny / "train.toml"
    config.write_text(CONFIG.format(model="model.safetensors", network=""), encoding="utf-8")
    assert main(["train", str(config)]) == 0
    assert "wrote" in capsys.readouterr().out
    with safe_open(str(tiny / "out" / "single.safetensors"), framework="pt") as handle:
        keys, meta = set(handle.keys()), handle.metadata()
    first = {
        "sd15": "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight",
        "sdxl": "lora_unet_input_blocks_3_1_transformer_blocks_0_attn1_to_q.lora_down.weight",
    }[arch]
    assert first in keys and all(k.startswith("lora_unet_") for k in keys)
    assert meta["ss_sd_model_name"] == "model" and meta["ss_v2"] == "False"
    assert meta["modelspec.architecture"] == {"sd15": "stable-diffusion-v1/lora", "sdxl": "stable-diffusion-xl-v1-base/lora"}[arch]


def test_full_finetune_of_a_v_prediction_file_saves_the_same_layout_and_markers(tiny):
    source = make_single_file(tiny / "noob.safetensors", "sdxl", markers=("v_pred", "ztsnr"))
    cfg = config_from_dict(
        {
            "model": {"path": str(source), "tokenizer": str(tiny / "vocab")},
            "network": {"type": "full"},
            "objective": {"zero_terminal_snr": True},
            "optimizer": {"type": "adafactor", "lr": 1e-4},
            "schedule": {"max_steps": 1},
            "save": {"output_dir": str(tiny / "out"), "name": "ft", "save_state": False, "precision": "fp16"},
            "logging": {"tensorboard": False},
            "dataset": {"folders": [{"path": str(tiny / "data")}], "buckets": {"resolution": 64, "min_size": 64, "max_size": 64}},
        }
    )
    result = train(cfg)
    saved, before = load_file(str(result.output)), load_file(str(source))
    assert set(saved) == set(before)  # every key of the A1111 / ComfyUI layout, the v_pred and ztsnr markers included
    assert all(saved[k].shape == before[k].shape for k in before)
    changed = [k for k in before if k.startswith("model.diffusion_model.") and not torch.equal(saved[k], before[k])]
    assert changed  # the UNet was trained
