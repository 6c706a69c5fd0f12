"""Block-weighted (MBW) merge nodes: MODEL and CLIP in the graph, checkpoint files to a file.

The pure core (merge/) decides blocks, weights and formulas; this module only adapts ComfyUI
objects to it. Node ids and input names are public API (see nodes/__init__.py).

Laziness: the MODEL / CLIP merges copy no weights. They clone model A and add patches that
ComfyUI evaluates, key by key, when the model is loaded for sampling (as its own merge nodes do):

- weighted sum: model B's key patch with strength_patch = w, strength_model = 1 - w, which ComfyUI
  computes as ``A*(1-w) + w*B`` in fp32, the core formula operation for operation;
- add-difference / TIES / DARE: a `BlockMergePatch` weight adapter holding references to B's (and
  C's) key patches; at load time it evaluates B and C (with any patches they carry, e.g. LoRAs)
  and runs the core formula on the current A weight. Nothing is computed up front, and a patched
  MODEL can be merged again (chained merges stay lazy).
Blocks with weight 0 get no patch at all, so they stay exactly model A's.
"""

from __future__ import annotations

import logging
import os

import comfy.lora
import comfy.model_management
import comfy.utils
import comfy.weight_adapter
import folder_paths
import torch
from comfy_api.latest import io

from ..checkpoints.detect import require_same_architecture, require_same_clip
from ..checkpoints.keys import COMFY_UNET_PREFIX
from ..merge.checkpoint_merge import OUTPUT_DTYPES, FileMergeConfig, merge_checkpoints
from ..merge.explain import explain
from ..merge.naming import NODES
from ..files.numbered import claimed_numbered_path
from ..merge.cosine import cosine_range, first_pass_values
from ..merge.methods import COSINE_A, METHODS, WEIGHTED_SUM, MergeMethod, key_seed, merge_values, methods_help
from ..merge.plan import VAE_KEEP, VAE_MERGE, MergePlan, TensorSpec, build_plan
from ..merge.presets import load_presets
from ..merge.weights import CUSTOM, WeightChoice

CATEGORY = "AnimeKit/merge"
WEIGHT_NOTE = "Block weight = fraction of model B (0 = A, 1 = B)."
VAE_KEEP_LABEL = "keep A's"
VAE_MERGE_LABEL = "merge (BASE weight)"
NO_MODEL = "(none)"
log = logging.getLogger("animekit.merge")


# --- presets and shared inputs -----------------------------------------------------------------

def user_preset_file() -> str | None:
    """`<ComfyUI user dir>/animekit/mbw-presets.tsv`, when the user made one."""
    path = os.path.join(folder_paths.get_user_directory(), "animekit", "mbw-presets.tsv")
    return path if os.path.isfile(path) else None


def preset_names() -> list[str]:
    """Shipped and user presets; a broken user line is logged (file and line) and fails only if chosen."""
    book = load_presets(user_preset_file())
    for problem in (*book.problems, *book.broken.values()):
        log.warning("AnimeKit: user merge presets: %s", problem)
    return book.names


def weight_inputs() -> list:
    """Preset, weights, method, density and seed: shared by the three merge nodes."""
    return [
        io.Combo.Input(
            "preset", options=[CUSTOM, *preset_names()], default="HIGHRES_REPLACE",
            tooltip=f"{WEIGHT_NOTE} Named per-block weights: HIGHRES_REPLACE / LOWRES_REPLACE (the "
            "AnimeDiffusion recipes) and SuperMerger's presets, plus <user dir>/animekit/mbw-presets.tsv. "
            "On SDXL they land on the same resolution levels as on SD1.x. 'custom' uses the weights text.",
        ),
        io.String.Input(
            "weights", default="",
            tooltip=f"{WEIGHT_NOTE} With preset 'custom': comma-separated weights, BASE first. SD1.x: 26 "
            "(BASE, IN00..IN11, M00, OUT00..OUT11); SDXL: 20 (BASE, IN00..IN08, M00, OUT00..OUT08) or 26 "
            "SD1.x-layout ones, mapped by resolution level; one value alone is every block's weight. Leave empty "
            "when a preset is chosen.",
        ),
        io.Combo.Input(
            "method", options=list(METHODS), default=WEIGHTED_SUM,
            tooltip=f"{WEIGHT_NOTE} Per block with weight w: {methods_help()}. Methods with C need model C "
            "(the base of B-C, or the third model of triple-sum / sum-twice).",
        ),
        io.Float.Input(
            "density", default=0.5, min=0.01, max=1.0, step=0.01,
            tooltip=f"{WEIGHT_NOTE} ties/dare only: fraction of the B-C difference kept (1 = all).",
        ),
        io.Int.Input(
            "seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF,
            tooltip=f"{WEIGHT_NOTE} dare only: seed of the drop mask; the same seed gives the same merge.",
        ),
    ]


