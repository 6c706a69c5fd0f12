"""AnimeKitBakeLora: bake up to two LoRAs (kohya LoRA / LoCon) into a checkpoint file, with LoRA block
weights, streamed file to file into output/checkpoints/ (merge/lora_bake.py does the work)."""

from __future__ import annotations

import os

import comfy.model_management
import comfy.utils
import folder_paths
from comfy_api.latest import io

from ..files.numbered import claimed_numbered_path
from ..merge.block_vectors import preset_names
from ..merge.checkpoint_merge import OUTPUT_DTYPES
from ..merge.lora_bake import BakeConfig, LoraInput, bake_loras
from .merge_nodes import CATEGORY, NO_MODEL

CUSTOM = "custom"


class AnimeKitBakeLora(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        loras = folder_paths.get_filename_list("loras")
        return io.Schema(
            node_id="AnimeKitBakeLora",
            display_name="Bake LoRA into Checkpoint File",
            category=CATEGORY,
            description="Add kohya LoRA / LoCon files into a checkpoint with strengths and block weights, streamed tensor "
            "by tensor into output/checkpoints/ (bounded memory, atomic, recipe in the metadata). LoHa / LoKr / OFT / DoRA "
            "files are refused by name.",
            is_output_node=True,
            inputs=[
                io.Combo.Input("ckpt_name", options=folder_paths.get_filename_list("checkpoints"), tooltip="The checkpoint (models/checkpoints)."),
                io.Combo.Input("lora_1", options=loras, tooltip="The first LoRA (models/loras)."),
                io.Float.Input("strength_1", default=1.0, min=-10.0, max=10.0, step=0.01, tooltip="Strength of the first LoRA."),
                io.Combo.Input("lora_2", options=[NO_MODEL, *loras], default=NO_MODEL, tooltip="An optional second LoRA."),
                io.Float.Input("strength_2", default=1.0, min=-10.0, max=10.0, step=0.01, tooltip="Strength of the second LoRA."),
                io.Combo.Input("preset", options=[CUSTOM, *preset_names()], default="ALL",
                               tooltip="Block weights for both LoRAs: LBW presets (ALL, INS, OUTALL, ...) or MBW presets; "
                               "'custom' uses block_weights. The text encoder gets the BASE value."),
                io.String.Input("block_weights", default="", tooltip="With preset 'custom': 17 / 12 (A1111 LBW) or 26 / 20 values."),
                io.Combo.Input("dtype", options=list(OUTPUT_DTYPES), default="fp16", tooltip="Float type of the saved file."),
                io.String.Input("filename_prefix", default="animekit-baked",
                                tooltip="Saved as output/checkpoints/<prefix>_00001_.safetensors; nothing outside."),
            ],
            outputs=[io.String.Output("path", tooltip="The saved file."), io.String.Output("report", tooltip="What was baked.")],
        )

    @classmethod
    def execute(cls, ckpt_name, lora_1, strength_1, lora_2, strength_2, preset, block_weights, dtype, filename_prefix) -> io.NodeOutput:
        if preset != CUSTOM and block_weights.strip():
            raise ValueError(f"both preset {preset!r} and block_weights were given; set the preset to 'custom' to use "
                             "block_weights, or clear block_weights")
        loras = [LoraInput(folder_paths.get_full_path_or_raise("loras", lora_1), strength_1)]
        if lora_2 != NO_MODEL:
            loras.append(LoraInput(folder_paths.get_full_path_or_raise("loras", lora_2), strength_2))
        folder = os.path.join(folder_paths.get_output_directory(), "checkpoints")
        bar = comfy.utils.ProgressBar(100)

        def progress(done: int, total: int) -> None:
            bar.update_absolute(done * 100 // max(total, 1), 100)

        with claimed_numbered_path(folder, filename_prefix.strip() or "animekit-baked") as output:
            config = BakeConfig(
                checkpoint=folder_paths.get_full_path_or_raise("checkpoints", ckpt_name), loras=tuple(loras), output=output,
                lbw=block_weights if preset == CUSTOM else preset, dtype=dtype, overwrite_hint="a new filename_prefix",
            )
            result = bake_loras(config, progress=progress, check_cancel=comfy.model_management.throw_exception_if_processing_interrupted)
        return io.NodeOutput(str(result.path), result.report(), ui={"text": [str(result.path)]})
