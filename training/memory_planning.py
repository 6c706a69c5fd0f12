"""Which numbers a run hands the memory estimate (memory_estimate.py), and when a host refuses.

The estimate itself lives in memory_estimate; this reads a run's settings from its TrainConfig and
its sizes from the loaded model (parameter counts, the LoRA it would train), so every host plans
the same way. A host refuses a run only on a CUDA device, where the free memory is known; anywhere
else the plan is only reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .config import TrainConfig
from .lora_network import LoraTarget
from .memory_estimate import MemoryEstimate, MemoryPlan, check_fits, estimate
from .protocols import ModelBundle

CHECKED_DEVICES = ("cuda",)  # where free memory is known and a plan that does not fit is refused


def lora_parameter_count(targets: list[LoraTarget], rank: int, conv_rank: int) -> int:
    """Parameters of a kohya LoRA over `targets` (down + up per layer; 3x3 convolutions only with conv_rank)."""
    total = 0
    for target in targets:
        module = target.module
        if isinstance(module, nn.Linear):
            total += rank * (module.in_features + module.out_features)
        elif target.is_conv3x3:
            if conv_rank:
                k = module.kernel_size[0] * module.kernel_size[1]
                total += conv_rank * (module.in_channels * k + module.out_channels)
        else:
            total += rank * (module.in_channels + module.out_channels)
    return total


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def trained_parts(cfg: TrainConfig, bundle: ModelBundle) -> tuple[str, ...]:
    """The parts whose weights (or LoRA) train: the UNet, and the text encoders when asked."""
    net = cfg.network
    parts = ("unet",) if net.train_unet else ()
    if net.train_text_encoder:
        parts += tuple(p for p in bundle.text_encoders.parts if p != "te2" or net.train_te2)
    return parts


@dataclass(frozen=True)
class RunMemory:
    """A run's memory plan, and the LoRA it could train instead (the advice for a full fine-tune)."""

    plan: MemoryPlan
    lora_params: int

    def estimate(self) -> MemoryEstimate:
        return estimate(self.plan)

    def check(self, available: int, device_name: str) -> MemoryEstimate:
        """ValueError naming the settings to change when the plan does not fit `available` bytes."""
        return check_fits(self.plan, available, device_name, self.lora_params if self.plan.full else None)


def plan_run_memory(cfg: TrainConfig, bundle: ModelBundle) -> RunMemory:
    """The plan for training `bundle` with `cfg` (counts parameters; loads and moves nothing)."""
    enc = bundle.text_encoders
    params = {"unet": _count(bundle.denoiser.module), **{p: _count(enc.module(p)) for p in enc.parts}}
    if bundle.vae is not None:
        params["vae"] = _count(bundle.vae.module)
    net = cfg.network
    parts = trained_parts(cfg, bundle)
    targets = bundle.denoiser.lora_targets(include_conv=net.conv_rank > 0) if "unet" in parts else []
    lora_params = lora_parameter_count(targets, net.rank, net.conv_rank)
    lora_params += sum(lora_parameter_count(enc.lora_targets(p), net.rank, 0) for p in parts if p != "unet")
    full = net.type == "full"
    side = cfg.dataset.buckets.resolution
    plan = MemoryPlan(
        arch=bundle.arch, params=params, trained_params=sum(params[p] for p in parts) if full else lora_params,
        full=full, train_text_encoder=net.train_text_encoder, optimizer=cfg.optimizer.type, mixed=cfg.precision.mixed,
        full_bf16=cfg.precision.full_bf16, batch_size=cfg.dataset.batch_size, width=side, height=side,
        gradient_checkpointing=cfg.precision.gradient_checkpointing, text_cached=cfg.cache.text_encoder_outputs,
        trained_parts=parts, latents_cached=cfg.cache.latents != "none", fused_backward=cfg.precision.fused_backward,
    )  # fmt: skip
    return RunMemory(plan, lora_params)


def is_checked(device_type: str) -> bool:
    """Whether a host refuses a plan that does not fit on this kind of device (else it only reports it)."""
    return device_type in CHECKED_DEVICES
