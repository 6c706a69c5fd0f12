"""Which MBW block a kohya LoRA key belongs to, from its name alone (no ComfyUI, no weights).

kohya names a LoRA module after the module it patches, dots turned into underscores:
``lora_te_*`` / ``lora_te1_*`` / ``lora_te2_*`` (text encoders -> BASE) and ``lora_unet_*`` in either
diffusers naming (``down_blocks_1_attentions_0_...``, SD1.x LoRAs) or the original ldm naming
(``input_blocks_4_1_...``, sd-scripts' SDXL LoRAs). Diffusers -> ldm, for SD1.x and SDXL alike
(two resnets per down level, three per up level, as in ComfyUI's ``unet_to_diffusers``):

=====================================  ==========================
diffusers module                        ldm block
=====================================  ==========================
``down_blocks.i.{resnets,attentions}.j``  ``input_blocks.(3i + j + 1)``
``down_blocks.i.downsamplers.0``         ``input_blocks.(3i + 3)``
``mid_block.*``                          ``middle_block``
``up_blocks.i.{resnets,attentions}.j``    ``output_blocks.(3i + j)``
``up_blocks.i.upsamplers.0``             ``output_blocks.(3i + 2)``
``conv_in``                              ``input_blocks.0``
``time_embedding`` / ``add_embedding``   ``time_embed`` / ``label_emb``
``conv_norm_out`` / ``conv_out``         ``out``
=====================================  ==========================

The ldm block then gets its MBW block from merge/blocks.py's table (the one the merges use).
"""

from __future__ import annotations

import re

from ..checkpoints.architecture import Architecture
from .blocks import unet_block

TEXT_PREFIXES = ("lora_te_", "lora_te1_", "lora_te2_", "lora_te3_")
UNET_PREFIX = "lora_unet_"

_DIFFUSERS = re.compile(r"^(down|up)_blocks_(\d+)_(resnets|attentions|downsamplers|upsamplers)_(\d+)(?:_|$)")
_LDM = re.compile(r"^(input_blocks|output_blocks)_(\d+)(?:_|$)")
_SIMPLE = {
    "mid_block": "middle_block.",
    "middle_block": "middle_block.",
    "conv_in": "input_blocks.0.",
    "time_embedding": "time_embed.",
    "time_embed": "time_embed.",
    "add_embedding": "label_emb.",
    "label_emb": "label_emb.",
    "conv_norm_out": "out.",
    "conv_out": "out.",
    "out": "out.",
}


def module_name(key: str) -> str:
    """`lora_unet_x_y.lora_down.weight` -> `lora_unet_x_y` (the part before the first dot)."""
    return key.split(".", 1)[0]


def ldm_unet_prefix(rel: str) -> str | None:
    """The ldm UNet prefix (``input_blocks.4.``) of a kohya UNet module name without ``lora_unet_``."""
    m = _DIFFUSERS.match(rel)
    if m:
        side, level, kind, index = m.group(1), int(m.group(2)), m.group(3), int(m.group(4))
        if side == "down":
            n = 3 * level + 3 if kind == "downsamplers" else 3 * level + index + 1
            return f"input_blocks.{n}."
        n = 3 * level + 2 if kind == "upsamplers" else 3 * level + index
        return f"output_blocks.{n}."
    m = _LDM.match(rel)
    if m:
        return f"{m.group(1)}.{int(m.group(2))}."
    for head, prefix in _SIMPLE.items():
        if rel == head or rel.startswith(head + "_"):
            return prefix
    return None


def lora_key_block(arch: Architecture, key: str) -> str | None:
    """The MBW block of a kohya LoRA key (``BASE`` for text encoders), None when it fits none."""
    name = module_name(key)
    if name.startswith(TEXT_PREFIXES):
        return "BASE"
    if not name.startswith(UNET_PREFIX):
        return None
    prefix = ldm_unet_prefix(name[len(UNET_PREFIX):])
    return unet_block(arch, prefix) if prefix is not None else None
