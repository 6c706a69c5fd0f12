"""Tiny single-file checkpoints in the real A1111 / ComfyUI key layout (shapes cut down), built from
the tiny diffusers models of tiny_sd.py through the trainer's own ldm exporter.

The loader reads the real component configs shipped in training/configs; for these tiny files a
test hands it `tiny_configs(arch)` instead (monkeypatching `single_file.reference_config`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from support.tiny_sd import build_models, text_config, unet_config, vae_config, write_tokenizer


def tiny_configs(arch: str) -> dict:
    configs = {"unet": unet_config(arch), "text_encoder": text_config(False).to_dict(), "vae": vae_config()}
    if arch == "sdxl":
        configs["text_encoder_2"] = text_config(True).to_dict()
    configs["scheduler"] = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
    return configs


def make_single_file(
    path: Path, arch: str = "sd15", *, seed: int = 0, dtype: torch.dtype = torch.float16, markers: tuple[str, ...] = ()
) -> Path:
    """A single-file checkpoint of the tiny `arch` model; `markers` adds empty marker keys ("v_pred", "ztsnr")."""
    from animekit.training.adapters.diffusers_models import make_bundle

    unet, texts, vae = build_models(arch, seed)
    state = make_bundle(arch, unet, texts, [None] * len(texts), vae).export_checkpoint()
    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    state.update({m: torch.tensor([]) for m in markers})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def make_tiny_vocab(folder: Path) -> Path:
    """The tiny character vocabulary as vocab.json + merges.txt (what model.tokenizer points at)."""
    return write_tokenizer(Path(folder))


def write_header_only_checkpoint(
    path: Path, arch: str, *, dtype: str = "F16", markers: tuple[str, ...] = (), metadata: dict | None = None
) -> Path:
    """A full-size real-layout .safetensors whose tensor data is a sparse hole (no disk, no memory):
    everything a header-only reader sees is exactly a real checkpoint's."""
    import json
    import math
    import struct

    from support.checkpoints import layout

    sizes = {"F16": 2, "BF16": 2, "F32": 4}
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    rows = [(k, s, d) for k, s, d in layout(arch)] + [(m, (0,), torch.float32) for m in markers]
    for key, shape, file_dtype in rows:
        code, item = (dtype, sizes[dtype]) if file_dtype.is_floating_point else ("I64", 8)
        size = math.prod(shape) * item
        header[key] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(blob)) + blob)
        handle.truncate(8 + len(blob) + offset)
    return path
