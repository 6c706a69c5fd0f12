"""An extracted LoRA in a real ComfyUI: every key loads in ComfyUI's LoRA loader (nothing left
unloaded) and base + LoRA is the tuned model within the error the extraction reported, per layer."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file

from support.comfy_models import tiny_models

pytestmark = pytest.mark.host


def _tuned_from(base_models, seed: int):
    """A 'fine-tune' of the base: each UNet / text Linear or conv weight plus a rank-2 change and a little noise."""
    tuned = tiny_models("sd15", 1)  # same seed as the base: identical weights to start from
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (tuned.model.model, tuned.clip.cond_stage_model):
            for name, param in module.named_parameters():
                if param.dim() in (2, 4) and ("diffusion_model." in name or "encoder.layers" in name):
                    flat = param.reshape(param.shape[0], -1)
                    change = torch.randn(flat.shape[0], 2, generator=g) @ torch.randn(2, flat.shape[1], generator=g)
                    flat += 0.01 * change + 0.0005 * torch.randn(flat.shape, generator=g)
    return tuned


def test_extracted_lora_loads_fully_and_reproduces_the_tuned_model(comfy_host, tmp_path, caplog):
    import comfy.model_management as mm
    import comfy.sd

    from animekit.merge.lora_extract import ExtractConfig, extract_lora

    base = tiny_models("sd15", 1)
    tuned = _tuned_from(base, 5)
    base_file, tuned_file = tmp_path / "base.safetensors", tmp_path / "tuned.safetensors"
    comfy.sd.save_checkpoint(str(base_file), base.model, base.clip, base.vae)
    comfy.sd.save_checkpoint(str(tuned_file), tuned.model, tuned.clip, tuned.vae)
    result = extract_lora(ExtractConfig(tuned_file, base_file, tmp_path / "lora.safetensors", rank=4, conv_rank=4, dtype="fp32"))
    lora = load_file(result.path)
    assert len(result.layers) > 250 and sorted(l.error for l in result.layers)[len(result.layers) // 2] < 0.2

    with caplog.at_level(logging.WARNING):
        model, clip = comfy.sd.load_lora_for_models(base.model, base.clip, lora, 1.0, 1.0)
    assert not [r.message for r in caplog.records if "not loaded" in r.message.lower()]
    assert len(model.patches) + len(clip.patcher.patches) == len(result.layers)

    def state(patcher):
        mm.load_models_gpu([patcher], force_patch_weights=True)
        try:
            return {k: v.detach().clone() for k, v in patcher.model.state_dict().items()}
        finally:
            mm.unload_all_models()

    got = {**state(model), **state(clip.patcher)}
    want = {**tuned.model.model.state_dict(), **tuned.clip.cond_stage_model.state_dict()}
    was = {**base.model.model.state_dict(), **base.clip.cond_stage_model.state_dict()}
    by_name = {l.name: l for l in result.layers}
    patched = {**{k: k for k in model.patches}, **{k: k for k in clip.patcher.patches}}
    assert len(patched) == len(by_name)
    from animekit.merge.lora_names import kohya_module

    checked = 0
    for key in patched:  # per layer: |base + LoRA - tuned| / |tuned - base| is the error the extraction reported
        ckpt_key = "model." + key if key.startswith("diffusion_model.") else key.replace("clip_l.", "cond_stage_model.", 1)
        layer = by_name[kohya_module("sd15", ckpt_key)[0]]
        change = (want[key].float() - was[key].float()).norm()
        miss = float((got[key].float() - want[key].float()).norm() / change)
        assert miss == pytest.approx(layer.error, abs=1e-4), key
        checked += 1
    assert checked == len(result.layers)
