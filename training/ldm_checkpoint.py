"""Single-file (original ldm) checkpoint layout <-> diffusers / transformers component state dicts.

Reading a single file uses diffusers' own converters (loaders.single_file_utils). Writing one needs
the inverse, which diffusers' package does not ship; the functions here are that inverse, and the
tests prove it by running diffusers' converters over their output and over the real SD1.5 / SDXL
key lists. Prefixes are those of the real files, so ComfyUI, A1111, Forge and kohya load them.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

from ..checkpoints.keys import UNET_PREFIX, VAE_PREFIX
from .unet_names import translate_prefix, unet_names

LOGIT_SCALE = math.log(100.0)  # what trained OpenCLIP text towers store; unused by SD but part of the layout

OPEN_CLIP_PARTS = {  # transformers CLIP layer part -> OpenCLIP part
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


# ----------------------------------------------------------------------------------------- UNet


def unet_to_ldm(state: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    names = unet_names(config)
    return {UNET_PREFIX + names.to_ldm(key): value for key, value in state.items()}


def unet_from_ldm(checkpoint: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    return convert_ldm_unet_checkpoint(checkpoint, dict(config))


# ---------------------------------------------------------------------------------- text encoders


def _with_text_model(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers >= 5.6 flattens CLIPTextModel (no `text_model.` level); the files always have it."""
    return {(k if k.startswith(("text_model.", "text_projection")) else f"text_model.{k}"): v for k, v in state.items()}


def clip_to_ldm(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """CLIP-L (SD1.5, SDXL's first encoder): the file keeps transformers' names under a prefix."""
    out = {prefix + k: v for k, v in _with_text_model(state).items() if not k.startswith("text_projection")}
    positions_key = prefix + "text_model.embeddings.position_ids"
    if positions_key not in out:
        count = out[prefix + "text_model.embeddings.position_embedding.weight"].shape[0]
        out[positions_key] = torch.arange(count, dtype=torch.int64).unsqueeze(0)
    return out


def open_clip_to_ldm(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """OpenCLIP-G (SDXL's second encoder): fused q/k/v `in_proj`, OpenCLIP names, transposed projection."""
    state = _with_text_model(state)
    out: dict[str, torch.Tensor] = {
        prefix + "token_embedding.weight": state["text_model.embeddings.token_embedding.weight"],
        prefix + "positional_embedding": state["text_model.embeddings.position_embedding.weight"],
        prefix + "ln_final.weight": state["text_model.final_layer_norm.weight"],
        prefix + "ln_final.bias": state["text_model.final_layer_norm.bias"],
        prefix + "text_projection": state["text_projection.weight"].T.contiguous(),
        prefix + "logit_scale": torch.tensor(LOGIT_SCALE, dtype=state["text_projection.weight"].dtype),
    }
    layers = sorted({int(k.split(".")[3]) for k in state if k.startswith("text_model.encoder.layers.")})
    for i in layers:
        src = f"text_model.encoder.layers.{i}."
        dst = f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat([state[f"{src}self_attn.{p}_proj.{kind}"] for p in "qkv"], dim=0)
            for part, open_part in OPEN_CLIP_PARTS.items():
                out[f"{dst}{open_part}.{kind}"] = state[f"{src}{part}.{kind}"]
    return out


def clip_from_ldm(checkpoint: Mapping[str, torch.Tensor], prefix: str, flattened: bool) -> dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint

    selected = {k: v for k, v in checkpoint.items() if k.startswith(prefix)}
    state = convert_ldm_clip_checkpoint(selected, remove_prefix=prefix)
    state.pop("text_model.embeddings.position_ids", None)
    return _flatten_text_model(state) if flattened else state


def open_clip_from_ldm(checkpoint: Mapping[str, torch.Tensor], prefix: str, text_model, flattened: bool) -> dict:
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    selected = {k: v for k, v in checkpoint.items() if k.startswith(prefix)}
    state = convert_open_clip_checkpoint(text_model, selected, prefix=prefix)
    return _flatten_text_model(state) if flattened else state


def _flatten_text_model(state: dict) -> dict:
    return {k.removeprefix("text_model."): v for k, v in state.items()}


# ------------------------------------------------------------------------------------------ VAE

VAE_RESNET_RENAMES = {"conv_shortcut": "nin_shortcut"}
VAE_ATTENTION_PARTS = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
VAE_TOP_LEVEL = {
    "encoder.conv_norm_out": "encoder.norm_out",
    "decoder.conv_norm_out": "decoder.norm_out",
}


def vae_prefix_pairs(config: Mapping) -> list[tuple[str, str]]:
    """(diffusers prefix, ldm prefix) for an AutoencoderKL config (the inverse of convert_ldm_vae_checkpoint)."""
    blocks = len(config["down_block_types"])
    layers = int(config.get("layers_per_block", 2))
    pairs = list(VAE_TOP_LEVEL.items())
    for side in ("encoder", "decoder"):
        for k in range(2):
            pairs += _vae_resnet(f"{side}.mid_block.resnets.{k}", f"{side}.mid.block_{k + 1}")
        for part, ldm in VAE_ATTENTION_PARTS.items():
            pairs.append((f"{side}.mid_block.attentions.0.{part}", f"{side}.mid.attn_1.{ldm}"))
    for i in range(blocks):
        for j in range(layers):
            pairs += _vae_resnet(f"encoder.down_blocks.{i}.resnets.{j}", f"encoder.down.{i}.block.{j}")
        if i < blocks - 1:
            pairs.append((f"encoder.down_blocks.{i}.downsamplers.0.conv", f"encoder.down.{i}.downsample.conv"))
    for i in range(blocks):
        ldm_block = blocks - 1 - i
        for j in range(layers + 1):
            pairs += _vae_resnet(f"decoder.up_blocks.{i}.resnets.{j}", f"decoder.up.{ldm_block}.block.{j}")
        if i < blocks - 1:
            pairs.append((f"decoder.up_blocks.{i}.upsamplers.0.conv", f"decoder.up.{ldm_block}.upsample.conv"))
    return pairs


def _vae_resnet(diffusers: str, ldm: str) -> list[tuple[str, str]]:
    return [(diffusers, ldm)] + [(f"{diffusers}.{d}", f"{ldm}.{o}") for d, o in VAE_RESNET_RENAMES.items()]


def vae_to_ldm(state: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    table = dict(vae_prefix_pairs(config))
    out = {}
    for key, value in state.items():
        ldm = translate_prefix(key, table) or key  # conv_in / conv_out / quant convs keep their names
        if ".mid.attn_1." in ldm and ldm.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")) and value.ndim == 2:
            value = value[:, :, None, None]  # the ldm VAE's attention projections are 1x1 convolutions
        out[VAE_PREFIX + ldm] = value
    return out


def vae_from_ldm(checkpoint: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    selected = {k: v for k, v in checkpoint.items() if k.startswith(VAE_PREFIX)}
    return convert_ldm_vae_checkpoint(selected, dict(config))
