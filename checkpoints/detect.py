"""Which architecture a checkpoint is, from its key names (and header shapes where names are
ambiguous), so it can be checked before a single tensor is read. One detector for merge, trainer
and nodes; `read_key_shapes` gives it a .safetensors file's keys from the header alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from .architecture import SD15, SDXL, Architecture
from .keys import COMFY_CLIP_PREFIXES, SD15_TEXT_ROOT, UNET_PREFIX, VAE_PREFIX, is_text_encoder_key, unet_relative

Shapes = Mapping[str, Sequence[int] | None]


@dataclass(frozen=True)
class Identification:
    """What a set of keys looks like: a supported architecture, or a description for the error."""

    arch: Architecture | None
    description: str


def _as_shapes(keys: Shapes | Iterable[str]) -> Shapes:
    return keys if isinstance(keys, Mapping) else dict.fromkeys(keys)


def _max_index(rels: Iterable[str], prefix: str) -> int:
    found = -1
    for rel in rels:
        if rel.startswith(prefix):
            head = rel[len(prefix):].split(".", 1)[0]
            if head.isdigit():
                found = max(found, int(head))
    return found


def identify(keys: Shapes | Iterable[str]) -> Identification:
    """Tell SD1.x / SDXL (supported) from everything else. `keys`: key -> shape (or None), or key names."""
    shapes = _as_shapes(keys)
    names = list(shapes)
    rels = {r: shapes[k] for k in names if (r := unet_relative(k)) is not None}
    if not rels:
        return Identification(None, _describe_non_unet(names))
    n_in = _max_index(rels, "input_blocks.") + 1
    n_out = _max_index(rels, "output_blocks.") + 1
    has_label = any(r.startswith("label_emb.") for r in rels)
    if has_label and n_in == SDXL.input_blocks and n_out == SDXL.output_blocks:
        return Identification(SDXL, SDXL.label)
    if has_label and n_in == 12:
        return Identification(None, "an SDXL refiner (not supported: only SD1.x and SDXL base)")
    if not has_label and n_in == SD15.input_blocks and n_out == SD15.output_blocks:
        # SD2.x has SD1's keys; its 1024-wide cross-attention (OpenCLIP-H) gives it away.
        if _context_dim(rels) == 1024 or any(k.startswith(SD15_TEXT_ROOT + "model.") for k in names):
            return Identification(None, "an SD2.x model (not supported: only SD1.x and SDXL)")
        return Identification(SD15, SD15.label)
    return Identification(
        None,
        f"an unknown UNet ({n_in} input blocks, {n_out} output blocks, "
        f"{'with' if has_label else 'without'} label_emb)",
    )


def _context_dim(rels: Shapes) -> int | None:
    for rel, shape in rels.items():
        if rel.endswith("attn2.to_k.weight") and shape is not None and len(shape) == 2:
            return int(shape[1])
    return None


def _describe_non_unet(keys: list[str]) -> str:
    if not keys:
        return "empty (no tensors)"
    if any("lora_" in k or ".lora." in k for k in keys):
        return "a LoRA, not a checkpoint"
    if any(k.startswith(("double_blocks.", UNET_PREFIX + "double_blocks.")) for k in keys):
        return "a Flux model (not supported)"
    if any(k.startswith(("joint_blocks.", UNET_PREFIX + "joint_blocks.")) for k in keys):
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


def detect_architecture(keys: Shapes | Iterable[str], *, name: str = "checkpoint") -> Architecture:
    """SD15 or SDXL for a single-file checkpoint's (or ComfyUI MODEL's) keys; ValueError naming `name`."""
    found = identify(keys)
    if found.arch is None:
        raise ValueError(f"{name} is {found.description}; expected an SD1.x or SDXL checkpoint")
    return found.arch


def identify_comfy_clip(keys: Iterable[str]) -> Identification:
    """SD1.x (CLIP-L) or SDXL (CLIP-L + CLIP-G) from a ComfyUI CLIP's state-dict keys."""
    keys = list(keys)
    clip_l, clip_g = COMFY_CLIP_PREFIXES["te1"], COMFY_CLIP_PREFIXES["te2"]
    has_l = any(k.startswith(clip_l) for k in keys)
    has_g = any(k.startswith(clip_g) for k in keys)
    other = sorted({k.split(".", 1)[0] for k in keys if not k.startswith((clip_l, clip_g))})
    if other:
        return Identification(None, f"a text encoder with {', '.join(other[:3])} (not SD1.x/SDXL CLIP)")
    if has_l and has_g:
        return Identification(SDXL, "SDXL CLIP (L+G)")
    if has_l:
        return Identification(SD15, "SD1.x CLIP (L)")
    return Identification(None, "CLIP-G only (SDXL refiner)" if has_g else "empty")


def require_same_architecture(named: Mapping[str, Shapes | Iterable[str]], *, action: str = "block-merge") -> Architecture:
    """Identify every named checkpoint; raise a ValueError naming each one unless all are the same SD1.x/SDXL."""
    return _same({name: identify(keys) for name, keys in named.items()}, f"cannot {action} these models")


def require_same_clip(named: Mapping[str, Iterable[str]]) -> Architecture:
    """The same for ComfyUI CLIP objects' state-dict keys (the in-graph CLIP merge)."""
    return _same({name: identify_comfy_clip(keys) for name, keys in named.items()}, "cannot block-merge these text encoders")


def _same(found: Mapping[str, Identification], refusal: str) -> Architecture:
    archs = {ident.arch for ident in found.values()}
    if None in archs or len(archs) != 1:
        listing = "; ".join(f"{name} is {ident.description}" for name, ident in found.items())
        problem = "unsupported architecture" if None in archs else "mixed architectures"
        raise ValueError(f"{refusal} ({problem}): {listing}")
    return archs.pop()


def read_key_shapes(path: str | os.PathLike, *, label: str | None = None) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a .safetensors file from its header alone (no tensor is read)."""
    from ..files.safetensors_header import read_safetensors_header

    return {key: info.shape for key, info in read_safetensors_header(path, label=label).tensors.items()}


def detect_file_architecture(path: str | os.PathLike, *, label: str | None = None) -> Architecture:
    """The architecture of a single-file .safetensors checkpoint, from its header; ValueError naming it."""
    name = label or f"{str(path)!r}"
    return detect_architecture(read_key_shapes(path, label=name), name=name)
