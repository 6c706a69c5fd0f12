"""Real ComfyUI MODEL / CLIP / VAE objects for host tests: tiny (sample on CPU in seconds) or full-size files.

Host-only: needs a booted ComfyUI (the `comfy_host` fixture); `comfy` is imported lazily.

`tiny_sd1` / `tiny_sdxl` build ComfyUI's own classes — `comfy.supported_models.SD15/SDXL` models in
a `ModelPatcher`, `comfy.sd.CLIP` with ComfyUI's real tokenizers (CLIP-L; CLIP-L + CLIP-G for
SDXL) and `comfy.sd.VAE` — with shrunk configs. The UNets keep the real block structure
(input_blocks 0-11 / 0-8, middle_block, output_blocks, attention where the real model has it) with
32 base channels and at most 2 transformer blocks per layer, so block-wise key logic (MBW block
ids, LoRA key mapping) sees real key names; shapes differ, so ComfyUI's loaders would not detect
a tiny file as SD1.5/SDXL. Weights are deterministic random values (support.checkpoints) because
ComfyUI's ops leave layers empty. Every call builds fresh objects.

`write_full_checkpoint` writes a random-weight file of the real full-size layout that
`comfy.sd.load_checkpoint_guess_config` detects as SD1.5 / SDXL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from support.checkpoints import randomize_parameters, write_checkpoint

TINY_CLIP_L = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 3, "projection_dim": 32}
TINY_CLIP_G = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 3, "projection_dim": 32}
SDXL_ADM_EXTRA = 6 * 256  # SDXL's size/crop conditioning: six 256-dim timestep embeddings after the pooled output

# The real block structure (same input_blocks / middle_block / output_blocks indices, so block-wise
# key logic sees the real layout) with 32 base channels and at most 2 transformer blocks per layer.
_TINY_UNET_COMMON = {
    "use_checkpoint": False,
    "image_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "model_channels": 32,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
    "dtype": torch.float32,
}
TINY_UNET = {
    "sd15": {
        **_TINY_UNET_COMMON,
        "adm_in_channels": None,
        "channel_mult": [1, 2, 4, 4],
        "num_res_blocks": [2, 2, 2, 2],
        "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
        "transformer_depth_middle": 1,
        "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        "use_linear_in_transformer": False,
        "context_dim": TINY_CLIP_L["hidden_size"],
    },
    "sdxl": {
        **_TINY_UNET_COMMON,
        "num_classes": "sequential",
        "adm_in_channels": TINY_CLIP_G["projection_dim"] + SDXL_ADM_EXTRA,
        "channel_mult": [1, 2, 4],
        "num_res_blocks": [2, 2, 2],
        "transformer_depth": [0, 0, 2, 2, 2, 2],
        "transformer_depth_middle": 2,
        "transformer_depth_output": [0, 0, 0, 2, 2, 2, 2, 2, 2],
        "use_linear_in_transformer": True,
        "context_dim": TINY_CLIP_L["hidden_size"] + TINY_CLIP_G["hidden_size"],
    },
}
TINY_UNET_EXTRA = {"sd15": {"num_heads": 2, "num_head_channels": -1}, "sdxl": {"num_heads": -1, "num_head_channels": 16}}
# AutoencoderKL with the SD layout (x8 down-scale, 4 latent channels) but 32 channels and one block per level.
TINY_VAE = {
    "embed_dim": 4,
    "ddconfig": {
        "double_z": True,
        "z_channels": 4,
        "resolution": 64,
        "in_channels": 3,
        "out_ch": 3,
        "ch": 32,
        "ch_mult": [1, 1, 1, 1],
        "num_res_blocks": 1,
        "attn_resolutions": [],
        "dropout": 0.0,
    },
}


@dataclass
class TinyModels:
    """What a checkpoint loader gives: MODEL (ModelPatcher), CLIP and VAE, all real ComfyUI objects."""

    arch: str
    model: Any
    clip: Any
    vae: Any

    def as_tuple(self) -> tuple[Any, Any, Any]:
        return self.model, self.clip, self.vae


def _model_config(arch: str):
    import comfy.supported_models as sm

    config = {"sd15": sm.SD15, "sdxl": sm.SDXL}[arch](TINY_UNET[arch])
    config.unet_config.update(TINY_UNET_EXTRA[arch])
    config.set_inference_dtype(torch.float32, None)
    return config


def tiny_model_patcher(arch: str, seed: int = 0):
    """A real ModelPatcher around a tiny SD15/SDXL BaseModel with deterministic weights."""
    import comfy.model_management as mm
    import comfy.model_patcher

    config = _model_config(arch)
    model = config.get_model({}, device=torch.device("cpu"))
    randomize_parameters(model.diffusion_model, seed=seed, prefix="model.diffusion_model.")
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


def tiny_clip(arch: str, seed: int = 0):
    """A real comfy.sd.CLIP (ComfyUI's tokenizers) whose text encoder(s) are tiny."""
    import comfy.sd

    model_options = {"dtype": torch.float32, "clip_l_model_config": dict(TINY_CLIP_L)}
    if arch == "sdxl":
        model_options["clip_g_model_config"] = dict(TINY_CLIP_G)
    clip = comfy.sd.CLIP(_model_config(arch).clip_target(), model_options=model_options)
    randomize_parameters(clip.cond_stage_model, seed=seed, prefix="clip.")
    return clip


def tiny_vae(seed: int = 0):
    """A real comfy.sd.VAE (x8 AutoencoderKL, 4 latent channels) with 32-channel layers."""
    import comfy.sd

    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # built from a config, every weight is "missing": that is intended
    try:
        vae = comfy.sd.VAE(sd={}, config={"params": TINY_VAE}, dtype=torch.float32)
    finally:
        logger.setLevel(level)
    randomize_parameters(vae.first_stage_model, seed=seed, prefix="first_stage_model.")
    return vae


def tiny_models(arch: str, seed: int = 0) -> TinyModels:
    if arch not in TINY_UNET:
        raise ValueError(f"arch {arch!r} has no tiny model; expected one of {', '.join(TINY_UNET)}")
    with torch.inference_mode(False):  # usable by trainers too, even when built inside a node
        return TinyModels(arch, tiny_model_patcher(arch, seed), tiny_clip(arch, seed), tiny_vae(seed))


def tiny_sd1(seed: int = 0) -> TinyModels:
    return tiny_models("sd15", seed)


def tiny_sdxl(seed: int = 0) -> TinyModels:
    return tiny_models("sdxl", seed)


def write_full_checkpoint(path, arch: str, seed: int = 0, *, dtype: torch.dtype = torch.float16, metadata=None) -> Path:
    """A random-weight checkpoint of the real full-size layout (SD1.5 ~2 GB, SDXL ~7 GB at fp16), streamed."""
    return write_checkpoint(path, arch, full_size=True, seed=seed, dtype=dtype, metadata=metadata)
