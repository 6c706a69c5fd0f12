"""UNet module names in both layouts: diffusers (`down_blocks.1.attentions.0`) and original ldm
(`input_blocks.4.1`), for SD1.5, SDXL and any UNet2DConditionModel config of the same family.

Why both: kohya's SD1.5 LoRA files use diffusers names, its SDXL files the ldm names, ComfyUI's
MODEL is ldm, the headless trainer uses diffusers' UNet, and single-file checkpoints are ldm.
The map is the inverse of diffusers' own converter (single_file_utils.convert_ldm_unet_checkpoint);
the tests run that converter over the real SD1.5 / SDXL key lists to prove every name agrees.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Mapping

# resnet sub-layers: diffusers name -> ldm name (diffusers' update_unet_resnet_ldm_to_diffusers, inverted)
RESNET_PARTS = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}

# top-level layers: diffusers module -> ldm module (diffusers' DIFFUSERS_TO_LDM_MAPPING["unet"])
TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
ADD_EMBEDDING = {"add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}


def _layers_per_block(config: Mapping, blocks: int) -> list[int]:
    value = config.get("layers_per_block", 2)
    return list(value) if isinstance(value, (list, tuple)) else [int(value)] * blocks


def _resnet_pairs(diffusers: str, ldm: str) -> list[tuple[str, str]]:
    return [(diffusers, ldm)] + [(f"{diffusers}.{d}", f"{ldm}.{o}") for d, o in RESNET_PARTS.items()]


def block_prefix_pairs(config: Mapping) -> list[tuple[str, str]]:
    """(diffusers prefix, ldm prefix) for every block-level module of a UNet2DConditionModel config."""
    down_types = list(config["down_block_types"])
    up_types = list(config["up_block_types"])
    if any(t == "UNetMidBlock2DSimpleCrossAttn" for t in [config.get("mid_block_type") or ""]):
        raise ValueError("UNetMidBlock2DSimpleCrossAttn has no ldm equivalent")
    pairs: list[tuple[str, str]] = list(TOP_LEVEL.items())
    if config.get("addition_embed_type") == "text_time":
        pairs += list(ADD_EMBEDDING.items())

    layers = _layers_per_block(config, len(down_types))
    ldm_index = 1
    for block, kind in enumerate(down_types):
        has_attention = "CrossAttn" in kind or "Attn" in kind
        for j in range(layers[block]):
            pairs += _resnet_pairs(f"down_blocks.{block}.resnets.{j}", f"input_blocks.{ldm_index}.0")
            if has_attention:
                pairs.append((f"down_blocks.{block}.attentions.{j}", f"input_blocks.{ldm_index}.1"))
            ldm_index += 1
        if block < len(down_types) - 1:
            pairs.append((f"down_blocks.{block}.downsamplers.0.conv", f"input_blocks.{ldm_index}.0.op"))
            ldm_index += 1

    mid_type = config.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    if mid_type is not None:
        pairs += _resnet_pairs("mid_block.resnets.0", "middle_block.0")
        if mid_type == "UNetMidBlock2DCrossAttn":
            pairs.append(("mid_block.attentions.0", "middle_block.1"))
            pairs += _resnet_pairs("mid_block.resnets.1", "middle_block.2")
        else:
            pairs += _resnet_pairs("mid_block.resnets.1", "middle_block.1")

    up_layers = list(reversed(layers))
    ldm_index = 0
    for block, kind in enumerate(up_types):
        has_attention = "CrossAttn" in kind or "Attn" in kind
        count = up_layers[block] + 1
        for j in range(count):
            pairs += _resnet_pairs(f"up_blocks.{block}.resnets.{j}", f"output_blocks.{ldm_index}.0")
            if has_attention:
                pairs.append((f"up_blocks.{block}.attentions.{j}", f"output_blocks.{ldm_index}.1"))
            if j == count - 1 and block < len(up_types) - 1:
                slot = 2 if has_attention else 1
                pairs.append((f"up_blocks.{block}.upsamplers.0.conv", f"output_blocks.{ldm_index}.{slot}.conv"))
            ldm_index += 1
    return pairs


def translate_prefix(path: str, table: Mapping[str, str]) -> str | None:
    """Replace the longest dotted prefix of `path` found in `table` (so resnet parts win over their block)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in table:
            return ".".join([table[head], *parts[cut:]])
    return None


class UNetNames:
    """Translate dotted module or parameter paths between the diffusers and ldm UNet layouts."""

    def __init__(self, config: Mapping):
        pairs = block_prefix_pairs(config)
        self._to_ldm = dict(pairs)
        self._to_diffusers = {ldm: d for d, ldm in pairs}

    def to_ldm(self, path: str) -> str:
        found = translate_prefix(path, self._to_ldm)
        if found is None:
            raise KeyError(f"no ldm name for diffusers UNet path {path!r}")
        return found

    def to_diffusers(self, path: str) -> str:
        found = translate_prefix(path, self._to_diffusers)
        if found is None:
            raise KeyError(f"no diffusers name for ldm UNet path {path!r}")
        return found


def layout_from_ldm_config(unet_config: Mapping) -> dict:
    """The layout keys of a diffusers config from an ldm-style UNet config (ComfyUI's `unet_config`:
    channel_mult, num_res_blocks, transformer_depth, adm_in_channels), so a ComfyUI MODEL gets the
    same name map as the diffusers model of the same architecture."""
    levels = len(unet_config["channel_mult"])
    blocks = unet_config["num_res_blocks"]
    blocks = list(blocks) if isinstance(blocks, (list, tuple)) else [int(blocks)] * levels
    depth = list(unet_config.get("transformer_depth") or [])
    attention, start = [], 0
    for count in blocks:
        attention.append(any(d > 0 for d in depth[start : start + count]))
        start += count
    middle = unet_config.get("transformer_depth_middle", 1)
    return {
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
        "layers_per_block": blocks if len(set(blocks)) > 1 else blocks[0],
        "mid_block_type": "UNetMidBlock2DCrossAttn" if middle is None or middle >= 0 else None,
        "addition_embed_type": "text_time" if unet_config.get("adm_in_channels") else None,
    }


@lru_cache(maxsize=8)
def _cached(config_items: tuple) -> UNetNames:
    return UNetNames(dict(config_items))


def unet_names(config: Mapping) -> UNetNames:
    """A (cached) translator for a UNet config; only the keys that shape the layout are used."""
    keys = ("down_block_types", "up_block_types", "layers_per_block", "mid_block_type", "addition_embed_type")
    items = tuple((k, _freeze(config.get(k, _DEFAULTS.get(k)))) for k in keys)
    return _cached(items)


_DEFAULTS = {"layers_per_block": 2, "mid_block_type": "UNetMidBlock2DCrossAttn", "addition_embed_type": None}


def _freeze(value):
    return tuple(value) if isinstance(value, list) else value
