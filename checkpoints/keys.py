"""Key prefixes of single-file (original ldm) SD1.5 / SDXL checkpoints and of ComfyUI's MODEL /
CLIP state dicts: the one table merge, trainer and nodes read.

==================  ===========================================  ==========================
part                single-file checkpoint                       ComfyUI state dict
==================  ===========================================  ==========================
UNet                ``model.diffusion_model.``                   ``diffusion_model.``
VAE                 ``first_stage_model.``                       (its own VAE object)
SD1.5 CLIP-L        ``cond_stage_model.transformer.``            ``clip_l.``
SDXL CLIP-L         ``conditioner.embedders.0.transformer.``     ``clip_l.``
SDXL OpenCLIP-G     ``conditioner.embedders.1.model.``           ``clip_g.``
==================  ===========================================  ==========================
"""

from __future__ import annotations

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD15_TEXT_ROOT = "cond_stage_model."  # SD1 (and SD2) text encoder root
SDXL_TEXT_ROOT = "conditioner.embedders."

# architecture name -> trainer part ("te1", "te2") -> prefix of that text encoder in the file
TEXT_ENCODER_PREFIXES: dict[str, dict[str, str]] = {
    "sd15": {"te1": SD15_TEXT_ROOT + "transformer."},
    "sdxl": {"te1": SDXL_TEXT_ROOT + "0.transformer.", "te2": SDXL_TEXT_ROOT + "1.model."},
}

COMFY_UNET_PREFIX = "diffusion_model."
# trainer part -> ComfyUI CLIP state-dict prefix (SDClipModel / SDXLClipModel attribute + ".")
COMFY_CLIP_PREFIXES: dict[str, str] = {"te1": "clip_l.", "te2": "clip_g."}


def unet_relative(key: str) -> str | None:
    """The key inside the UNet (``input_blocks.1...``), for checkpoint or ComfyUI naming; else None."""
    if key.startswith(UNET_PREFIX):
        return key[len(UNET_PREFIX):]
    if key.startswith(COMFY_UNET_PREFIX):
        return key[len(COMFY_UNET_PREFIX):]
    return None


def is_text_encoder_key(key: str) -> bool:
    return key.startswith((SD15_TEXT_ROOT, SDXL_TEXT_ROOT) + tuple(COMFY_CLIP_PREFIXES.values()))


def comfy_name(key: str) -> str:
    """The ComfyUI state-dict name of a checkpoint key where one exists (UNet, CLIP-L, CLIP-G)."""
    if key.startswith(UNET_PREFIX):
        return COMFY_UNET_PREFIX + key[len(UNET_PREFIX):]
    if key.startswith(SD15_TEXT_ROOT):
        return COMFY_CLIP_PREFIXES["te1"] + key[len(SD15_TEXT_ROOT):]
    if key.startswith(SDXL_TEXT_ROOT + "0."):
        return COMFY_CLIP_PREFIXES["te1"] + key[len(SDXL_TEXT_ROOT) + 2:]
    if key.startswith(SDXL_TEXT_ROOT + "1."):
        return COMFY_CLIP_PREFIXES["te2"] + key[len(SDXL_TEXT_ROOT) + 2:]
    return key
