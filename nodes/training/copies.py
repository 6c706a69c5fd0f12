"""Private copies of a MODEL / CLIP for a full fine-tune, so the inputs stay what they were.

ComfyUI shares one module between every clone of a MODEL (clones differ only in patches), and the
loader node's cached output is reused by the next run. Training the weights in place would change
all of them; a fine-tune therefore trains a copy. Patches on the input (e.g. a LoRA applied with
LoraLoader) are baked into the copy, so training continues from what the input computes.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

import comfy.model_management
import comfy.model_patcher

# What ModelPatcher records on a model / its layers while loaded; a fresh copy must not inherit it.
_MODEL_LOAD_STATE = ("model_loaded_weight_memory", "lowvram_patch_counter", "model_lowvram", "current_weight_patches_uuid")
_LAYER_LOAD_STATE = ("comfy_patched_weights", "weight_function", "bias_function", "prev_comfy_cast_weights", "comfy_cast_weights")


def _copy_module(patcher) -> nn.Module:
    """Deep copy of `patcher.model` with the patcher's weight patches applied, on the offload device."""
    mm = comfy.model_management
    with torch.inference_mode(False):
        if patcher.patches:
            mm.load_models_gpu([patcher], force_patch_weights=True, force_full_load=True)
        # never copy the patcher graph hanging off the model (it holds weight backups)
        memo = {id(patcher): None}
        current = getattr(patcher.model, "current_patcher", None)
        if current is not None:
            memo[id(current)] = None
        module = copy.deepcopy(patcher.model, memo)
        module.to(patcher.offload_device)
    for name in _MODEL_LOAD_STATE:
        module.__dict__.pop(name, None)
    if "current_patcher" in module.__dict__:
        module.current_patcher = None  # BaseModel's own initial value; the sampler sets it per run
    for sub in module.modules():
        for name in _LAYER_LOAD_STATE:
            sub.__dict__.pop(name, None)
    if hasattr(module, "device"):
        module.device = patcher.offload_device
    return module


def private_model(model):
    """A MODEL (ModelPatcher) that owns a copy of the input's weights, with its sampling settings."""
    base = _copy_module(model)
    copy_patcher = comfy.model_patcher.ModelPatcher(base, load_device=model.load_device, offload_device=model.offload_device)
    copy_patcher.object_patches = model.object_patches.copy()  # e.g. a ModelSamplingDiscrete override
    copy_patcher.model_options = copy.deepcopy(model.model_options)
    return copy_patcher


def private_clip(clip):
    """A CLIP that owns a copy of the input's text encoders (tokenizer and clip skip shared)."""
    stage = _copy_module(clip.patcher)
    new = clip.clone()
    new.cond_stage_model = stage
    patcher = comfy.model_patcher.ModelPatcher(stage, load_device=clip.patcher.load_device, offload_device=clip.patcher.offload_device)
    patcher.is_clip = True
    patcher.hook_mode = clip.patcher.hook_mode
    new.patcher = patcher
    return new
