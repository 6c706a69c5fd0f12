"""LoRA block weights (LBW) in the graph: apply a LoRA with a strength per MBW block.

The vector forms (A1111 LBW 17 / 12 values, MBW 26 / 20, LBW and MBW preset names) and their block
order are merge/block_vectors.py's table. ComfyUI does the LoRA work (comfy.lora's key maps and
adapters, so LoRA, LoCon, LoHa, LoKr... load as in its LoraLoader); this node only groups the patches
by the block of the weight they patch (merge/blocks.py) and gives each group its strength:
UNet keys ``strength_model * w[block]``, text-encoder keys ``strength_clip * w[BASE]`` (A1111's
LBW multiplies the text encoder by the vector's BASE value too).
"""

from __future__ import annotations

import logging

import comfy.lora
import comfy.lora_convert
import comfy.model_management
import comfy.utils
import folder_paths
from comfy_api.latest import io

from ..checkpoints.detect import require_same_architecture
from ..checkpoints.keys import unet_relative
from ..merge.block_vectors import preset_names, resolve_vector
from ..merge.blocks import unet_block
from ..merge.presets import load_presets
from .merge_nodes import user_preset_file

CATEGORY = "AnimeKit/merge"
CUSTOM = "custom"
log = logging.getLogger("animekit.lora_block_weight")
VECTOR_HELP = (
    "Strength per block. SD1.x: 17 values (A1111 LoRA Block Weight: BASE, IN01, IN02, IN04, IN05, IN07, IN08, "
    "M00, OUT03..OUT11) or 26 (MBW: BASE, IN00..IN11, M00, OUT00..OUT11). SDXL: 12 (BASE, IN04, IN05, IN07, "
    "IN08, M00, OUT00..OUT05), 20 (BASE, IN00..IN08, M00, OUT00..OUT08) or 26 SD1.x values mapped by "
    "resolution level. Blocks a short form leaves out get 0."
)


def _report(vector, counts: dict[str, int], clip_count: int, strength_model: float, strength_clip: float) -> str:
    lines = [f"AnimeKit LoRA block weight: {vector.arch.label}; {vector.source}",
             f"strength_model {strength_model:g}, strength_clip {strength_clip:g} (x BASE {vector.of('BASE'):g})",
             "", f"{'block':<6} {'weight':>8} {'keys':>6}"]
    for block in vector.arch.blocks:
        n = clip_count if block == "BASE" else counts.get(block, 0)
        lines.append(f"{block:<6} {vector.of(block):>8.6g} {n:>6}")
    if counts.get(None):
        lines.append(f"outside the blocks (full strength_model): {counts[None]}")
    return "\n".join(lines) + "\n"


def apply_block_weights(model, clip, lora: dict, strength_model: float, strength_clip: float, vector_text: str, presets=None):
    """(model, clip, report) with the LoRA's patches added per block; inputs are cloned, never changed."""
    states = {"model": {k: tuple(v.shape) for k, v in model.model_state_dict("diffusion_model.").items()}}
    arch = require_same_architecture(states, action="apply LoRA block weights to")
    vector = resolve_vector(vector_text, arch, presets)
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    if clip is not None:
        key_map = comfy.lora.model_lora_keys_clip(clip.cond_stage_model, key_map)
    loaded = comfy.lora.load_lora(comfy.lora_convert.convert_lora(lora), key_map)
    groups: dict[str | None, dict] = {}
    clip_patches = {}
    for target, patch in loaded.items():
        key = target[0] if isinstance(target, tuple) else target
        rel = unet_relative(key)
        if rel is None:
            clip_patches[target] = patch
            continue
        groups.setdefault(unet_block(arch, rel), {})[target] = patch
    new_model = model.clone()
    counts: dict[str | None, int] = {}
    for block, patches in groups.items():
        w = 1.0 if block is None else vector.of(block)
        counts[block] = len(patches)
        if w != 0.0 and strength_model != 0.0:
            new_model.add_patches(patches, strength_model * w)
    new_clip, clip_count = clip, 0
    if clip is not None:
        new_clip = clip.clone()
        strength = strength_clip * vector.of("BASE")
        if strength != 0.0:
            clip_count = len(new_clip.add_patches(clip_patches, strength))
        else:
            clip_count = len(clip_patches)
    return new_model, new_clip, _report(vector, counts, clip_count, strength_model, strength_clip)


class AnimeKitLoraBlockWeight(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeKitLoraBlockWeight",
            display_name="LoRA Block Weight (LBW)",
            category=CATEGORY,
            description="Load a LoRA with a strength per UNet block (A1111 LoRA Block Weight vectors and presets, "
            "MBW vectors and presets); text-encoder strength separate.",
            inputs=[
                io.Model.Input("model", tooltip="The model the LoRA patches (SD1.x or SDXL)."),
                io.Clip.Input("clip", tooltip="The text encoder the LoRA patches (strength_clip x the BASE value)."),
                io.Combo.Input("lora_name", options=folder_paths.get_filename_list("loras"), tooltip="A LoRA from models/loras."),
                io.Float.Input("strength_model", default=1.0, min=-100.0, max=100.0, step=0.01,
                               tooltip="UNet strength; each block gets strength_model x its block weight."),
                io.Float.Input("strength_clip", default=1.0, min=-100.0, max=100.0, step=0.01,
                               tooltip="Text-encoder strength, times the vector's BASE value."),
                io.Combo.Input("preset", options=[CUSTOM, *preset_names()], default="ALL",
                               tooltip="LBW presets (ALL, INS, IND, INALL, MIDD, OUTD, OUTS, OUTALL, ...) and the MBW merge "
                               "presets (by resolution level on SDXL). 'custom' uses block_weights."),
                io.String.Input("block_weights", default="", tooltip=f"With preset 'custom': {VECTOR_HELP}"),
            ],
            outputs=[io.Model.Output("lora_model", display_name="model"), io.Clip.Output("lora_clip", display_name="clip"),
                     io.String.Output("report", tooltip="The strength and patched-key count per block.")],
        )

    @classmethod
    def execute(cls, model, clip, lora_name, strength_model, strength_clip, preset, block_weights) -> io.NodeOutput:
        bar = comfy.utils.ProgressBar(3)
        if preset != CUSTOM and block_weights.strip():
            raise ValueError(f"both preset {preset!r} and block_weights were given; set the preset to 'custom' to use "
                             "block_weights, or clear block_weights")
        text = block_weights if preset == CUSTOM else preset
        path = folder_paths.get_full_path_or_raise("loras", lora_name)
        lora = comfy.utils.load_torch_file(path, safe_load=True)
        bar.update(1)
        comfy.model_management.throw_exception_if_processing_interrupted()
        presets = load_presets(user_preset_file())
        new_model, new_clip, report = apply_block_weights(model, clip, lora, strength_model, strength_clip, text, presets)
        bar.update(2)
        return io.NodeOutput(new_model, new_clip, report)
