"""AnimeKitLoraBlockWeight in a real ComfyUI: each block's weights equal ComfyUI's own LoRA loader at
strength x block weight, the pure kohya key -> block map agrees with ComfyUI's key map on the real
block structure, and the node runs in a prompt through the executor."""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import save_file

from support.comfy_models import tiny_models
from support.executor import configure_folders, execute_prompt, run_prompt, tiny_txt2img_prompt

pytestmark = pytest.mark.host
LBW17 = "0.5,1,0,0.25,1,0,1,0.75,1,0,0.5,1,0,1,0.25,1,0"  # BASE, IN01, IN02, IN04, IN05, IN07, IN08, M00, OUT03..OUT11


def kohya_lora(models, rank: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A kohya-format LoRA (diffusers-named UNet modules, lora_te_ text modules, LoCon for convs) on
    every Linear / conv weight of the tiny SD1.5 model and CLIP that ComfyUI's key map knows."""
    import comfy.lora

    key_map = comfy.lora.model_lora_keys_unet(models.model.model, {})
    key_map = comfy.lora.model_lora_keys_clip(models.clip.cond_stage_model, key_map)
    unet = models.model.model.state_dict()
    clip = models.clip.cond_stage_model.state_dict()
    g = torch.Generator().manual_seed(seed)
    lora = {}
    for name, target in key_map.items():
        if not isinstance(target, str) or not name.startswith(("lora_unet_", "lora_te_")):
            continue
        if name.startswith("lora_unet_") and name[len("lora_unet_"):].startswith(("input_blocks", "middle_block", "output_blocks")):
            continue  # ComfyUI maps ldm names too; kohya SD1 LoRAs use the diffusers ones
        weight = unet.get(target, clip.get(target))
        if weight is None or weight.dim() not in (2, 4):
            continue
        out_dim, in_dim = weight.shape[0], weight.shape[1]
        if weight.dim() == 2:
            down, up = torch.randn(rank, in_dim, generator=g), torch.randn(out_dim, rank, generator=g)
        else:
            down = torch.randn(rank, in_dim, *weight.shape[2:], generator=g)
            up = torch.randn(out_dim, rank, 1, 1, generator=g)
        lora[f"{name}.lora_down.weight"] = down * 0.1
        lora[f"{name}.lora_up.weight"] = up * 0.1
        lora[f"{name}.alpha"] = torch.tensor(float(rank))
    return lora


def sampled(patcher) -> dict[str, torch.Tensor]:
    import comfy.model_management as mm

    mm.load_models_gpu([patcher], force_patch_weights=True)
    try:
        return {k: v.detach().clone() for k, v in patcher.model.state_dict().items()}
    finally:
        mm.unload_all_models()


def test_each_block_equals_comfyuis_loader_at_its_strength(comfy_host):
    import comfy.sd

    from animekit.checkpoints.architecture import SD15
    from animekit.merge.block_vectors import resolve_vector
    from animekit.merge.blocks import unet_block
    from animekit.merge.lora_blocks import lora_key_block

    models = tiny_models("sd15", 1)
    lora = kohya_lora(models)
    module = sys.modules[f"{comfy_host.pack_module}.nodes.lora_block_nodes"]
    model, clip, report = module.apply_block_weights(models.model, models.clip, lora, 0.8, 0.6, LBW17)
    vector = resolve_vector(LBW17, SD15)
    assert "17-value LBW form" in report and "\nOUT11         0" in report
    got_unet, got_clip = sampled(model), sampled(clip.patcher)
    key_map = {}
    import comfy.lora
    key_map = comfy.lora.model_lora_keys_unet(models.model.model, key_map)
    checked = set()
    for w in sorted(set(vector.values[1:])):  # the UNet: ComfyUI's own loader at 0.8 x w, on the blocks weighted w
        want = sampled(comfy.sd.load_lora_for_models(models.model, None, lora, 0.8 * w, 0)[0])
        for key, value in want.items():
            if key.startswith("diffusion_model.") and vector.of(unet_block(SD15, key[len("diffusion_model."):])) == w:
                assert torch.equal(got_unet[key], value), key
                checked.add(key)
    assert len(checked) == len([k for k in got_unet if k.startswith("diffusion_model.")]) > 600
    want_clip = sampled(comfy.sd.load_lora_for_models(None, models.clip, lora, 0, 0.6 * 0.5)[1].patcher)
    assert all(torch.equal(got_clip[k], v) for k, v in want_clip.items())
    assert any(not torch.equal(got_clip[k], v) for k, v in models.clip.cond_stage_model.state_dict().items())
    # the pure kohya name -> block map agrees with ComfyUI's key map on every module of the file
    names = {k.split(".", 1)[0] for k in lora if k.startswith("lora_unet_")}
    assert len(names) > 50
    for name in names:
        target = key_map[name]
        assert lora_key_block(SD15, name) == unet_block(SD15, target[len("diffusion_model."):]), name


def test_node_runs_in_a_prompt_and_refuses_bad_vectors(comfy_host, tmp_path):
    models = tiny_models("sd15", 0)
    with configure_folders(tmp_path) as folders:
        save_file(kohya_lora(models), str(folders.loras / "tiny.safetensors"))
        prompt = tiny_txt2img_prompt("sd15")
        prompt["lbw"] = {"class_type": "AnimeKitLoraBlockWeight", "inputs": {
            "model": ["models", 0], "clip": ["models", 1], "lora_name": "tiny.safetensors", "strength_model": 1.0,
            "strength_clip": 1.0, "preset": "OUTALL", "block_weights": ""}}
        prompt["sampler"]["inputs"]["model"] = ["lbw", 0]
        prompt["positive"]["inputs"]["clip"] = ["lbw", 1]
        result = run_prompt(comfy_host, prompt)
        assert result.output("decode").shape == (1, 64, 64, 3)
        assert "LBW preset OUTALL" in result.output("lbw", 2)
        prompt["lbw"]["inputs"].update(preset="custom", block_weights="1,2,3")
        failed = execute_prompt(comfy_host, prompt)
        assert not failed.success and "has one of these lengths" in failed.error["exception_message"]