def beta_input():
    """Optional and last, so workflows saved before it keep their widget order."""
    return io.Float.Input(
        "beta", default=0.0, min=-2.0, max=3.0, step=0.01, optional=True,
        tooltip=f"triple-sum / sum-twice only: the weight of model C (the same for every block). {WEIGHT_NOTE}",
    )


def _choice(preset: str, weights: str) -> WeightChoice:
    return WeightChoice(preset=preset, weights=weights, preset_file=user_preset_file(), naming=NODES)


# --- lazy in-graph patches ----------------------------------------------------------------------

def _evaluate_key_patch(patch_list, weight: torch.Tensor, key: str, intermediate_dtype) -> torch.Tensor:
    """Model B/C's weight for `key` as ComfyUI would use it: its stored weight plus its own patches."""
    base, convert = patch_list[0]
    value = convert(comfy.model_management.cast_to_device(base, weight.device, intermediate_dtype, copy=True), inplace=True)
    return comfy.lora.calculate_weight(patch_list[1:], value, key, intermediate_dtype=intermediate_dtype)


class BlockMergePatch(comfy.weight_adapter.WeightAdapterBase):
    """A weight adapter that runs the core formula for one key when ComfyUI patches the model.

    ComfyUI calls it with model A's current weight (fp32, A's own patches already applied) and
    the patch strength, which is the block weight; B and C are evaluated then, not before.
    """

    name = "animekit_block_merge"

    def __init__(self, method: MergeMethod, b_patches, c_patches, stream: int, cosine=None):
        self.loaded_keys = set()
        self.weights = []
        self.method, self.b_patches, self.c_patches, self.stream = method, b_patches, c_patches, stream
        self.cosine = cosine

    def calculate_weight(self, weight, key, strength, strength_model, offset, function,
                         intermediate_dtype=torch.float32, original_weights=None):
        b = _evaluate_key_patch(self.b_patches, weight, key, intermediate_dtype)
        c = _evaluate_key_patch(self.c_patches, weight, key, intermediate_dtype) if self.c_patches is not None else None
        return merge_values(self.method, strength, weight, b, c, stream=self.stream, cosine=self.cosine).to(weight.dtype)


def _specs(state_dict) -> dict[str, TensorSpec]:
    return {k: TensorSpec(tuple(v.shape), v.is_floating_point()) for k, v in state_dict.items()}


def patch_merge(target, plan: MergePlan, key_patches_b: dict, key_patches_c: dict | None, cosine=None) -> int:
    """Add the plan's patches to `target` (a clone of A); returns how many keys got one."""
    patched = 0
    for item in plan.merged:
        w = item.weight
        if w == 0.0 and plan.method.zero_keeps_a:
            continue
        if plan.method.name == WEIGHTED_SUM:
            target.add_patches({item.key: key_patches_b[item.key]}, w, 1.0 - w)
        else:
            stream = key_seed(plan.method.seed, item.seed_name)
            c = key_patches_c[item.key] if key_patches_c is not None else None
            target.add_patches({item.key: BlockMergePatch(plan.method, key_patches_b[item.key], c, stream, cosine)}, w, 1.0)
        patched += 1
    return patched


def in_graph_cosine_range(plan: MergePlan, state_a: dict, state_b: dict):
    """The cosine methods' first pass over the models' stored weights (None for other methods)."""
    if not plan.method.spec.needs_cosine_range:
        return None
    favour_a = plan.method.name == COSINE_A
    return cosine_range(first_pass_values(state_a[k.key], state_b[k.key], favour_a=favour_a) for k in plan.merged)


def _method(method: str, density: float, seed: int, has_base: bool, beta: float = 0.0) -> MergeMethod:
    chosen = MergeMethod(method, density=density, seed=seed, beta=beta)
    if chosen.needs_base and not has_base:
        raise ValueError(f"the {method} method needs the base model C input connected")
    return chosen


# --- nodes ----------------------------------------------------------------------------------------

class AnimeKitBlockMergeModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeKitBlockMergeModel",
            display_name="Block Merge Model (MBW)",
            category=CATEGORY,
            description="Merge model B's UNet into model A block by block (SuperMerger MBW), lazily: no weights "
            "are copied. SD1.x and SDXL. " + WEIGHT_NOTE,
            inputs=[
                io.Model.Input("model_a", tooltip=f"Model A, the one kept where a block weight is 0. {WEIGHT_NOTE}"),
                io.Model.Input("model_b", tooltip=f"Model B, taken where a block weight is 1. {WEIGHT_NOTE}"),
                *weight_inputs(),
                io.Model.Input("model_c", optional=True,
                               tooltip=f"Base model C for add-difference / ties / dare (B-C is B's difference). {WEIGHT_NOTE}"),
                beta_input(),
            ],
            outputs=[io.Model.Output("model"), io.String.Output("report", tooltip="Per-block weights, key counts and what stayed A's.")],
        )

    @classmethod
    def execute(cls, model_a, model_b, preset, weights, method, density, seed, model_c=None, beta=0.0) -> io.NodeOutput:
        chosen = _method(method, density, seed, model_c is not None, beta)
        states = {"model A": model_a.model_state_dict(COMFY_UNET_PREFIX), "model B": model_b.model_state_dict(COMFY_UNET_PREFIX)}
        if chosen.needs_base:
            states["model C"] = model_c.model_state_dict(COMFY_UNET_PREFIX)
        specs = {name: _specs(sd) for name, sd in states.items()}
        arch = require_same_architecture({name: {k: s.shape for k, s in sp.items()} for name, sp in specs.items()})
        plan = build_plan(arch, _choice(preset, weights).resolve(arch), chosen, specs["model A"], specs["model B"], specs.get("model C"))
        merged = model_a.clone()
        kp_c = model_c.get_key_patches(COMFY_UNET_PREFIX) if chosen.needs_base else None
        cosine = in_graph_cosine_range(plan, states["model A"], states["model B"])
        patched = patch_merge(merged, plan, model_b.get_key_patches(COMFY_UNET_PREFIX), kp_c, cosine)
        report = explain(plan, naming=NODES, title=f"AnimeKit block merge (MODEL, {patched} lazy patches)")
        return io.NodeOutput(merged, report)


class AnimeKitBlockMergeClip(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeKitBlockMergeClip",
            display_name="Block Merge CLIP (MBW BASE)",
            category=CATEGORY,
            description="Merge text encoder B into A with the BASE weight of the block weights, lazily. " + WEIGHT_NOTE,
            inputs=[
                io.Clip.Input("clip_a", tooltip=f"Text encoder A, kept where BASE is 0. {WEIGHT_NOTE}"),
                io.Clip.Input("clip_b", tooltip=f"Text encoder B, taken where BASE is 1. {WEIGHT_NOTE}"),
                *weight_inputs(),
                io.Clip.Input("clip_c", optional=True, tooltip=f"Base text encoder C for add-difference / ties / dare. {WEIGHT_NOTE}"),
                beta_input(),
            ],
            outputs=[io.Clip.Output("clip"), io.String.Output("report", tooltip="The BASE weight, key counts and what stayed A's.")],
        )

    @classmethod
    def execute(cls, clip_a, clip_b, preset, weights, method, density, seed, clip_c=None, beta=0.0) -> io.NodeOutput:
        chosen = _method(method, density, seed, clip_c is not None, beta)
        clips = {"clip A": clip_a, "clip B": clip_b}
        if chosen.needs_base:
            clips["clip C"] = clip_c
        patches = {name: clip.get_key_patches() for name, clip in clips.items()}
        arch = require_same_clip({name: list(p) for name, p in patches.items()})
        specs = {name: _specs(clip.patcher.model_state_dict()) for name, clip in clips.items()}
        plan = build_plan(arch, _choice(preset, weights).resolve(arch), chosen, specs["clip A"], specs["clip B"], specs.get("clip C"))
        merged = clip_a.clone()
        cosine = in_graph_cosine_range(plan, clip_a.patcher.model_state_dict(), clip_b.patcher.model_state_dict())
        patched = patch_merge(merged, plan, patches["clip B"], patches.get("clip C"), cosine)
        report = explain(plan, naming=NODES, title=f"AnimeKit block merge (CLIP, BASE only, {patched} lazy patches)", hide_empty=True)
        return io.NodeOutput(merged, report)


