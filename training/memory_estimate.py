"""Accelerator memory a training run needs, estimated before any model is loaded.

Weights, gradients and optimizer state are counted exactly from parameter counts and dtypes;
activations scale with batch x megapixels, with one coefficient per architecture and gradient
checkpointing setting, calibrated on public SD1.5 / SDXL figures (kohya: an SDXL LoRA at 1024 with
checkpointing and cached text-encoder outputs fits 8-10 GB; without checkpointing SDXL needs
about 14 GB of activations per 1024x1024 image). The estimate errs high by a margin so "does not
fit" is said before a run would run out of memory an hour in; `advice` names the settings that
would bring it under the available memory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..checkpoints.architecture import ARCHITECTURE_NAMES

GIB = 1024**3

# activation bytes per image per megapixel of training resolution, 16-bit autocast
ACTIVATIONS_PER_MEGAPIXEL = {
    ("sd15", False): 12.0 * GIB,
    ("sd15", True): 2.5 * GIB,
    ("sdxl", False): 14.0 * GIB,
    ("sdxl", True): 2.5 * GIB,
}
TEXT_ACTIVATIONS = {"sd15": 0.15 * GIB, "sdxl": 0.5 * GIB}  # per caption, when the text encoders train
# optimizer state bytes per trained parameter (Adafactor factors its second moment and keeps no first)
OPTIMIZER_STATE = {"adamw": 8.0, "adamw8bit": 2.0, "adafactor": 1.0, "prodigy": 16.0}
MARGIN = 1.15  # allocator fragmentation and cuDNN / attention workspaces
FIXED_OVERHEAD = 0.5 * GIB
MEANINGFUL = 0.05 * GIB  # advice that saves less is not worth a user's change


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
    batch_size: int = 1
    width: int = 1024
    height: int = 1024
    gradient_checkpointing: bool = True
    text_cached: bool = False
    trained_parts: tuple = ("unet",)

    def __post_init__(self):
        if self.arch not in ARCHITECTURE_NAMES:
            raise ValueError(f"arch must be one of {', '.join(ARCHITECTURE_NAMES)}, got {self.arch!r}")
        if self.optimizer not in OPTIMIZER_STATE:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZER_STATE)}, got {self.optimizer!r}")
        if self.batch_size < 1 or self.width < 8 or self.height < 8:
            raise ValueError("batch_size, width and height must be positive")


@dataclass(frozen=True)
class MemoryEstimate:
    parts: dict  # name -> bytes

    @property
    def total(self) -> int:
        return int(sum(self.parts.values()) * MARGIN + FIXED_OVERHEAD)

    def describe(self) -> str:
        items = ", ".join(f"{name} {value / GIB:.1f}" for name, value in self.parts.items() if value)
        return f"{self.total / GIB:.1f} GiB ({items}; +{(MARGIN - 1) * 100:.0f}% and {FIXED_OVERHEAD / GIB:.1f} GiB overhead)"


def estimate(plan: MemoryPlan) -> MemoryEstimate:
    weight_size = 2 if plan.mixed in ("fp16", "bf16") else 4
    train_size = 2 if plan.full_bf16 else 4
    weights = 0.0
    for part, count in plan.params.items():
        if part in ("te1", "te2") and plan.text_cached:
            continue  # cached outputs: the encoders leave the accelerator
        if part == "vae":
            weights += count * 4  # the VAE stays float32 (SDXL's overflows in float16)
        elif plan.full and part in plan.trained_parts:
            weights += count * train_size
        else:
            weights += count * weight_size
    trained = 0 if plan.full else plan.trained_params * train_size  # a LoRA network beside the model (full: in weights)
    grads = plan.trained_params * train_size
    state = plan.trained_params * OPTIMIZER_STATE[plan.optimizer]
    megapixels = plan.width * plan.height / 1e6
    per_image = ACTIVATIONS_PER_MEGAPIXEL[(plan.arch, plan.gradient_checkpointing)] * megapixels
    if plan.mixed == "no":
        per_image *= 2
    activations = per_image * plan.batch_size
    if plan.train_text_encoder:
        activations += TEXT_ACTIVATIONS[plan.arch] * plan.batch_size
    return MemoryEstimate(
        {
            "weights": int(weights),
            "trained weights": int(trained),
            "gradients": int(grads),
            "optimizer state": int(state),
            "activations": int(activations),
        }
    )


def advice(plan: MemoryPlan, available: int, lora_params: int | None = None) -> list[str]:
    """Setting changes (node input names) that each lower the estimate, largest saving first."""
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
    if plan.optimizer in ("adamw", "prodigy"):
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
    side = max(plan.width, plan.height)
    if side > 512:
        smaller = max(512, int(side * 0.75) // 64 * 64)
        scale = smaller / side
        options.append(
            (
                f"resolution = {smaller} in the dataset node",
                dataclasses.replace(plan, width=int(plan.width * scale), height=int(plan.height * scale)),
            )
        )
    if plan.full and lora_params is not None:
        lora = dataclasses.replace(plan, full=False, trained_params=lora_params, trained_parts=("unet",))
        options.append(("train a LoRA instead (AnimeKit Train LoRA)", lora))
    ranked = sorted(((base - estimate(p).total, text) for text, p in options), reverse=True)
    return [f"{text} (-{saving / GIB:.1f} GiB)" for saving, text in ranked if saving >= MEANINGFUL]


def check_fits(plan: MemoryPlan, available: int, device_name: str, lora_params: int | None = None) -> MemoryEstimate:
    """ValueError naming the settings to change when the estimate exceeds `available` bytes."""
    found = estimate(plan)
    if found.total > available:
        tips = advice(plan, available, lora_params)
        raise ValueError(
            f"these settings need about {found.describe()} but {device_name} has {available / GIB:.1f} GiB free. "
            + ("Change: " + "; ".join(tips) + "." if tips else "Use a GPU with more memory.")
        )
    return found
