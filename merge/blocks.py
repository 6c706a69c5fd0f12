"""Which merge block a key belongs to, and which keys are never merged.

The architectures, their block layouts, the key prefixes and the architecture detector live in
`checkpoints/` (shared with the trainer and nodes); this module holds the MBW key -> block rule.

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

from ..checkpoints.architecture import Architecture


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
