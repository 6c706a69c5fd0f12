"""Putting a bundle into training shape: what trains, in which dtype, on which device.

LoRA: every base weight is frozen and stored in the autocast dtype (as kohya does), the network
in float32. Full fine-tune: the trained modules in float32 (bfloat16 with full_bf16), the frozen
ones in the autocast dtype. The VAE keeps its own dtype (float32 by default: SDXL's VAE overflows
in float16).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .config import TrainConfig
from .lora_file import load_into_network, lora_dims, read_lora
from .lora_network import PREFIXES, LoraNetwork, build_network
from .protocols import ModelBundle

AUTOCAST_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
VAE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def place(module: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Move `module`; cast only when needed (diffusers warns about every dtype cast)."""
    param = next(module.parameters(), None)
    if param is not None and param.dtype != dtype:
        module.to(device=device, dtype=dtype)
    else:
        module.to(device=device)


@dataclass
class PreparedModel:
    network: LoraNetwork | None
    trained_parts: list[str]
    params: dict[str, list[nn.Parameter]]  # trained parameters per part

    def all_params(self) -> list[nn.Parameter]:
        return [p for part in self.trained_parts for p in self.params.get(part, [])]

    def trainable_state(self, bundle: ModelBundle) -> dict[str, torch.Tensor]:
        """Trained weights by name (LoRA: kohya keys; full: "<part>.<parameter name>")."""
        if self.network is not None:
            return dict(self.network.state_dict())
        return {
            f"{part}.{name}": p for part in self.trained_parts for name, p in bundle.part_module(part).named_parameters()
        }

    def load_trainable_state(self, bundle: ModelBundle, state: dict[str, torch.Tensor]) -> None:
        mine = self.trainable_state(bundle)
        if set(mine) != set(state):
            missing = sorted(set(mine) ^ set(state))
            raise ValueError(f"the resume state's weights do not match this run's network, e.g. {missing[0]!r}")
        with torch.no_grad():
            for key, value in mine.items():
                value.copy_(state[key])


def trained_parts(cfg: TrainConfig, bundle: ModelBundle) -> list[str]:
    parts = ["unet"] if cfg.network.train_unet else []
    if cfg.network.train_text_encoder:
        parts.append("te1")
        if bundle.arch == "sdxl" and cfg.network.train_te2:
            parts.append("te2")
    return parts


def prepare_model(cfg: TrainConfig, bundle: ModelBundle, device: torch.device) -> PreparedModel:
    weight_dtype = AUTOCAST_DTYPES[cfg.precision.mixed]
    train_dtype = torch.bfloat16 if cfg.precision.full_bf16 else torch.float32
    parts = trained_parts(cfg, bundle)
    all_parts = ["unet", *bundle.text_encoders.parts]
    for part in all_parts:
        bundle.part_module(part).requires_grad_(False)

    network = None
    if cfg.network.type == "lora":
        network = _build_lora(cfg, bundle, parts)
        for part in all_parts:
            place(bundle.part_module(part), device, weight_dtype)
        network.to(device=device, dtype=train_dtype)
        network.attach()
        params = {part: network.parameters_of(part) for part in parts}
    else:
        for part in all_parts:
            module = bundle.part_module(part)
            if part in parts:
                place(module, device, train_dtype)
                module.requires_grad_(True)
            else:
                place(module, device, weight_dtype)
        params = {part: list(bundle.part_module(part).parameters()) for part in parts}
    if bundle.vae is not None:
        place(bundle.vae.module, device, VAE_DTYPES[cfg.precision.vae_dtype])
        bundle.vae.module.eval()

    if cfg.precision.gradient_checkpointing:
        bundle.denoiser.enable_gradient_checkpointing()
        if cfg.network.train_text_encoder:
            bundle.text_encoders.enable_gradient_checkpointing()
    # train mode switches gradient checkpointing on; SD's UNet and CLIP have no dropout it would enable
    bundle.denoiser.module.train()
    for part in bundle.text_encoders.parts:
        bundle.part_module(part).train(part in parts)
    if network is not None:
        network.train()
    return PreparedModel(network, parts, params)


def _build_lora(cfg: TrainConfig, bundle: ModelBundle, parts: list[str]) -> LoraNetwork:
    net = cfg.network
    targets = []
    if "unet" in parts:
        targets += bundle.denoiser.lora_targets(include_conv=net.conv_rank > 0)
    for part in parts:
        if part != "unet":
            targets += bundle.text_encoders.lora_targets(part)
    dims = None
    tensors = None
    if net.init_weights:
        tensors, _ = read_lora(net.init_weights)
        dims = lora_dims(tensors, source=f"network.init_weights {net.init_weights!r}")
    network = build_network(targets, PREFIXES[bundle.arch], net.rank, net.alpha, net.conv_rank, net.conv_alpha, net.dropout, dims)
    if tensors is not None:
        fresh = load_into_network(network, tensors, source=f"network.init_weights {net.init_weights!r}")
        if fresh:
            warnings.warn(
                f"network.init_weights has no weights for {len(fresh)} of {len(network.modules_by_name())} LoRA modules "
                f"(e.g. {fresh[0]}); they start fresh at rank {net.rank}"
            )
    return network
