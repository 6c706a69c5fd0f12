"""Accelerator memory a training run needs, estimated before any model is loaded.

It predicts the *allocated* peak (torch.cuda.max_memory_allocated) of a training step; the CUDA
context and the caching allocator's slack come on top and are shown as "overhead".

Weights, gradients and autocast's cached bf16 copies of trained float32 weights are counted from
parameter counts and dtypes. Everything measured lives in memory_model.json, written by
benchmarks/memory_model.py from the real diffusers UNets on the meta device (saved-for-backward
bytes under the bf16 autocast policy with flash attention, optimizer state from the real tensor
shapes): activation bytes per image per megapixel for each architecture x LoRA / full x gradient
checkpointing, the share of them still held late in the backward pass when every gradient exists,
and optimizer state bytes per trained parameter (Adafactor's factored second moment is about 0.4
byte per SDXL UNet weight, not 4).

The step's peak is either at the end of the forward pass (weights, state, saved activations and
the cached weight casts) or late in the backward pass (weights, state, all gradients and one
recomputed block), whichever is larger; the parts describe what is held at that moment.
training/README.md's table holds the estimate against the meta-device measurement for every row.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import get_args

from ..checkpoints.architecture import ARCHITECTURE_NAMES
from .config import OptimizerType

GIB = 1024**3
MODEL_FILE = Path(__file__).with_name("memory_model.json")
OPTIMIZERS = get_args(OptimizerType)  # the config's own list; memory_model.json has state for each
OVERHEAD_FIXED = 0.3 * GIB  # CUDA context is separate; this is allocator slack, cuBLAS / attention workspaces
OVERHEAD_FRACTION = 0.05  # of the allocated peak: caching-allocator fragmentation
MEANINGFUL = 0.05 * GIB  # advice that saves less is not worth a user's change


@lru_cache(maxsize=None)
def memory_model() -> dict:
    """The measured coefficients (memory_model.json next to this file)."""
    return json.loads(MODEL_FILE.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class MemoryPlan:
    """What a run will hold on the accelerator."""

    arch: str  # "sd15" | "sdxl"
    params: dict  # part ("unet", "te1", "te2", "vae") -> parameter count
    trained_params: int  # LoRA parameters, or the fine-tuned parts' parameters
    full: bool  # full fine-tune (else LoRA)
    train_text_encoder: bool
    optimizer: str = "adamw"
    mixed: str = "bf16"  # "no" | "fp16" | "bf16"
    full_bf16: bool = False
    fused_backward: bool = False  # gradients applied and freed as they appear: none are held together
    batch_size: int = 1
    width: int = 1024
    height: int = 1024
    gradient_checkpointing: bool = True
    text_cached: bool = False  # cached text-encoder outputs: the encoders leave the accelerator
    trained_parts: tuple = ("unet",)
    latents_cached: bool = False  # every latent cached: the VAE leaves the accelerator

    def __post_init__(self):
        if self.arch not in ARCHITECTURE_NAMES:
            raise ValueError(f"arch must be one of {', '.join(ARCHITECTURE_NAMES)}, got {self.arch!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.batch_size < 1 or self.width < 8 or self.height < 8:
            raise ValueError("batch_size, width and height must be positive")


@dataclass(frozen=True)
class MemoryEstimate:
    parts: dict  # name -> bytes held at the peak; "overhead" last

    @property
    def total(self) -> int:
        """Estimated peak GPU memory: the allocated peak plus allocator overhead."""
        return int(sum(self.parts.values()))

    @property
    def allocated(self) -> int:
        """The allocated peak alone (what torch.cuda.max_memory_allocated reports)."""
        return self.total - self.parts.get("overhead", 0)

    def describe(self) -> str:
        items = ", ".join(f"{name} {value / GIB:.1f}" for name, value in self.parts.items() if value)
        return f"{self.total / GIB:.1f} GiB ({items})"

    def lines(self) -> list[str]:
        """The plan as `animekit train --check` prints it."""
        trained = sum(self.parts.get(k, 0) for k in ("trained weights", "gradients", "optimizer state"))
        return [
            f"estimated peak GPU memory: {self.total / GIB:.1f} GiB",
            f"  frozen weights {self.parts.get('frozen weights', 0) / GIB:.2f} GiB",
            f"  trained weights + gradients + optimizer state {trained / GIB:.2f} GiB "
            f"({self.parts.get('trained weights', 0) / GIB:.2f} + {self.parts.get('gradients', 0) / GIB:.2f} "
            f"+ {self.parts.get('optimizer state', 0) / GIB:.2f})",
            f"  activations {self.parts.get('activations', 0) / GIB:.2f} GiB",
            f"  overhead {self.parts.get('overhead', 0) / GIB:.2f} GiB (allocator; the CUDA context is not counted)",
        ]


def _activation_key(plan: MemoryPlan) -> str:
    return f"{plan.arch}/{'full' if plan.full else 'lora'}/{'ckpt' if plan.gradient_checkpointing else 'no-ckpt'}"


def optimizer_state_per_param(plan: MemoryPlan) -> float:
    """Bytes of optimizer state per trained parameter (states follow the weights' dtype, except 8-bit)."""
    table = memory_model()["optimizer_state_bytes_per_param"]
    per_param = table[f"{plan.arch}/{'full' if plan.full else 'lora'}/{plan.optimizer}"]
    if plan.full_bf16 and plan.optimizer != "adamw8bit":
        per_param /= 2
    return per_param


def estimate(plan: MemoryPlan) -> MemoryEstimate:
    model = memory_model()
    weight_size = 2 if plan.mixed in ("fp16", "bf16") else 4
    train_size = 2 if plan.full_bf16 else 4
    frozen = 0.0
    trained_weights = 0.0
    for part, count in plan.params.items():
        if part in ("te1", "te2") and plan.text_cached and not plan.train_text_encoder:
            continue
        if part == "vae":
            if not plan.latents_cached:
                frozen += count * 4  # the VAE stays float32 (SDXL's overflows in float16)
        elif plan.full and part in plan.trained_parts:
            trained_weights += count * train_size
        else:
            frozen += count * weight_size
    if not plan.full:
        trained_weights = plan.trained_params * train_size  # the LoRA network beside the frozen model
    grads = 0 if plan.fused_backward else plan.trained_params * train_size
    state = plan.trained_params * optimizer_state_per_param(plan)
    images = plan.batch_size * plan.width * plan.height / 1e6
    saved = model["activations_per_megapixel"][_activation_key(plan)] * images
    if plan.mixed == "no":
        saved *= 2  # float32 activations (not measured: the table is bf16)
    if plan.train_text_encoder:
        saved += model["text_encoder_activations"][plan.arch] * plan.batch_size
    casts = 2 * plan.trained_params if plan.mixed != "no" and not plan.full_bf16 else 0  # autocast's cached bf16 copies
    late = model["backward_held_fraction"][_activation_key(plan)] * saved  # beside every gradient, late in the backward pass
    held = max(saved + casts - grads, late, 0.0)  # beyond the gradients, at the peak moment
    allocated = frozen + trained_weights + grads + state + held
    parts = {
        "frozen weights": int(frozen),
        "trained weights": int(trained_weights),
        "gradients": int(grads),
        "optimizer state": int(state),
        "activations": int(held),
    }
    parts["overhead"] = int(OVERHEAD_FIXED + OVERHEAD_FRACTION * allocated)
    return MemoryEstimate(parts)


def advice(plan: MemoryPlan, available: int, lora_params: int | None = None) -> list[str]:
    """Setting changes that each lower the estimate, largest saving first."""
    base = estimate(plan).total
    options: list[tuple[str, MemoryPlan]] = []
    if not plan.gradient_checkpointing:
        options.append(("gradient_checkpointing = on", dataclasses.replace(plan, gradient_checkpointing=True)))
    if plan.batch_size > 1:
        options.append(
            (f"batch_size = 1 with gradient_accumulation = {plan.batch_size}", dataclasses.replace(plan, batch_size=1))
        )
    if plan.mixed == "no":
        options.append(("mixed_precision = bf16 (or fp16)", dataclasses.replace(plan, mixed="bf16")))
    elif plan.full and not plan.full_bf16 and plan.mixed == "bf16":
        options.append(("full_bf16 = on (bf16 trained weights)", dataclasses.replace(plan, full_bf16=True)))
    if plan.full and not plan.fused_backward and plan.optimizer != "prodigy":
        options.append(("fused_backward = on (no gradients held)", dataclasses.replace(plan, fused_backward=True)))
    if plan.optimizer in ("adamw", "prodigy"):
        options.append(("optimizer = adamw8bit (CUDA)", dataclasses.replace(plan, optimizer="adamw8bit")))
        if plan.full:
            options.append(("optimizer = adafactor", dataclasses.replace(plan, optimizer="adafactor")))
    if plan.train_text_encoder:
        parts = tuple(p for p in plan.trained_parts if p == "unet")
        te_params = sum(plan.params.get(p, 0) for p in ("te1", "te2")) if plan.full else 0
        options.append(
            (
                "train_text_encoder = off",
                dataclasses.replace(
                    plan, train_text_encoder=False, trained_parts=parts, trained_params=max(0, plan.trained_params - te_params)
                ),
            )
        )
    elif not plan.text_cached:
        options.append(("cache_text_encoder_outputs = on", dataclasses.replace(plan, text_cached=True)))
    if not plan.latents_cached:
        options.append(("cache_latents = on (the VAE leaves the GPU)", dataclasses.replace(plan, latents_cached=True)))
    if not plan.full and plan.trained_params > 0:
        options.append(("a smaller network rank (half the rank)", dataclasses.replace(plan, trained_params=plan.trained_params // 2)))
    side = max(plan.width, plan.height)
    if side > 512:
        smaller = max(512, int(side * 0.75) // 64 * 64)
        scale = smaller / side
        options.append(
            (
                f"resolution = {smaller}",
                dataclasses.replace(plan, width=int(plan.width * scale), height=int(plan.height * scale)),
            )
        )
    if plan.full and lora_params is not None:
        lora = dataclasses.replace(plan, full=False, trained_params=lora_params, trained_parts=("unet",))
        options.append(("train a LoRA instead (AnimeKit Train LoRA)", lora))
    ranked = sorted(((base - estimate(p).total, text) for text, p in options), reverse=True)
    return [f"{text} (-{saving / GIB:.1f} GiB)" for saving, text in ranked if saving >= MEANINGFUL]


def check_fits(plan: MemoryPlan, available: int, device_name: str, lora_params: int | None = None) -> MemoryEstimate:
    """ValueError naming the settings to change when the plan clearly exceeds `available` bytes: its
    allocated peak alone (no overhead) is more than the card has free."""
    found = estimate(plan)
    if found.allocated > available:
        tips = advice(plan, available, lora_params)
        raise ValueError(
            f"these settings need about {found.describe()} but {device_name} has {available / GIB:.1f} GiB free. "
            + ("Change: " + "; ".join(tips) + "." if tips else "Use a GPU with more memory.")
        )
    return found
