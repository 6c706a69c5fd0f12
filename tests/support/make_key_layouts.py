"""Record the exact key layout (key, shape, dtype) of real single-file SD1.5 and SDXL checkpoints.

The layouts in tests/data/keys/*.tsv let pure tests build state dicts with every real key (see
support.checkpoints) without ComfyUI. They come from ComfyUI's own classes, built on the meta
device (no memory): the UNet from `comfy.supported_models.SD15/SDXL.get_model`, the text encoders
from `comfy.sd.CLIP`, the VAE from `comfy.sd.VAE`, and the checkpoint keys from
`BaseModel.state_dict_for_saving` — the same path `comfy.sd.save_checkpoint` takes.

One addition: SD1.5 files from the original repo (and the fine-tunes derived from it) carry
`cond_stage_model.transformer.text_model.embeddings.position_ids` (int64 1x77), which ComfyUI's
own SD1.5 save path drops; it is added so the layout matches what users actually load.
ComfyUI's SDXL save path already writes CLIP-L's position_ids and OpenCLIP-G's
text_projection / logit_scale / positional_embedding like the original sd_xl_base_1.0 file.

Dtypes are those of an fp16 checkpoint: every float tensor float16 (ComfyUI leaves the text
encoders' scalar logit_scale float32 in memory; real fp16 files store it as float16), position_ids
int64. A 0-d tensor's shape is written `scalar`.

Run: COMFYUI_PATH=/path/to/ComfyUI python tests/support/make_key_layouts.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

KEYS_DIR = Path(__file__).resolve().parents[1] / "data" / "keys"
ARCHS = ("sd15", "sdxl")

# Full UNet configs as comfy.model_detection detects them for the real files.
_UNET_COMMON = {
    "use_checkpoint": False,
    "image_size": 32,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "in_channels": 4,
    "model_channels": 320,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
UNET_CONFIGS = {
    "sd15": {
        **_UNET_COMMON,
        "adm_in_channels": None,
        "num_res_blocks": [2, 2, 2, 2],
        "channel_mult": [1, 2, 4, 4],
        "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
        "transformer_depth_middle": 1,
        "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        "use_linear_in_transformer": False,
        "context_dim": 768,
    },
    "sdxl": {
        **_UNET_COMMON,
        "num_classes": "sequential",
        "adm_in_channels": 2816,
        "num_res_blocks": [2, 2, 2],
        "channel_mult": [1, 2, 4],
        "transformer_depth": [0, 0, 2, 2, 10, 10],
        "transformer_depth_middle": 10,
        "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
        "use_linear_in_transformer": True,
        "context_dim": 2048,
    },
}
# The SD1.x/SDXL AutoencoderKL (comfy.sd.VAE's default for these checkpoints).
VAE_CONFIG = {
    "embed_dim": 4,
    "ddconfig": {
        "double_z": True,
        "z_channels": 4,
        "resolution": 256,
        "in_channels": 3,
        "out_ch": 3,
        "ch": 128,
        "ch_mult": [1, 2, 4, 4],
        "num_res_blocks": 2,
        "attn_resolutions": [],
        "dropout": 0.0,
    },
}
SD15_POSITION_IDS = "cond_stage_model.transformer.text_model.embeddings.position_ids"


def model_config(arch: str, dtype=None):
    """A comfy.supported_models config object for the real full-size `arch`."""
    import comfy.supported_models as sm
    import torch

    cls = {"sd15": sm.SD15, "sdxl": sm.SDXL}[arch]
    unet = dict(UNET_CONFIGS[arch], dtype=dtype or torch.float16)
    config = cls(unet)
    config.set_inference_dtype(dtype or torch.float16, None)
    return config


def checkpoint_state_dict(arch: str, device="meta") -> dict:
    """Every tensor of a real `arch` checkpoint, as ComfyUI would save it (meta tensors by default)."""
    import comfy.sd
    import torch

    config = model_config(arch)
    with torch.device(device):
        model = config.get_model({}, device=device)
        clip = comfy.sd.CLIP(
            config.clip_target(),
            model_options={"dtype": torch.float16, "initial_device": torch.device(device)},
        )
        vae = _quiet_vae(config={"params": VAE_CONFIG}, dtype=torch.float16, device=torch.device(device))
    sd = model.state_dict_for_saving(clip.get_sd(), vae.get_sd())
    if arch == "sd15" and SD15_POSITION_IDS not in sd:
        sd[SD15_POSITION_IDS] = torch.arange(77, device=device).expand((1, -1))
    return sd


def _quiet_vae(**kwargs):
    """comfy.sd.VAE built from a config warns about every (intentionally) missing weight."""
    import logging

    import comfy.sd

    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return comfy.sd.VAE(sd={}, **kwargs)
    finally:
        logger.setLevel(level)


def layout_rows(arch: str) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, dtype name) for every tensor of an fp16 `arch` checkpoint, sorted by key."""
    sd = checkpoint_state_dict(arch)
    rows = []
    for key in sorted(sd):
        t = sd[key]
        dtype = "float16" if t.is_floating_point() else str(t.dtype).removeprefix("torch.")
        rows.append((key, tuple(t.shape), dtype))
    return rows


def format_shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


def format_rows(rows) -> str:
    lines = ["key\tshape\tdtype"]
    lines += [f"{k}\t{format_shape(shape)}\t{dtype}" for k, shape, dtype in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from support.host import find_comfyui, import_comfy

    root, reason = find_comfyui()
    if root is None:
        print(reason, file=sys.stderr)
        return 2
    import_comfy(root)
    KEYS_DIR.mkdir(parents=True, exist_ok=True)
    for arch in ARCHS:
        rows = layout_rows(arch)
        (KEYS_DIR / f"{arch}.tsv").write_text(format_rows(rows))
        print(f"{arch}: {len(rows)} keys -> {KEYS_DIR / f'{arch}.tsv'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
