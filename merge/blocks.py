"""Block layouts of SD1.x and SDXL, which block a key belongs to, and which architecture a file is.

Everything here works from key names (and, where names are ambiguous, header shapes), so an
architecture can be checked before a single tensor is read.

Key -> block convention (the original MBW / today's SuperMerger / sd-meh one):

=============================  ==========  ==========
key (UNet-relative)            SD1.x       SDXL
=============================  ==========  ==========
``time_embed.*``               IN00        IN00
``label_emb.*``                --          IN00
``input_blocks.N.*``           IN N        IN N
``middle_block.*``             M00         M00
``output_blocks.N.*``          OUT N       OUT N
``out.*`` (final norm + conv)  OUT11       OUT08
text encoder(s)                BASE        BASE
VAE                            A's (BASE only when asked)
=============================  ==========  ==========

Keys whose name holds neither ``weight`` nor ``bias`` (``position_ids``, ``logit_scale``,
OpenCLIP ``positional_embedding`` / ``text_projection``, schedule buffers) always stay model A's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

# Key prefixes of a single-file checkpoint and of ComfyUI's MODEL / CLIP state dicts.
CKPT_UNET = "model.diffusion_model."
COMFY_UNET = "diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_TEXT_PREFIX = "cond_stage_model."
SDXL_TEXT_PREFIX = "conditioner.embedders."
COMFY_CLIP_PREFIXES = ("clip_l.", "clip_g.")


@dataclass(frozen=True)
class Architecture:
    """One supported UNet family: its block names in weight-vector order."""

    name: str  # "sd1" | "sdxl"
    label: str  # what users call it
    input_blocks: int
    output_blocks: int

    @property
    def blocks(self) -> tuple[str, ...]:
        return (
            ("BASE",)
            + tuple(f"IN{i:02d}" for i in range(self.input_blocks))
            + ("M00",)
            + tuple(f"OUT{i:02d}" for i in range(self.output_blocks))
        )

    @property
    def weight_count(self) -> int:
        return 1 + self.input_blocks + 1 + self.output_blocks

    @property
    def final_block(self) -> str:
        return f"OUT{self.output_blocks - 1:02d}"

    def layout_text(self) -> str:
        return f"BASE, IN00..IN{self.input_blocks - 1:02d}, M00, OUT00..OUT{self.output_blocks - 1:02d}"


SD1 = Architecture("sd1", "SD1.x", 12, 12)
SDXL = Architecture("sdxl", "SDXL", 9, 9)
ARCHITECTURES = {a.name: a for a in (SD1, SDXL)}


def unet_relative(key: str) -> str | None:
    """The key inside the UNet (``input_blocks.1...``), for checkpoint or ComfyUI naming; else None."""
    if key.startswith(CKPT_UNET):
        return key[len(CKPT_UNET):]
    if key.startswith(COMFY_UNET):
        return key[len(COMFY_UNET):]
    return None


def is_text_encoder_key(key: str) -> bool:
    return key.startswith((SD1_TEXT_PREFIX, SDXL_TEXT_PREFIX) + COMFY_CLIP_PREFIXES)


def has_weight_or_bias(key: str) -> bool:
    return "weight" in key or "bias" in key


_INDEXED = re.compile(r"^(input_blocks|output_blocks)\.(\d+)\.")


def unet_block(arch: Architecture, rel: str) -> str | None:
    """Block of a UNet-relative key under the convention above, or None if it fits no block."""
    if rel.startswith(("time_embed.", "label_emb.")):
        return "IN00"
    if rel.startswith("middle_block."):
        return "M00"
    if rel.startswith("out."):
        return arch.final_block
    match = _INDEXED.match(rel)
    if match:
        index = int(match.group(2))
        if match.group(1) == "input_blocks" and index < arch.input_blocks:
            return f"IN{index:02d}"
        if match.group(1) == "output_blocks" and index < arch.output_blocks:
            return f"OUT{index:02d}"
    return None


# ComfyUI renames a few OpenCLIP tensors that have no weight/bias in the checkpoint; they stay A's
# in the graph too, so the in-graph and file merges agree.
_COMFY_CLIP_BUFFERS = (
    "clip_g.transformer.text_model.embeddings.position_embedding.weight",  # OpenCLIP positional_embedding
    "clip_g.transformer.text_projection.weight",  # OpenCLIP text_projection
    "clip_l.transformer.text_projection.weight",  # identity filler, absent from SD checkpoints
)


def stays_a_reason(key: str) -> str | None:
    """Why a key is never merged whatever its block weight, or None when it can be merged."""
    if not has_weight_or_bias(key):
        return "no 'weight'/'bias' in its name (buffer or constant)"
    if key in _COMFY_CLIP_BUFFERS:
        return "text-encoder constant (no 'weight'/'bias' in the checkpoint's name)"
    return None


# --- architecture detection ------------------------------------------------------------------

@dataclass(frozen=True)
class Identification:
    """What a set of keys looks like: a supported architecture, or a description for the error."""

    arch: Architecture | None
    description: str


def _max_index(rels: Iterable[str], prefix: str) -> int:
    found = -1
    for rel in rels:
        if rel.startswith(prefix):
            head = rel[len(prefix):].split(".", 1)[0]
            if head.isdigit():
                found = max(found, int(head))
    return found


def identify(shapes: Mapping[str, Sequence[int] | None]) -> Identification:
    """Tell SD1.x / SDXL (supported) from everything else, from key names and header shapes."""
    keys = list(shapes)
    rels = {r: shapes[k] for k in keys if (r := unet_relative(k)) is not None}
    if not rels:
        return Identification(None, _describe_non_unet(keys))
    n_in = _max_index(rels, "input_blocks.") + 1
    n_out = _max_index(rels, "output_blocks.") + 1
    has_label = any(r.startswith("label_emb.") for r in rels)
    if has_label and n_in == 9 and n_out == 9:
        return Identification(SDXL, SDXL.label)
    if has_label and n_in == 12:
        return Identification(None, "an SDXL refiner (not supported: block merges need SD1.x or SDXL base)")
    if not has_label and n_in == 12 and n_out == 12:
        # SD2.x has SD1's keys; its 1024-wide cross-attention (OpenCLIP-H) gives it away.
        if _context_dim(rels) == 1024 or any(k.startswith("cond_stage_model.model.") for k in keys):
            return Identification(None, "an SD2.x model (not supported: block merges need SD1.x or SDXL)")
        return Identification(SD1, SD1.label)
    return Identification(
        None,
        f"an unknown UNet ({n_in} input blocks, {n_out} output blocks, "
        f"{'with' if has_label else 'without'} label_emb)",
    )


def _context_dim(rels: Mapping[str, Sequence[int] | None]) -> int | None:
    for rel, shape in rels.items():
        if rel.endswith("attn2.to_k.weight") and shape is not None and len(shape) == 2:
            return int(shape[1])
    return None


def _describe_non_unet(keys: list[str]) -> str:
    if not keys:
        return "empty (no tensors)"
    if any("lora_" in k or ".lora." in k or k.startswith("lora_") for k in keys):
        return "a LoRA, not a checkpoint"
    if any(k.startswith(("double_blocks.", "model.diffusion_model.double_blocks.")) for k in keys):
        return "a Flux model (not supported)"
    if any(k.startswith(("joint_blocks.", "model.diffusion_model.joint_blocks.")) for k in keys):
        return "an SD3 model (not supported)"
    if any(k.startswith(("encoder.down.", "decoder.up.", VAE_PREFIX)) for k in keys) and not any(
        is_text_encoder_key(k) for k in keys
    ):
        return "a VAE only (no UNet keys)"
    if any(".down_blocks." in k or k.startswith("down_blocks.") for k in keys):
        return "a diffusers-format model (convert it to a single-file checkpoint first)"
    if any(is_text_encoder_key(k) for k in keys):
        return "text encoder(s) only (no UNet keys)"
    return f"unknown (no UNet keys; first key {keys[0]!r})"


def require_same_architecture(named: Mapping[str, Mapping[str, Sequence[int] | None]]) -> Architecture:
    """Identify every named input; raise a ValueError naming each one unless all are the same SD1/SDXL."""
    found = {name: identify(shapes) for name, shapes in named.items()}
    archs = {ident.arch for ident in found.values()}
    if None in archs or len(archs) != 1:
        listing = "; ".join(f"{name} is {ident.description}" for name, ident in found.items())
        problem = "unsupported architecture" if None in archs else "mixed architectures"
        raise ValueError(f"cannot block-merge these models ({problem}): {listing}")
    return archs.pop()


def canonical_key(key: str) -> str:
    """The ComfyUI name of a checkpoint key where one exists, so seeds agree between graph and file."""
    if key.startswith(CKPT_UNET):
        return COMFY_UNET + key[len(CKPT_UNET):]
    if key.startswith(SD1_TEXT_PREFIX):
        return "clip_l." + key[len(SD1_TEXT_PREFIX):]
    if key.startswith(SDXL_TEXT_PREFIX + "0."):
        return "clip_l." + key[len(SDXL_TEXT_PREFIX) + 2:]
    if key.startswith(SDXL_TEXT_PREFIX + "1."):
        return "clip_g." + key[len(SDXL_TEXT_PREFIX) + 2:]
    return key
