"""AnimeKitBakeLora through ComfyUI's executor: the baked file lands in output/checkpoints/ with the
formula's values, progress is reported, and a LoHa file fails the node by name leaving nothing."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from support.checkpoints import write_checkpoint
from support.executor import configure_folders, execute_prompt, run_prompt

pytestmark = pytest.mark.host
MODULE = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
KEY = "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"  # IN04


def _prompt(**inputs):
    return {"bake": {"class_type": "AnimeKitBakeLora", "inputs": {
        "ckpt_name": "sd15.safetensors", "lora_1": "one.safetensors", "strength_1": 0.5, "lora_2": "(none)", "strength_2": 1.0,
        "preset": "INS", "block_weights": "", "dtype": "fp32", "filename_prefix": "baked/test", **inputs}}}


def test_bake_node_writes_the_baked_checkpoint(comfy_host, tmp_path):
    with configure_folders(tmp_path) as folders:
        ckpt = write_checkpoint(folders.checkpoints / "sd15.safetensors", "sd15", seed=1)
        shape = load_file(ckpt)[KEY].shape
        g = torch.Generator().manual_seed(0)
        up, down = torch.randn(shape[0], 2, generator=g), torch.randn(2, shape[1], generator=g)
        save_file({f"{MODULE}.lora_up.weight": up, f"{MODULE}.lora_down.weight": down, f"{MODULE}.alpha": torch.tensor(1.0)},
                  str(folders.loras / "one.safetensors"))
        save_file({"lora_unet_x.hada_w1_a": torch.zeros(2, 2)}, str(folders.loras / "loha.safetensors"))
        result = run_prompt(comfy_host, _prompt())
        path = result.output("bake", 0)
        assert path == str(folders.output / "checkpoints" / "baked" / "test_00001_.safetensors")
        baked, base = load_file(path), load_file(ckpt)
        assert torch.equal(baked[KEY], base[KEY].float() + (up @ down) * 0.5 * 0.5)  # INS: IN04 = 1; alpha/rank = 0.5
        assert sum(not torch.equal(baked[k], base[k].float() if base[k].is_floating_point() else base[k]) for k in base) == 1
        assert "LBW preset INS" in result.output("bake", 1)
        assert any(event == "progress" for event, _ in result.messages)
        failed = execute_prompt(comfy_host, _prompt(lora_1="loha.safetensors"))
        assert not failed.success and "is a LyCORIS LoHa file" in failed.error["exception_message"]
        assert sorted(p.name for p in (folders.output / "checkpoints" / "baked").iterdir()) == ["test_00001_.safetensors"]
