"""The trainer's choice lists as a host shows them, and the `auto` values a host resolves.

The lists are read from the config's own types (config.py), so a node's combo, the TOML reader
and the config's checks cannot disagree. A host offers two things the config itself does not:
`auto` mixed precision (the dtype the host loaded the model in) and `auto` noise offset (the seed
cards' value for the architecture); both are resolved here before the config is built.
"""

from __future__ import annotations

from typing import Callable, get_args

import torch

from .config import LatentCache, MixedPrecision, OptimizerType, SchedulerName

AUTO = "auto"
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerType)
LR_SCHEDULERS: tuple[str, ...] = get_args(SchedulerName)
MIXED_PRECISIONS: tuple[str, ...] = (AUTO, *get_args(MixedPrecision))
LATENT_CACHES: tuple[str, ...] = get_args(LatentCache)

AUTO_NOISE_OFFSET = {"sd15": 0.05, "sdxl": 0.0357}  # AnimeDiffusion / Animagine XL 3.0 cards
MAX_TOKEN_LENGTH = 225  # three 75-token chunks: long Danbooru captions are not cut at 75


def resolve_mixed_precision(
    requested: str, device_type: str, weight_dtype: torch.dtype, bf16_supported: Callable[[], bool]
) -> str:
    """`auto`: keep the dtype the weights were loaded in, so frozen weights are never re-rounded.

    float32 weights on an accelerator get bf16 where `bf16_supported()` says so, else fp16; the CPU
    trains in float32. Any other value is passed through for the config to check.
    """
    if requested != AUTO:
        return requested
    if device_type == "cpu":
        return "no"
    if weight_dtype == torch.bfloat16:
        return "bf16"
    if weight_dtype == torch.float16:
        return "fp16"
    return "bf16" if bf16_supported() else "fp16"


def resolve_noise_offset(value: float, arch: str, zero_terminal_snr: bool) -> float:
    """A negative value means auto: the seed cards' offset, or 0 for zero-terminal-SNR models."""
    if value >= 0:
        return value
    if zero_terminal_snr:
        return 0.0
    return AUTO_NOISE_OFFSET[arch]


def clip_skip_from_layer(arch: str, layer_idx: int | None) -> int:
    """A CLIP's last-layer index (ComfyUI's CLIPSetLastLayer, -1 = last) -> kohya's clip_skip.

    Only SD1.5 has a clip skip setting (-2 is skip 2); SDXL always conditions on the penultimate layer.
    """
    return 2 if arch == "sd15" and layer_idx == -2 else 1
