"""The small interfaces the training loop needs from a model, whatever loaded it.

A `ModelBundle` is a denoiser, its text encoders and a latent encoder (VAE), plus the facts the
loop needs (architecture, prediction type, noise schedule). The headless CLI fills it from a
diffusers folder (adapters/diffusers_models.py); the ComfyUI trainer nodes fill it from ComfyUI's
MODEL / CLIP / VAE. The loop never looks past these protocols, so neither host touches it.

Module paths handed out for LoRA (`lora_targets`) are already in kohya's naming for the part and
architecture: diffusers paths for the SD1.5 UNet, original ldm paths for the SDXL UNet, and
transformers' `text_model.encoder.layers.N...` paths for the CLIP text encoders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from ..checkpoints.architecture import ARCHITECTURE_NAMES, ARCHITECTURES
from .lora_network import LoraTarget
from .objective import NoiseSchedule

ARCHS = ARCHITECTURE_NAMES  # "sd15", "sdxl": checkpoints.architecture names them once


@dataclass
class TextConditioning:
    """Text-encoder outputs for a batch: cross-attention states and (SDXL) the pooled embedding."""

    hidden_states: torch.Tensor  # [B, T, D]
    pooled: torch.Tensor | None = None  # [B, P]

    def to(self, device=None, dtype=None) -> "TextConditioning":
        pooled = None if self.pooled is None else self.pooled.to(device=device, dtype=dtype)
        return TextConditioning(self.hidden_states.to(device=device, dtype=dtype), pooled)

    def detach(self) -> "TextConditioning":
        return TextConditioning(self.hidden_states.detach(), None if self.pooled is None else self.pooled.detach())

    @staticmethod
    def stack(items: Sequence["TextConditioning"]) -> "TextConditioning":
        """Batch per-sample conditionings (each [1, T, D] / [1, P])."""
        hidden = torch.cat([c.hidden_states for c in items])
        pooled = None if items[0].pooled is None else torch.cat([c.pooled for c in items])
        return TextConditioning(hidden, pooled)

    def split(self) -> list["TextConditioning"]:
        return [
            TextConditioning(self.hidden_states[i : i + 1], None if self.pooled is None else self.pooled[i : i + 1])
            for i in range(self.hidden_states.shape[0])
        ]


@dataclass
class SizeConditioning:
    """SDXL micro-conditioning per sample: (h, w) pairs as long tensors [B, 2]."""

    original_size: torch.Tensor
    crop_top_left: torch.Tensor
    target_size: torch.Tensor

    def time_ids(self) -> torch.Tensor:
        """[B, 6] = original (h, w), crop (top, left), target (h, w): SDXL's add_time_ids order."""
        return torch.cat([self.original_size, self.crop_top_left, self.target_size], dim=1).float()


@runtime_checkable
class Denoiser(Protocol):
    module: nn.Module  # owns the weights (full fine-tune trains these)

    def __call__(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        text: TextConditioning,
        sizes: SizeConditioning | None,
    ) -> torch.Tensor: ...

    def lora_targets(self, include_conv: bool) -> list[LoraTarget]: ...

    def enable_gradient_checkpointing(self) -> None: ...


@runtime_checkable
class TextEncoders(Protocol):
    parts: tuple[str, ...]  # ("te1",) for SD1.5, ("te1", "te2") for SDXL

    def module(self, part: str) -> nn.Module: ...

    def encode(self, captions: list[str], device: torch.device) -> TextConditioning: ...

    def lora_targets(self, part: str) -> list[LoraTarget]: ...

    def enable_gradient_checkpointing(self) -> None: ...


@runtime_checkable
class LatentEncoder(Protocol):
    module: nn.Module
    identity: str  # names the VAE in latent-cache keys

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> scaled latents [B, C, H/8, W/8] (deterministic: the distribution's mean)."""
        ...


@dataclass
class ModelBundle:
    arch: str  # "sd15" | "sdxl"
    prediction_type: str  # "epsilon" | "v_prediction"
    denoiser: Denoiser
    text_encoders: TextEncoders
    vae: LatentEncoder | None
    noise_schedule: NoiseSchedule = NoiseSchedule()
    name: str = ""  # base model name for metadata
    model_hash: str = ""  # sha256 of the base model file when known
    # Full single-file checkpoint (ldm layout) of the current weights; None where the host cannot export.
    export_checkpoint: Callable[[], Mapping[str, torch.Tensor]] | None = None
    extras: dict = field(default_factory=dict)  # host-specific handles (e.g. tokenizers for a sampler)

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"model arch must be one of {ARCHS}, got {self.arch!r}")
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction type must be 'epsilon' or 'v_prediction', got {self.prediction_type!r}")

    @property
    def native_resolution(self) -> int:
        return ARCHITECTURES[self.arch].resolution

    def part_module(self, part: str) -> nn.Module:
        return self.denoiser.module if part == "unet" else self.text_encoders.module(part)