def _vae_options() -> list[str]:
    return [VAE_KEEP_LABEL, VAE_MERGE_LABEL, *folder_paths.get_filename_list("vae")]


def _vae_choice(vae: str) -> str:
    if vae == VAE_KEEP_LABEL:
        return VAE_KEEP
    if vae == VAE_MERGE_LABEL:
        return VAE_MERGE
    return folder_paths.get_full_path_or_raise("vae", vae)


class AnimeKitBlockMergeCheckpoint(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        checkpoints = folder_paths.get_filename_list("checkpoints")
        return io.Schema(
            node_id="AnimeKitBlockMergeCheckpoint",
            display_name="Block Merge Checkpoint Files (MBW)",
            category=CATEGORY,
            description="Stream-merge two checkpoint files block by block into output/checkpoints/ with bounded "
            "memory (fine for SDXL on a small machine). " + WEIGHT_NOTE,
            is_output_node=True,
            inputs=[
                io.Combo.Input("ckpt_a", options=checkpoints, tooltip=f"Checkpoint A (models/checkpoints). {WEIGHT_NOTE}"),
                io.Combo.Input("ckpt_b", options=checkpoints, tooltip=f"Checkpoint B (models/checkpoints). {WEIGHT_NOTE}"),
                *weight_inputs(),
                io.Combo.Input("ckpt_c", options=[NO_MODEL, *checkpoints], default=NO_MODEL,
                               tooltip=f"Base checkpoint C for add-difference / ties / dare. {WEIGHT_NOTE}"),
                io.Combo.Input("dtype", options=list(OUTPUT_DTYPES), default="fp16",
                               tooltip=f"Float type of the saved file (keep = A's). fp16 keeps an SD1.5 file at 2 GB. {WEIGHT_NOTE}"),
                io.Combo.Input("vae", options=_vae_options(), default=VAE_KEEP_LABEL,
                               tooltip=f"keep A's VAE, merge it with the BASE weight, or bake in a VAE file (models/vae). {WEIGHT_NOTE}"),
                io.String.Input("filename_prefix", default="animekit-merge",
                                tooltip=f"Saved as output/checkpoints/<prefix>_00001_.safetensors; subfolders allowed, "
                                f"nothing outside. {WEIGHT_NOTE}"),
                beta_input(),
            ],
            outputs=[io.String.Output("path", tooltip="The saved file."), io.String.Output("report", tooltip="The explain report.")],
        )

    @classmethod
    def execute(cls, ckpt_a, ckpt_b, preset, weights, method, density, seed, ckpt_c, dtype, vae, filename_prefix, beta=0.0) -> io.NodeOutput:
        has_base = ckpt_c != NO_MODEL
        chosen = _method(method, density, seed, has_base, beta)
        folder = os.path.join(folder_paths.get_output_directory(), "checkpoints")
        with claimed_numbered_path(folder, filename_prefix.strip() or "animekit-merge") as output:
            return _merge_files_into(output, chosen, ckpt_a, ckpt_b, ckpt_c, preset, weights, dtype, vae)


def _merge_files_into(output, chosen, ckpt_a, ckpt_b, ckpt_c, preset, weights, dtype, vae) -> io.NodeOutput:
    config = FileMergeConfig(
        model_a=folder_paths.get_full_path_or_raise("checkpoints", ckpt_a),
        model_b=folder_paths.get_full_path_or_raise("checkpoints", ckpt_b),
        model_c=folder_paths.get_full_path_or_raise("checkpoints", ckpt_c) if chosen.needs_base else None,
        output=output,
        weights=_choice(preset, weights),
        method=chosen,
        dtype=dtype,
        vae=_vae_choice(vae),
        hash_cache=os.path.join(folder_paths.get_user_directory(), "animekit", "sha256.json"),
    )
    bar = comfy.utils.ProgressBar(100)
    shown = [-1]

    def progress(done: int, total: int) -> None:
        percent = done * 100 // max(total, 1)
        if percent != shown[0]:
            shown[0] = percent
            bar.update_absolute(percent, 100)

    result = merge_checkpoints(config, progress=progress, check_cancel=comfy.model_management.throw_exception_if_processing_interrupted)
    return io.NodeOutput(str(result.path), explain(result.plan, naming=NODES), ui={"text": [str(result.path)]})


