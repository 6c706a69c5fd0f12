"""The real SD1.5 / SDXL architectures from shipped configs (training/configs/*.json), weights random.

For the benchmark (real shapes, no weights to download) and for tests that walk the real module
trees on the meta device (no memory).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch

from ..protocols import ARCHS


@lru_cache(maxsize=None)
def _read(arch: str) -> str:
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    # next to this package, not by package name: ComfyUI imports the pack under its folder's name
    return (Path(__file__).resolve().parents[1] / "configs" / f"{arch}.json").read_text(encoding="utf-8")


def reference_config(arch: str) -> dict:
    """{"unet": ..., "text_encoder": ..., ["text_encoder_2": ...,] "vae": ..., "scheduler": ...}."""
    return json.loads(_read(arch))


def build_reference_models(arch: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """(unet, [text encoders], vae) of the real architecture with randomly initialised weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = reference_config(arch)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            unet = UNet2DConditionModel.from_config(config["unet"])
            texts = [CLIPTextModel(CLIPTextConfig(**config["text_encoder"]))]
            if "text_encoder_2" in config:
                texts.append(CLIPTextModelWithProjection(CLIPTextConfig(**config["text_encoder_2"])))
            vae = AutoencoderKL.from_config(config["vae"])
    finally:
        torch.set_default_dtype(previous)
    return unet, texts, vae
